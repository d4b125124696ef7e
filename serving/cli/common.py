"""What the serving commands share: the `--db` option and opening the serving database, brand
options, one-line errors, the audit actor, tables and times, calls to a running server.

Errors a user can fix end a command with one red line on stderr, prefixed with the command
group (`keys: ...`): exit 2 for a refused value (a bad URL, an unknown role, a duplicate
name), exit 1 for a database or server that cannot be used. Heavy modules (SQLAlchemy,
serving.auth, requests) are imported inside the functions, when a command runs.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brandforge.names import brand_problem

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Serving database URL (sqlite:///serving.db, postgresql://user@host/db). "
        "Default: BRANDFORGE_SERVING_DB, else sqlite:///serving.db.",
        show_default=False,
    ),
]

# Every brand, in `brandforge keys create --brand` (serving.auth.ALL_BRANDS).
ALL_BRANDS = "*"


def fail(group: str, message: str, code: int) -> typer.Exit:
    """Print `group: message` in red on stderr; return the Exit to raise (`raise fail(...)`)."""
    typer.secho(f"{group}: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def cli_actor() -> str:
    """The audit actor for a command run by a person: `cli:<login name>`."""
    try:
        login = getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        login = "unknown"
    return f"cli:{login}"


def split_values(values: Sequence[str]) -> list[str]:
    """`--role a --role b,c` → `["a", "b", "c"]`."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def check_brand_option(value: str | None) -> str | None:
    """Typer callback of a `--brand` option: a usage error (exit 2) naming the option when the
    value is not a brand name (`brandforge.names`)."""
    if value is not None and (problem := brand_problem(value)) is not None:
        raise typer.BadParameter(problem)
    return value


def check_key_brands(values: list[str] | None) -> list[str] | None:
    """Typer callback of `keys create --brand`: brand names, comma-separated or repeated, or
    `*` for every brand."""
    for value in split_values(values or []):
        if value != ALL_BRANDS and (problem := brand_problem(value)) is not None:
            raise typer.BadParameter(f"{problem} (or {ALL_BRANDS!r} for every brand)")
    return values


def shown_url(url: str) -> str:
    """A database URL with its password masked, for messages."""
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


@contextmanager
def open_session(db: str | None, *, group: str) -> Iterator[Session]:
    """A session on the serving database, committed when the block ends without an error.

    The schema: an empty database (a fresh machine) is created at this release's revision, so
    `brandforge keys create` works first thing; a database with tables must already be at that
    revision, since upgrading a shared database is for `brandforge db upgrade` (or `serve`) to
    do: otherwise exit 1 saying so. A bad URL or a refused value is exit 2, a database that
    cannot be reached exit 1, each one red line.
    """
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from serving.db.engine import database_url, engine_for, session_factory
    from serving.db.migrate import SchemaNotCurrent, create_or_require_current

    try:
        engine = engine_for(db)
    except (ArgumentError, ImportError) as err:
        url = shown_url(database_url(db))
        raise fail(group, f"cannot use database URL {url!r}: {err}", 2) from None
    shown = engine.url.render_as_string(hide_password=True)
    try:
        create_or_require_current(engine)
        # Not `.begin()`: a command may commit in batches itself (assets purge).
        with session_factory(engine)() as session:
            yield session
            session.commit()
    except SchemaNotCurrent as err:
        raise fail(group, err.message, 1) from None
    except ValueError as err:
        raise fail(group, str(err), 2) from None
    except SQLAlchemyError as err:
        reason = " ".join(str(getattr(err, "orig", None) or err).split())
        raise fail(group, f"database {shown}: {reason}", 1) from None
    finally:
        engine.dispose()


def when(value: datetime | None) -> str:
    """A time for a table cell (UTC, to the second), `-` for none."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell, two spaces apart, trailing spaces trimmed."""
    table = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


# --------------------------------------------------------------------------------------------
# Commands that talk to a running server (`brandforge rollout`, `brandforge campaign`)
# --------------------------------------------------------------------------------------------

Url = Annotated[str, typer.Option("--url", envvar="BRANDFORGE_URL", help="The server.")]
DEFAULT_URL = "http://127.0.0.1:8000"


def api_call(
    method: str,
    url: str,
    key: str,
    body: dict[str, Any] | None = None,
    *,
    group: str,
    show: bool = True,
) -> dict[str, Any]:
    """One API call; prints the JSON answer (`show`), or one red line and exit 1 on an error."""
    import json

    import requests

    try:
        r = requests.request(
            method, url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
    except requests.RequestException as err:
        raise fail(group, f"cannot reach {url}: {err}", 1) from None
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        raise fail(group, f"{r.status_code}: {detail}", 1)
    answer: dict[str, Any] = r.json()
    if show:
        typer.echo(json.dumps(answer, indent=2))
    return answer
