"""Checkpoints of a LoRA training, and the interruptions they survive.

A checkpoint holds the LoRA weights, the optimizer and LR-scheduler state, the step, the loss
history and the MLflow run to continue. Batches are a pure function of their position
(`train_lora.sample_micro_batch`), so a run resumed from step k continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from brandforge.params import TrainParams
from brandforge.tracking import params_hash

log = logging.getLogger(__name__)

CHECKPOINT_DIR = Path("checkpoints")


def checkpoint_key(train: TrainParams, dataset_hash: str, base_identity: str) -> str:
    """Checkpoints are only resumable by a run with the same params, data and base; the params
    that only change how the loop runs (logging, compilation) may differ."""
    learned = train.model_dump(exclude=set(TrainParams.RUNTIME_KEYS))
    return params_hash({"train": learned, "data": dataset_hash, "base": base_identity})


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = [p for p in run_dir.glob("step-*") if (p / "state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(
    run_dir: Path,
    *,
    step: int,
    lora_state: dict[str, torch.Tensor],
    optimizer: Any,
    lr_scheduler: Any,
    state: dict[str, Any],
    keep: int,
) -> Path:
    from safetensors.torch import save_file

    final = run_dir / f"step-{step:06d}"
    tmp = run_dir / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in lora_state.items()}, tmp / "lora.safetensors"
    )
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(lr_scheduler.state_dict(), tmp / "scheduler.pt")
    # state.json last: a checkpoint without it is incomplete and ignored.
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(run_dir.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def lora_state(unet: Any, text_encoders: list[Any]) -> dict[str, torch.Tensor]:
    """The trained LoRA weights, prefixed `unet.` and `te<i>.` (the checkpoint's layout)."""
    from peft.utils import get_peft_model_state_dict

    state = {f"unet.{k}": v for k, v in get_peft_model_state_dict(unet).items()}
    for i, te in enumerate(text_encoders):
        state.update({f"te{i}.{k}": v for k, v in get_peft_model_state_dict(te).items()})
    return state


def resume(
    run_dir: Path,
    *,
    fresh: bool,
    unet: Any,
    text_encoders: list[Any],
    optimizer: Any,
    lr_scheduler: Any,
) -> tuple[int, list[dict[str, Any]], str | None]:
    """Restore the latest checkpoint in `run_dir`: (step, loss history, MLflow run id), or
    (0, [], None) to start afresh (`fresh`, none yet, or the last run there completed)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    if fresh or (run_dir / "COMPLETED").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return 0, [], None
    weights = load_file(ckpt / "lora.safetensors")
    modules = [("unet.", unet)] + [(f"te{i}.", te) for i, te in enumerate(text_encoders)]
    for prefix, module in modules:
        set_peft_model_state_dict(
            module, {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        )
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    lr_scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    state = json.loads((ckpt / "state.json").read_text())
    log.info("resuming from %s (step %d)", ckpt, state["step"])
    return int(state["step"]), list(state.get("history", [])), state.get("mlflow_run_id")


class StopOnSigterm:
    """SIGTERM as SystemExit, so the MLflow run ends as KILLED, not stuck RUNNING.

    Inside a training step (`deferred()`) the signal only takes note and the step ends first:
    raised in the middle of an MLflow write or a checkpoint, the exit left the SQLite store
    unable to record the run's end. A second SIGTERM exits at once.
    """

    def __init__(self) -> None:
        self.deferring = False
        self.pending: int | None = None
        self._previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.deferring and self.pending is None:
            self.pending = signum
            return
        raise SystemExit(128 + signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending is not None:
            log.warning("SIGTERM: stopping after step (resume from the last checkpoint)")
            raise SystemExit(128 + self.pending)
