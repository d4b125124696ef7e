"""`brandforge data|base|train`: the training stages that `dvc.yaml` calls.

Each command reads `params.yaml`, runs one stage module and turns the errors a user can act on
(bad params, a bad brand folder, a missing base model) into one clear message and exit code 1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from brandforge.brandkit import BrandKitError
from brandforge.options import ParamsOpt, RootOpt
from brandforge.params import Params, ParamsError, load_params
from brandforge.pipeline import BASE_DIR, BaseModelError, BaseReference

log = logging.getLogger(__name__)

data_app = typer.Typer(help="Brand datasets: generate the demo brand, validate and prepare one.")


def _user_errors() -> tuple[type[Exception], ...]:
    from training.train_lora import TrainingError

    errors: list[type[Exception]] = [ParamsError, BrandKitError, BaseModelError, TrainingError]
    try:
        from training.prepare import DatasetError

        errors.append(DatasetError)
    except ImportError:  # pragma: no cover - during partial installs only
        pass
    return tuple(errors)


@contextmanager
def _stage(name: str) -> Iterator[None]:
    try:
        yield
    except _user_errors() as err:
        typer.secho(f"{name}: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def _run(name: str, params_path: Path, runner: Callable[[Params], object]) -> object:
    with _stage(name):
        params = load_params(params_path)
        return runner(params)


@data_app.command("demo")
def demo_command(params: ParamsOpt = Path("params.yaml"), root: RootOpt = Path(".")) -> None:
    """Generate the deterministic demo brand (`data.demo_brand`) under `data.brands_dir`."""
    from training import demo_brand

    out = _run("demo", params, lambda p: demo_brand.run(p, root=root))
    typer.echo(f"demo brand written to {out}")


@data_app.command("prepare")
def prepare_command(params: ParamsOpt = Path("params.yaml"), root: RootOpt = Path(".")) -> None:
    """Validate the brand (`data.brand`) and write the prepared dataset and its content hash."""
    from training import prepare

    result = _run("prepare", params, lambda p: prepare.run(p, root=root))
    if isinstance(result, dict):
        typer.echo(
            f"prepared {result.get('n_images')} images, dataset hash {result.get('hash')} "
            "→ data/prepared"
        )


def base_command(params: ParamsOpt = Path("params.yaml"), root: RootOpt = Path(".")) -> None:
    """Build and pretrain the embedded base model, or check and record an external one."""
    from training import base_model

    ref = _run("base", params, lambda p: base_model.run(p, root=root))
    if not isinstance(ref, BaseReference):
        return
    metrics_file = root / base_model.METRICS_FILE
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    where = root / BASE_DIR if ref.model == "." else ref.model
    typer.echo(f"\nbase model ({ref.source}, {ref.kind}, {ref.resolution} px): {where}")
    typer.echo(f"  identity:  {ref.identity}")
    if "colour_following" in metrics:
        typer.echo(
            f"  pretrained {metrics.get('unet_steps')} steps in {metrics.get('seconds')} s; "
            f"colour following {metrics['colour_following']} (see metrics/base.json)"
        )
    typer.echo("  next:      brandforge train   (or `dvc repro`)")


def train_command(
    params: ParamsOpt = Path("params.yaml"),
    root: RootOpt = Path("."),
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps (overrides train.max_steps).")
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Ignore existing checkpoints and start from step 0.")
    ] = False,
) -> None:
    """Fine-tune a LoRA adapter on the prepared brand dataset, tracked in MLflow."""
    from training import train_lora
    from training.summary import format_summary

    result = _run(
        "train",
        params,
        lambda p: train_lora.run(p, root=root, stop_after=max_steps, fresh=fresh),
    )
    if not isinstance(result, train_lora.TrainResult):
        return
    if result.completed:
        typer.echo(format_summary(result.metrics, run_url=result.run_url))
    else:
        typer.echo(
            f"stopped at step {result.step}; run `brandforge train` again to resume "
            f"(MLflow run {result.run_id})"
        )
