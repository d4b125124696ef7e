"""Connecting to the serving database: its URL, an engine per backend, sessions.

SQLite when embedded (the default, `sqlite:///serving.db`), PostgreSQL in production
(`BRANDFORGE_SERVING_DB=postgresql://...`): the same models and queries run on both, selected
by the URL alone. The schema itself is made and changed only by `serving.db.migrate`
(Alembic revisions, DESIGN.md decision 6).

Usage:

    engine = engine_for()              # settings' serving_db
    upgrade(engine)                    # serving.db.migrate: once, before any replica starts
    Session = session_factory(engine)
    with Session.begin() as session:   # commits on success, rolls back on error
        ...
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

logger = logging.getLogger(__name__)

# How long a SQLite writer waits for another one's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30
# The database holds prompts, campaign variables, review notes and key hashes: readable by
# its owner only (issue 11, "Campaign personal data"). SQLite gives its -wal and -shm files
# the database file's mode, so this covers them too.
SQLITE_FILE_MODE = 0o600


def database_url(url: str | None = None) -> str:
    """The serving database URL: `url`, else the settings' `serving_db`, with the driver made
    explicit for PostgreSQL.

    A bare `postgresql://` (or `postgres://`, which SQLAlchemy rejects outright) becomes
    `postgresql+psycopg2://`: SQLAlchemy 2.1 would otherwise pick psycopg 3, which is not
    installed (psycopg2-binary is): `brandforge.settings.sqlalchemy_url`.
    """
    from brandforge.settings import get_settings, sqlalchemy_url

    return sqlalchemy_url(get_settings().serving_db if url is None else url)


def sqlite_file(url: URL) -> Path | None:
    """The file of an SQLite URL; None for another backend, an in-memory database or a
    `file:` URI (whose path SQLite resolves itself)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _create_private_file(path: Path) -> None:
    """Create the (empty) database file owner-only before SQLite does, which would give it the
    process umask's mode (usually world-readable). An existing file is left as it is here;
    `serving.db.migrate.upgrade` tightens it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, SQLITE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
    logger.info("created serving database file %s (mode %o)", path, SQLITE_FILE_MODE)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL: readers never block the writer and vice versa (the API reads keys on every request
    # while the CLI or a rollout writes). synchronous=NORMAL is durable across application
    # crashes in WAL mode and much faster than FULL. SQLite leaves foreign keys off by default.
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def engine_for(url: str | None = None) -> Engine:
    """An engine for the serving database (`url`, default: settings' `serving_db`).

    SQLite: the database file is created owner-only (0600) in a folder created when missing;
    connections may cross threads (Ray Serve and FastAPI run handlers on a thread pool;
    SQLAlchemy's pool hands one connection to one thread at a time); WAL journal mode and a
    busy timeout so concurrent readers and a writer do not fail. `sqlite://` (in memory) keeps
    one shared connection so every session sees the same database. PostgreSQL: connections are
    checked before use, so a restarted server costs no failed request. Raises
    `sqlalchemy.exc.ArgumentError` for a URL SQLAlchemy cannot parse.
    """
    resolved = make_url(database_url(url))
    if resolved.get_backend_name() != "sqlite":
        return create_engine(resolved, pool_pre_ping=True)

    connect_args: dict[str, Any] = {
        "check_same_thread": False,
        "timeout": SQLITE_BUSY_TIMEOUT_S,
    }
    database = resolved.database or ""
    in_memory = database in ("", ":memory:") or resolved.query.get("mode") == "memory"
    if in_memory:
        engine = create_engine(resolved, connect_args=connect_args, poolclass=StaticPool)
    else:
        path = sqlite_file(resolved)
        if path is not None:
            _create_private_file(path)
        engine = create_engine(resolved, connect_args=connect_args)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`. Objects stay readable after commit (`expire_on_commit=False`):
    a request handler or the CLI commits and then still reports what it wrote, without a
    second round trip."""
    return sessionmaker(bind=engine, expire_on_commit=False)
