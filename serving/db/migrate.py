"""The serving database's schema, changed only by Alembic revisions (DESIGN.md, decision 6).

`brandforge db upgrade` (and `brandforge serve`, once, before any replica starts) runs
`upgrade`; replicas call `require_current` and never alter the schema. The revisions live in
`serving/db/migrations/versions/` (package data); Alembic is driven from here, with no
alembic.ini. A database made by a release before Alembic (tables, no `alembic_version`) is
adopted by the first revision with its data (see `versions/0001_initial.py`).

Two processes may upgrade at once (two `brandforge serve` on one PostgreSQL database): on
PostgreSQL the upgrade runs in one transaction under an advisory lock, on SQLite under the
database's write lock (`BEGIN IMMEDIATE`), so the second one waits, then finds the schema at
head and does nothing.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from serving.db.engine import SQLITE_FILE_MODE, engine_for, sqlite_file
from serving.errors import Unavailable

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key of schema upgrades (any fixed 64-bit number; "bfdb" in ASCII).
UPGRADE_LOCK_KEY = 0x62666462
UPGRADE_HINT = "run `brandforge db upgrade`"


class SchemaNotCurrent(Unavailable):
    """The serving database's schema is not the one this release was written for."""


def alembic_config(
    connection: Connection | None = None, *, migrations: Path = MIGRATIONS
) -> Config:
    """Alembic's config for the serving database, built in code (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    return config


@cache
def head() -> str:
    """The revision this release's models need (the newest in `migrations/versions`)."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:  # pragma: no cover - the package ships its revisions
        raise RuntimeError(f"no Alembic revision in {MIGRATIONS / 'versions'}")
    return revision


def known(revision: str) -> bool:
    """Whether `revision` is one of this release's (not one a newer release wrote)."""
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        return False
    return True


def current(engine: Engine) -> str | None:
    """The database's revision; None when it has none (empty, or made before Alembic)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not this release's (what replicas call
    instead of altering it). Raises `SchemaNotCurrent` saying what to do."""
    found = current(engine)
    needed = head()
    if found == needed:
        return
    where = f"serving database {_shown(engine)}"
    if found is None:
        has_tables = bool(inspect(engine).get_table_names())
        state = "has tables from a release before Alembic" if has_tables else "is empty"
        raise SchemaNotCurrent(
            f"{where} {state}; this release needs revision {needed}: {UPGRADE_HINT}"
        )
    if not known(found):
        raise SchemaNotCurrent(
            f"{where} is at revision {found}, which this release does not know (a newer "
            f"release upgraded it); this release needs {needed}: run the newer release"
        )
    raise SchemaNotCurrent(
        f"{where} at revision {found}, this release needs {needed}: {UPGRADE_HINT}"
    )


@contextmanager
def _upgrade_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the upgrade lock (see the module docstring)."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Recreating a table (SQLite's way to alter one) would trip foreign keys that
            # point at it; the pragma only takes effect outside a transaction.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()  # ends SQLAlchemy's autobegun transaction (no BEGIN was sent)
        try:
            with conn.begin():
                if sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_KEY}
                    )
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"foreign keys broken by the upgrade: {broken[:5]}")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def _restrict_sqlite_file(engine: Engine) -> None:
    """Make an SQLite database (and its WAL files) owner-only, as `engine_for` creates new
    ones: files a release before this one created have the process umask's mode."""
    path = sqlite_file(engine.url)
    if path is None:
        return
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & ~SQLITE_FILE_MODE:
                os.chmod(file, SQLITE_FILE_MODE)
                logger.info("%s: mode %o -> %o (owner only)", file, mode, SQLITE_FILE_MODE)
        except FileNotFoundError:
            continue
        except PermissionError as err:  # not the owner: say so, the upgrade can still run
            logger.warning("cannot make %s owner-only: %s", file, err)


def upgrade(target: Engine | str | None = None, *, revision: str = "head") -> str:
    """Bring the serving database to `revision` (default: this release's head) and return the
    revision it is at. `target` is an engine or a database URL (default: the settings').

    Creates every table in an empty database; adopts one made before Alembic (data kept);
    does nothing when already there. Safe to run from several processes at once.
    """
    engine = target if isinstance(target, Engine) else engine_for(target)
    try:
        _restrict_sqlite_file(engine)
        with _upgrade_transaction(engine) as conn:
            before = MigrationContext.configure(conn).get_current_revision()
            command.upgrade(alembic_config(conn), revision)
            after = MigrationContext.configure(conn).get_current_revision()
    finally:
        if not isinstance(target, Engine):
            engine.dispose()
    if before != after:
        logger.info("serving database %s: revision %s -> %s", _shown(engine), before, after)
    return after or ""


def create_or_require_current(engine: Engine) -> None:
    """What a command that is not `brandforge db upgrade` does: an empty database (a fresh
    machine) is created at head; one with tables must already be at head (`require_current`),
    since upgrading a shared database is a decision for `brandforge db upgrade` or `serve`."""
    if current(engine) is None and not inspect(engine).get_table_names():
        upgrade(engine)
        return
    require_current(engine)


def new_revision(message: str, *, migrations: Path = MIGRATIONS) -> Path:
    """Write the next revision (`NNNN_<message>.py`) with what the models changed since the
    newest one, as Alembic's autogenerate finds it against a scratch SQLite database at head;
    returns its file. Read and complete it before committing (autogenerate misses renames,
    data moves, and CHECK constraints; on a pre-Alembic table, see 0001)."""
    import tempfile

    scripts = ScriptDirectory.from_config(alembic_config(migrations=migrations))
    newest = scripts.get_current_head()
    rev_id = f"{int(newest or 0) + 1:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        engine = engine_for(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        try:
            with engine.connect() as conn:
                command.upgrade(alembic_config(conn, migrations=migrations), "head")
                conn.commit()
                written = command.revision(
                    alembic_config(conn, migrations=migrations),
                    message=message,
                    autogenerate=True,
                    rev_id=rev_id,
                )
        finally:
            engine.dispose()
    head.cache_clear()
    if written is None or isinstance(written, list):  # pragma: no cover - one head, one script
        raise RuntimeError(f"alembic wrote no single revision: {written!r}")
    return Path(written.path)
