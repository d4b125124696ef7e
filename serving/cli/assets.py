"""`brandforge assets`: retention purge and storage statistics of the asset store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from serving.cli.common import (
    DbOpt,
    check_brand_option,
    cli_actor,
    fail,
    open_session,
    print_table,
    when,
)

if TYPE_CHECKING:
    from serving.assets.store import AssetStore

assets_app = typer.Typer(
    help="Generated asset files: delete those past their brand's retention, show what is stored.",
    no_args_is_help=True,
)
GROUP = "assets"

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


def _store(url: str | None) -> AssetStore:
    """The asset store `url` (else the settings'); one red line and exit 2 if unusable."""
    from pydantic import ValidationError

    from brandforge.settings import get_settings
    from serving.assets.store import AssetStore

    try:
        return AssetStore.from_settings(get_settings(), url=url, cache=False)
    except ValidationError as err:
        raise fail(GROUP, f"settings: {' '.join(str(err).split())}", 2) from None
    except (ValueError, ImportError) as err:
        raise fail(GROUP, str(err), 2) from None


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
        typer.Option(
            "--brand",
            "-b",
            metavar="BRAND",
            help="Only this brand's assets.",
            callback=check_brand_option,
        ),
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
    with open_session(db, group=GROUP) as session:
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
            raise fail(GROUP, f"asset store {asset_store.url()}: {err}", 1) from None
    if result.assets:
        print_table(
            ("ID", "BRAND", "PATH", "EXPIRED", "FILE"),
            [
                (a["id"], a["brand"], a["path"], when(a["expires_at"]), a["file"])
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
    with open_session(db, group=GROUP) as session:
        try:
            stats = asset_stats(session, asset_store)
        except OSError as err:
            where = asset_store.url() if asset_store else "?"
            raise fail(GROUP, f"asset store {where}: {err}", 1) from None
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
        print_table(("BRAND", "STATUS", "COUNT", "FILES", "BYTES"), rows)
    total = sum(g["count"] for g in stats.groups)
    if not stats.listed:
        typer.echo(f"total: {total} asset(s)")
        return
    total_bytes = sum(g["bytes"] for g in stats.groups)
    typer.echo(f"total: {total} asset(s), {total_bytes} bytes ({_size(total_bytes)})")
    typer.echo(f"files without a row: {stats.orphan_files} ({stats.orphan_bytes} bytes)")
    typer.echo(f"rows (not deleted) whose file is missing: {stats.missing_files}")
