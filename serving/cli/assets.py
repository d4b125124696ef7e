"""`brandforge assets`: retention purge and storage statistics of the asset store."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from serving.cli.keys import DbOpt, cli_actor

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from serving.assets.store import AssetStore

assets_app = typer.Typer(
    help="Generated asset files: delete those past their brand's retention, show what is stored.",
    no_args_is_help=True,
)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL",
        help="Asset store (s3://bucket/prefix, file:///srv/assets or a folder). Default: "
        "BRANDFORGE_ASSET_STORE, else BRANDFORGE_ASSET_DIR (./assets). S3 options and "
        "credentials come from BRANDFORGE_ASSET_STORE_OPTIONS or the usual AWS_* variables.",
        show_default=False,
    ),
]


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"assets: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextmanager
def _session(db: str | None) -> Iterator[Session]:
    """A session on the serving database (tables created when missing); the caller commits.

    As in `brandforge keys`: a bad URL or a refused value is one red line and exit 2, an
    unreachable database one red line and exit 1.
    """
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from serving.db.models import database_url, engine_for, init_db, session_factory

    try:
        engine = engine_for(db)
    except (ArgumentError, ImportError) as err:
        shown_url = re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", database_url(db))
        raise _fail(f"cannot use database URL {shown_url!r}: {err}", 2) from None
    shown = engine.url.render_as_string(hide_password=True)
    try:
        init_db(engine)
        with session_factory(engine)() as session:
            yield session
            session.commit()
    except ValueError as err:
        raise _fail(str(err), 2) from None
    except SQLAlchemyError as err:
        reason = " ".join(str(getattr(err, "orig", None) or err).split())
        raise _fail(f"database {shown}: {reason}", 1) from None
    finally:
        engine.dispose()


def _store(url: str | None) -> AssetStore:
    """The asset store `url` (else the settings'); one red line and exit 2 if unusable."""
    from pydantic import ValidationError

    from brandforge.settings import get_settings
    from serving.assets.store import AssetStore

    try:
        settings = get_settings()
        if url is None:
            return AssetStore.from_settings(settings)
        return AssetStore(url, options=dict(settings.asset_store_options), cache_bytes=0)
    except ValidationError as err:
        raise _fail(f"settings: {' '.join(str(err).split())}", 2) from None
    except (ValueError, ImportError) as err:
        raise _fail(str(err), 2) from None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@assets_app.command("purge")
def purge_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted; change nothing.")
    ] = False,
    brand: Annotated[
        str | None,
        typer.Option("--brand", "-b", metavar="BRAND", help="Only this brand's assets."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=0, metavar="N", help="At most N assets in this run."),
    ] = None,
    db: DbOpt = None,
    store: StoreOpt = None,
) -> None:
    """Delete the files of assets past their expiry; their rows stay, marked deleted.

    Expiry is set from BRANDFORGE_RETENTION_DAYS when an asset is made.
    Safe to interrupt and rerun: progress is committed in batches.
    A file already gone counts as missing. Each real run writes an audit row with the counts.
    """
    from serving.assets.retention import purge_expired

    asset_store = _store(store)
    with _session(db) as session:
        try:
            result = purge_expired(
                session,
                asset_store,
                dry_run=dry_run,
                brand=brand,
                limit=limit,
                actor=cli_actor(),
            )
        except OSError as err:
            raise _fail(f"asset store {asset_store.url()}: {err}", 1) from None
    if result.assets:
        _table(
            ("ID", "BRAND", "PATH", "EXPIRED", "FILE"),
            [
                (a["id"], a["brand"], a["path"], _when(a["expires_at"]), a["file"])
                for a in result.assets
            ],
        )
    n = len(result.assets)
    if dry_run:
        typer.echo(
            f"would delete {n} expired asset(s): {result.deleted_files} file(s) present, "
            f"{result.missing_files} already missing (dry run: nothing changed)"
        )
    else:
        typer.echo(
            f"deleted {n} expired asset(s): {result.deleted_files} file(s) deleted, "
            f"{result.missing_files} already missing, from {asset_store.url()}"
        )


@assets_app.command("stats")
def stats_command(
    db: DbOpt = None,
    store: StoreOpt = None,
    files: Annotated[
        bool,
        typer.Option(
            "--files/--no-files",
            help="List the store to add bytes, orphan and missing files (one listing; "
            "--no-files: database counts only).",
        ),
    ] = True,
) -> None:
    """Assets per brand and status: how many, and the bytes their files take."""
    from serving.assets.retention import asset_stats

    asset_store = _store(store) if files else None
    with _session(db) as session:
        try:
            stats = asset_stats(session, asset_store)
        except OSError as err:
            where = asset_store.url() if asset_store else "?"
            raise _fail(f"asset store {where}: {err}", 1) from None
    if not stats.groups:
        typer.echo("no assets yet")
    else:
        rows = [
            (
                g["brand"],
                g["status"],
                str(g["count"]),
                "-" if g["files"] is None else str(g["files"]),
                "-" if g["bytes"] is None else str(g["bytes"]),
            )
            for g in stats.groups
        ]
        _table(("BRAND", "STATUS", "COUNT", "FILES", "BYTES"), rows)
    total = sum(g["count"] for g in stats.groups)
    if not stats.listed:
        typer.echo(f"total: {total} asset(s)")
        return
    total_bytes = sum(g["bytes"] for g in stats.groups)
    typer.echo(f"total: {total} asset(s), {total_bytes} bytes ({_size(total_bytes)})")
    typer.echo(f"files without a row: {stats.orphan_files} ({stats.orphan_bytes} bytes)")
    typer.echo(f"rows (not deleted) whose file is missing: {stats.missing_files}")
