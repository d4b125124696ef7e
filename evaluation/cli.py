"""`brandforge evaluate images|run`: score any folder of images, or run the A/B stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brandforge.brandkit import BrandKitError, load_brand_kit
from brandforge.options import ParamsOpt, RootOpt
from brandforge.params import ParamsError, load_params

evaluate_app = typer.Typer(
    help="Brand compliance and quality: score a folder of images, or run the A/B stage.",
    no_args_is_help=True,
)


@evaluate_app.command("images")
def images_command(
    folder: Annotated[
        Path, typer.Argument(help="Folder of PNG/JPEG/WebP images (nested folders included).")
    ],
    brand: Annotated[
        Path,
        typer.Option(
            "--brand", "-b", help="The brand kit: a brand.yaml, or the brand folder holding it."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the JSON report.")
    ] = Path("report.json"),
    fail_on_violation: Annotated[
        bool,
        typer.Option(
            "--fail-on-violation", help="Exit 1 when any image fails (for CI and scripts)."
        ),
    ] = False,
) -> None:
    """Score every image in FOLDER against the brand kit and write a JSON compliance report.

    Each image gets a score in [0, 1], passed or failed, and every violated rule with the
    measured value and the limit. Unreadable files are listed as such. No model is needed.
    """
    from evaluation.images import evaluate_folder, write_json

    try:
        kit = load_brand_kit(brand)
        brand_dir = brand if brand.is_dir() else brand.parent
        report = evaluate_folder(folder, kit, brand_dir=brand_dir)
    except (BrandKitError, FileNotFoundError) as err:
        typer.secho(f"evaluate images: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    write_json(out, report)
    s = report["summary"]
    if not s["images"]:
        typer.secho(f"no PNG, JPEG or WebP images under {folder}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"{s['images']} images: {s['passed']} passed, {s['failed']} failed, "
        f"{s['unreadable']} unreadable; mean score {s['mean_score']}"
    )
    for rule, count in s["violations"].items():
        typer.echo(f"  {rule}: {count}")
    typer.echo(f"report: {out}")
    if fail_on_violation and (s["failed"] or s["unreadable"]):
        raise typer.Exit(1)


@evaluate_app.command("champion")
def champion_command(
    params: ParamsOpt = Path("params.yaml"),
    root: RootOpt = Path("."),
) -> None:
    """Record which registered version is the brand's champion (models/champion.json)."""
    from evaluation import stage

    try:
        champion = stage.write_champion(load_params(params), root=root)
    except (ParamsError, stage.EvaluationError) as err:
        typer.secho(f"champion: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if champion["source"] == "base":
        typer.echo(f"champion: none yet ({champion['reason']})")
    else:
        typer.echo(f"champion: {champion['registered_model']} v{champion['version']}")


@evaluate_app.command("run")
def run_command(
    params: ParamsOpt = Path("params.yaml"),
    root: RootOpt = Path("."),
) -> None:
    """The `evaluate` stage: the new adapter (challenger) against the champion, A/B.

    Same prompts, seeds and sampler for both; paired differences with bootstrap intervals; the
    gate decision goes to metrics/eval.json and the training run in MLflow. The exit status is 1
    on a rejected challenger only when `eval.fail_on_gate` is true.
    """
    from evaluation import stage

    try:
        p = load_params(params)
        result = stage.run(p, root=root)
    except (ParamsError, BrandKitError, stage.EvaluationError) as err:
        typer.secho(f"evaluate: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(stage.format_result(result))
    if p.eval.fail_on_gate and not result["gate"]["passed"]:
        raise typer.Exit(1)
