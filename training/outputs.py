"""What a LoRA training records and delivers: its MLflow run (params, lineage tags, validation
grids; continued after a resume, ended KILLED when interrupted), and at the end the adapter in
diffusers' LoRA format, the evidence of what it learned, the loss plot and `metrics/train.json`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from brandforge.params import Params, TrainParams
from brandforge.pipeline import LORA_DIR, generate, image_grid, pipeline_kind
from brandforge.settings import get_settings
from brandforge.tracking import flatten, git_commit, params_hash, setup_mlflow
from training.checkpoints import StopOnSigterm
from training.evidence import evidence_prompts, measure_learning
from training.inputs import TrainingInputs

log = logging.getLogger(__name__)

METRICS_FILE = Path("metrics/train.json")
LOSS_PLOT = Path("plots/train_loss.csv")
ADAPTER_FILE = "pytorch_lora_weights.safetensors"


def continued_run_id(run_id: str | None) -> str | None:
    """The checkpoint's MLflow run, when it still exists (a run deleted meanwhile starts anew)."""
    import mlflow

    if run_id is None:
        return None
    try:
        mlflow.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        log.warning("MLflow run %s of the checkpoint is gone; starting a new run", run_id)
        return None
    return run_id


def log_run_start(params: Params, inputs: TrainingInputs, *, kind: str, n_examples: int) -> None:
    """Params and lineage tags of a new training run."""
    import mlflow

    tp = params.train
    mlflow.log_params({f"train.{k}": v for k, v in flatten(tp.model_dump()).items()})
    mlflow.log_params({"base.model": params.base.model, "base.resolution": inputs.resolution})
    mlflow.set_tags(
        {
            "brandforge.stage": "train",
            "brandforge.brand": inputs.brand,
            "brandforge.dataset_hash": inputs.dataset_hash,
            "brandforge.dataset_size": str(n_examples),
            "brandforge.base_identity": inputs.ref.identity,
            "brandforge.base_source": inputs.ref.source,
            "brandforge.base_kind": kind,
            "brandforge.git_commit": git_commit(inputs.root),
            "brandforge.params_hash": params_hash(tp.model_dump()),
        }
    )


def validation_prompts(inputs: TrainingInputs, tp: TrainParams) -> list[str]:
    """The configured validation prompts (`{brand}` = the trigger phrase), else the evidence's."""
    prompts = [p.replace("{brand}", inputs.kit.phrase) for p in tp.validation_prompts]
    return prompts or evidence_prompts(inputs.kit, tp.evidence)


def log_validation(
    pipe: Any, prompts: list[str], tp: TrainParams, *, resolution: int, step: int
) -> None:
    """A grid of the validation prompts at fixed seeds, logged at `step`."""
    import mlflow

    seeds = tp.evidence.seeds[:4]
    images = generate(
        pipe,
        prompts,
        seeds,
        steps=tp.evidence.num_inference_steps,
        guidance=tp.evidence.guidance_scale,
        resolution=resolution,
    )
    mlflow.log_image(image_grid(images, cols=len(seeds), upscale=4), key="validation", step=step)


def step_metrics(
    rows: list[dict[str, Any]], timestamps_ms: list[int], *, images_per_second: float
) -> list[Any]:
    """MLflow metrics of a window of optimizer steps: the loss and learning rate of every step,
    at its own step and time, and the window's throughput at its last step."""
    from mlflow.entities import Metric

    metrics = []
    for row, ts in zip(rows, timestamps_ms, strict=True):
        metrics.append(Metric("train_loss", row["loss"], ts, row["step"]))
        metrics.append(Metric("learning_rate", row["lr"], ts, row["step"]))
    if rows:
        metrics.append(
            Metric("images_per_second", images_per_second, timestamps_ms[-1], rows[-1]["step"])
        )
    return metrics


def log_steps(
    run_id: str, rows: list[dict[str, Any]], timestamps_ms: list[int], *, images_per_second: float
) -> None:
    """One MLflow write for a window of steps (a write per step slowed the loop down)."""
    import mlflow

    metrics = step_metrics(rows, timestamps_ms, images_per_second=images_per_second)
    if metrics:
        mlflow.MlflowClient().log_batch(run_id, metrics=metrics, synchronous=True)


def deliver(
    inputs: TrainingInputs,
    tp: TrainParams,
    *,
    pipe: Any,
    unet: Any,
    text_encoders: list[Any],
    history: list[dict[str, Any]],
    resumed_from: int,
    train_seconds: float,
    run_id: str,
) -> tuple[Path, dict[str, Any]]:
    """Save the adapter (diffusers LoRA format), measure what it learned, log it to MLflow with
    the `mlflow.diffusers` flavor and write `metrics/train.json`; returns the adapter folder
    and the metrics."""
    import mlflow
    import mlflow.diffusers

    root = inputs.root
    adapter_dir = save_adapter(pipe, unet, text_encoders, root / LORA_DIR)
    write_loss_plot(root / LOSS_PLOT, history)
    evidence = measure_learning(
        base_location=inputs.base_location,
        adapter_dir=adapter_dir,
        kit=inputs.kit,
        params=tp.evidence,
        resolution=inputs.resolution,
    )
    adherence = evidence["palette_adherence"]
    mlflow.log_metrics(
        {f"palette_adherence_{k}": adherence[k] for k in ("base", "adapter", "delta")}
    )
    mlflow.log_image(evidence.pop("grid"), artifact_file="evidence/base_vs_adapter.png")
    mlflow.log_dict(evidence, "evidence/palette_adherence.json")
    model_info = mlflow.diffusers.log_model(
        adapter_path=str(adapter_dir),
        base_model=inputs.base_location,
        name="adapter",
        metadata={
            "brand": inputs.brand,
            "dataset_hash": inputs.dataset_hash,
            "base_identity": inputs.ref.identity,
            "base_kind": pipeline_kind(pipe),
        },
    )
    losses = [h["loss"] for h in history]
    metrics = {
        "brand": inputs.brand,
        "steps": history[-1]["step"] if history else 0,
        "resumed_from_step": resumed_from,
        "final_loss": losses[-1] if losses else None,
        "mean_loss_last_10pct": (
            float(np.mean(losses[-max(1, len(losses) // 10) :])) if losses else None
        ),
        "train_seconds": round(train_seconds, 1),
        "dataset_hash": inputs.dataset_hash,
        "base_identity": inputs.ref.identity,
        "mlflow_run_id": run_id,
        "model_uri": model_info.model_uri,
        **{k: v for k, v in evidence.items() if k != "images"},
    }
    (root / METRICS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    mlflow.log_artifact(str(root / METRICS_FILE))
    return adapter_dir, metrics


# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def tracked_run(
    params: Params,
    inputs: TrainingInputs,
    *,
    run_id: str | None,
    kind: str,
    n_examples: int,
    resumed_from: int,
) -> Iterator[tuple[Any, StopOnSigterm]]:
    """The MLflow run of this training: the checkpoint's, continued, else a new one with its
    params and lineage tags. It ends FINISHED, KILLED when interrupted (Ctrl-C or SIGTERM:
    resumable from a checkpoint, not stuck RUNNING) or FAILED; inside `sigterm.deferred()` a
    SIGTERM waits for the step to end."""
    import mlflow

    setup_mlflow(inputs.brand, settings=get_settings())
    run_id = continued_run_id(run_id)
    sigterm = StopOnSigterm()
    sigterm.install()
    active = mlflow.start_run(run_id=run_id, run_name=None if run_id else f"{inputs.brand}-lora")
    try:
        if run_id is None:
            log_run_start(params, inputs, kind=kind, n_examples=n_examples)
        else:
            mlflow.set_tag("brandforge.resumed_from_step", str(resumed_from))
        yield active, sigterm
    except (KeyboardInterrupt, SystemExit):
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run()  # a no-op when the run already ended (stopped early: KILLED)
    finally:
        sigterm.restore()


def save_adapter(pipe: Any, unet: Any, text_encoders: list[Any], out_dir: Path) -> Path:
    """Write `pytorch_lora_weights.safetensors`, loadable with `load_lora_weights`.

    The keys stay in PEFT's format (`lora_A`/`lora_B`): converting them to the older diffusers
    names only renames attention layers, and `load_lora_weights` then silently dropped every
    attention layer of an adapter that also targets convolutions or feed-forward layers.
    """
    from peft.utils import get_peft_model_state_dict

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    unet_layers = get_peft_model_state_dict(unet)
    te_layers = [get_peft_model_state_dict(te) for te in text_encoders]
    if pipeline_kind(pipe) == "sdxl":
        pipe.save_lora_weights(
            tmp,
            unet_lora_layers=unet_layers,
            text_encoder_lora_layers=te_layers[0] if te_layers else None,
            text_encoder_2_lora_layers=te_layers[1] if len(te_layers) > 1 else None,
        )
    else:
        pipe.save_lora_weights(
            tmp,
            unet_lora_layers=unet_layers,
            text_encoder_lora_layers=te_layers[0] if te_layers else None,
        )
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def write_loss_plot(path: Path, history: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "loss", "lr"])
        writer.writeheader()
        writer.writerows(history)
