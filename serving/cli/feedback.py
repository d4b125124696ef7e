"""`brandforge data feedback`: reviewed assets of a brand into its dataset
(`serving.assets.feedback`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from serving.cli.common import DbOpt, check_brand_option, cli_actor, fail, open_session

GROUP = "feedback"


def _min_size(params_path: Path) -> int:
    """prepare.min_size from params.yaml, or 1 (no floor) when there is no params file."""
    if not params_path.is_file():
        return 1
    from brandforge.params import load_params

    return load_params(params_path).prepare.min_size


def feedback_command(
    brand: Annotated[
        str,
        typer.Option(
            "--brand", help="Brand whose reviewed assets to export.", callback=check_brand_option
        ),
    ],
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Folder holding the brand folders.")
    ] = Path("data/brands"),
    db: DbOpt = None,
    no_rejected: Annotated[
        bool, typer.Option("--no-rejected", help="Export approved assets only, no negatives.")
    ] = False,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since",
            help="Only assets reviewed at or after this time (ISO, UTC when no zone given).",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"],
            show_default=False,
        ),
    ] = None,
    params: Annotated[
        Path, typer.Option("--params", help="params.yaml, for prepare.min_size (if present).")
    ] = Path("params.yaml"),
) -> None:
    """Export reviewed assets of a brand into its dataset: approved ones as training images,
    rejected ones as negatives (`brandforge data feedback --brand B`)."""
    from brandforge.params import ParamsError
    from serving.assets.feedback import NEGATIVES_DIR, FeedbackError, export_feedback
    from serving.assets.store import AssetStore
    from serving.auth import audit

    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    brand_dir = data_dir / brand
    try:
        min_size = _min_size(params)
    except ParamsError as err:
        raise fail(GROUP, str(err), 1) from None
    with open_session(db, group=GROUP) as session:
        try:
            result = export_feedback(
                session,
                AssetStore.from_settings(),
                brand=brand,
                brand_dir=brand_dir,
                include_rejected=not no_rejected,
                since=since,
                min_size=min_size,
            )
        except FeedbackError as err:
            raise fail(GROUP, str(err), 1) from None
        audit(
            session,
            cli_actor(),
            "feedback.export",
            brand,
            approved=result.approved,
            rejected=result.rejected,
            skipped=result.skipped,
            folder=str(brand_dir),
        )

    typer.echo(
        f"{brand}: exported {result.approved} approved image(s) to {brand_dir / 'images'} and "
        f"{result.rejected} rejected one(s) to {brand_dir / NEGATIVES_DIR}; "
        f"skipped {result.skipped}"
    )
    for asset_id, why in sorted(result.skip_reasons.items()):
        typer.echo(f"  skipped {asset_id}: {why}")
    if result.approved or result.rejected:
        typer.echo(f"next: dvc add {brand_dir} && dvc repro")
    else:
        typer.echo("nothing new to export")
