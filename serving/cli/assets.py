"""`brandforge assets`: retention purge and storage statistics of the asset store, and its
encryption keys (a new key, rotating files to it)."""

from __future__ import annotations

import sys
from pathlib import Path
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


@assets_app.command("new-key")
def new_key_command(
    key_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            metavar="KEY_ID",
            help="The new key's id (1-64 of A-Z a-z 0-9 _ . -). Default: k<date>-<random>.",
            show_default=False,
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            metavar="PATH",
            help="The key file to add to (created owner-only when missing). "
            "Default: BRANDFORGE_ASSET_KEY_FILE.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Add a fresh random asset key to the key file; it becomes the newest.

    New files are encrypted with it as soon as the servers restart with the file; then
    `brandforge assets rotate-key` moves the older files to it. The key itself is never
    printed.
    """
    import secrets
    from datetime import UTC, datetime

    from brandforge.settings import get_settings
    from serving.assets.crypto import KeyRingError, append_key

    path = key_file or get_settings().asset_key_file
    if path is None:
        raise fail(GROUP, "no key file: give --key-file or set BRANDFORGE_ASSET_KEY_FILE", 2)
    key_id = key_id or f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
    try:
        append_key(Path(path), key_id)
    except (KeyRingError, OSError) as err:
        raise fail(GROUP, str(err), 2) from None
    typer.echo(f"added asset key {key_id!r} to {path}: the newest key now")
    typer.echo("next: restart the servers with it, then run: brandforge assets rotate-key")


@assets_app.command("rotate-key")
def rotate_key_command(
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Count the files per key id; read or change nothing."),
    ] = False,
    encrypt_clear: Annotated[
        bool,
        typer.Option(
            "--encrypt-clear", help="Also encrypt the files stored in clear before a key was set."
        ),
    ] = False,
    db: DbOpt = None,
    store: StoreOpt = None,
) -> None:
    """Re-wrap the data key of every file under an older asset key with the newest one.

    The newest key is the last of BRANDFORGE_ASSET_KEY_FILE; the older ones must still be
    there. Only each file's header changes, so this is fast whatever the file sizes.
    Safe to interrupt and rerun: rows are committed in batches. A real run writes an audit row
    with the counts; drop an old key from the file once a run leaves nothing under it.
    """
    from serving.assets.rotation import rotate_keys, rotation_plan

    asset_store = _store(store)
    if asset_store.keys is None:
        raise fail(GROUP, "no asset key is configured: set BRANDFORGE_ASSET_KEY_FILE", 2)
    newest = asset_store.keys.newest
    with open_session(db, group=GROUP) as session:
        total = sum(rotation_plan(session, newest, encrypt_clear=encrypt_clear).values())
        try:
            with typer.progressbar(
                length=total, label=f"re-wrapping to {newest}", file=sys.stderr, hidden=dry_run
            ) as bar:
                result = rotate_keys(
                    session,
                    asset_store,
                    dry_run=dry_run,
                    encrypt_clear=encrypt_clear,
                    actor=cli_actor(),
                    progress=bar.update,
                )
        except OSError as err:
            raise fail(GROUP, f"asset store {asset_store.url()}: {err}", 1) from None
    if result.plan:
        print_table(("KEY ID", "FILES"), [(k, str(n)) for k, n in result.plan.items()])
    if dry_run:
        typer.echo(
            f"would move {total} file(s) to key {newest!r}; {result.left_clear} left in clear "
            "(dry run: nothing changed)"
        )
        return
    if result.failed:
        print_table(
            ("ID", "PATH", "ERROR"), [(f["id"], f["path"], f["error"]) for f in result.failed]
        )
    typer.echo(
        f"key {newest!r}: {result.rewrapped} re-wrapped, {result.encrypted} encrypted, "
        f"{result.already} already done, {result.missing} missing, {len(result.failed)} failed, "
        f"{result.left_clear} left in clear"
    )
    if result.failed:
        raise fail(GROUP, f"{len(result.failed)} file(s) could not be opened: see above", 1)
