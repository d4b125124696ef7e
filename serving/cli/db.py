"""`brandforge db`: the serving database's schema (Alembic revisions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from serving.cli.common import DbOpt, fail, shown_url

if TYPE_CHECKING:
    from sqlalchemy import Engine

db_app = typer.Typer(
    help="The serving database's schema: create or upgrade it, show its revision.\n\n"
    "`upgrade` creates the database, or brings it to this release's schema revision keeping "
    "every row (a database made before Alembic included). Run it once per release, before the "
    "servers start; `brandforge serve` does it too. Replicas never change the schema: they "
    "refuse a database that is not current. `brandforge keys` and `assets` create an empty "
    "database themselves, and ask for `upgrade` when one is behind.",
    no_args_is_help=True,
)
GROUP = "db"


def _engine(db: str | None) -> Engine:
    """An engine on `db` (default: BRANDFORGE_SERVING_DB); exit 2 for a URL it cannot use."""
    from sqlalchemy.exc import ArgumentError

    from serving.db.engine import database_url, engine_for

    try:
        return engine_for(db)
    except (ArgumentError, ImportError) as err:
        url = shown_url(database_url(db))
        raise fail(GROUP, f"cannot use database URL {url!r}: {err}", 2) from None


def _database_error(engine: Engine, err: Exception) -> typer.Exit:
    shown = engine.url.render_as_string(hide_password=True)
    reason = " ".join(str(getattr(err, "orig", None) or err).split())
    return fail(GROUP, f"database {shown}: {reason}", 1)


@db_app.command("upgrade")
def upgrade_command(db: DbOpt = None) -> None:
    """Create the serving database, or upgrade it to this release's schema revision.

    Safe to run again (nothing to do at head) and from several machines at once (PostgreSQL:
    an advisory lock; SQLite: the write lock). Rows are kept. An SQLite file is made
    owner-only.
    """
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from serving.db.migrate import current, upgrade

    engine = _engine(db)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        before = current(engine)
        after = upgrade(engine)
    except CommandError as err:  # a revision this release does not know: a newer one's
        raise fail(GROUP, f"database {shown}: {err} (a newer release upgraded it)", 1) from None
    except SQLAlchemyError as err:
        raise _database_error(engine, err) from None
    finally:
        engine.dispose()
    if before == after:
        typer.echo(f"{shown}: at revision {after} already (this release's), nothing to do")
    else:
        typer.echo(f"{shown}: upgraded from revision {before or '(none)'} to {after}")


@db_app.command("current")
def current_command(db: DbOpt = None) -> None:
    """Show the database's schema revision and whether it is this release's.

    Exit 0 when it is current, 1 when `brandforge db upgrade` is needed (or a newer release
    upgraded it).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from serving.db.migrate import SchemaNotCurrent, current, head, require_current

    engine = _engine(db)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        revision = current(engine)
        typer.echo(f"{shown}: revision {revision or '(none)'}; this release needs {head()}")
        require_current(engine)
    except SchemaNotCurrent as err:
        raise fail(GROUP, err.message, 1) from None
    except SQLAlchemyError as err:
        raise _database_error(engine, err) from None
    finally:
        engine.dispose()


@db_app.command("revision")
def revision_command(
    message: Annotated[
        str, typer.Option("--message", "-m", help="What changes, e.g. 'asset width limit'.")
    ],
) -> None:
    """For developers: write the next revision from what serving/db/models.py changed.

    Alembic's autogenerate compares the models with a scratch database at the newest revision
    and writes serving/db/migrations/versions/NNNN_<message>.py. Read and complete it (it
    misses renames and data moves), then run the tests: tests/serving/db checks that models and
    revisions agree on SQLite and PostgreSQL.
    """
    from serving.db.migrate import new_revision

    path = new_revision(message)
    typer.echo(f"wrote {path}")
