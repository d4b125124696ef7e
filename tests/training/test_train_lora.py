"""The LoRA trainer on a tiny real pipeline: checkpoints, resume, caching, tracking."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from brandforge.params import parse_params
from training import train_lora

MICRO = {
    "max_steps": 6,
    "batch_size": 4,
    "checkpoint_every": 2,
    "keep_checkpoints": 2,
    "validation_every": 3,
    "evidence": {"seeds": [0, 1], "num_inference_steps": 4, "prompts": ["{brand} banner"]},
}


def _params(**train):
    return parse_params({"train": {**MICRO, **train}})


def _adapter(root: Path) -> dict[str, torch.Tensor]:
    return load_file(root / "models/lora/pytorch_lora_weights.safetensors")


def test_interrupted_training_resumes_from_the_last_checkpoint(train_root: Path, tmp_path_factory):
    params = _params()
    stopped = train_lora.run(params, root=train_root, stop_after=4)
    assert not stopped.completed and stopped.step == 4
    run_dirs = list((train_root / "checkpoints").iterdir())
    assert len(run_dirs) == 1
    assert sorted(p.name for p in run_dirs[0].glob("step-*")) == ["step-000002", "step-000004"]
    assert not (train_root / "models/lora").exists()  # nothing half-delivered
    assert mlflow.get_run(stopped.run_id).info.status == "KILLED"

    resumed = train_lora.run(params, root=train_root)
    assert resumed.completed and resumed.step == 6
    assert resumed.metrics["resumed_from_step"] == 4
    assert resumed.run_id == stopped.run_id  # the same MLflow run continues
    history = mlflow.MlflowClient().get_metric_history(resumed.run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]
    # keep_checkpoints=2: only the newest two remain
    assert sorted(p.name for p in run_dirs[0].glob("step-*")) == ["step-000004", "step-000006"]

    # Resuming gives the same adapter as never stopping (seeded, position-derived batches).
    # The uninterrupted run uses a fresh checkpoint folder (--fresh) in the same root.
    resumed_weights = _adapter(train_root)
    again = train_lora.run(params, root=train_root, fresh=True)
    assert again.metrics["resumed_from_step"] == 0
    straight = _adapter(train_root)
    assert resumed_weights.keys() == straight.keys()
    for key in straight:
        torch.testing.assert_close(resumed_weights[key], straight[key], rtol=1e-5, atol=1e-6)


def test_training_is_tracked_and_the_adapter_changes_the_model(train_root: Path):
    result = train_lora.run(_params(), root=train_root)
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.rank"] == "16"
    assert run.data.params["train.snr_gamma"] == "5.0"
    for tag in ("dataset_hash", "base_identity", "git_commit", "brand"):
        assert run.data.tags[f"brandforge.{tag}"]
    assert (
        run.data.tags["brandforge.dataset_hash"]
        == json.loads((train_root / "data/prepared/dataset.json").read_text())["hash"]
    )
    client = mlflow.MlflowClient()

    def steps(key: str) -> list[int]:
        return sorted(m.step for m in client.get_metric_history(result.run_id, key))

    # Every optimizer step's loss and learning rate, though read and written in windows.
    assert steps("train_loss") == steps("learning_rate") == [1, 2, 3, 4, 5, 6]
    losses = {m.step: m.value for m in client.get_metric_history(result.run_id, "train_loss")}
    # Throughput once per window: the first step, before validation (3) and checkpoints (2, 4),
    # and the last step; log_every=10 adds none here.
    assert steps("images_per_second") == [1, 2, 3, 4, 6]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"images", "evidence", "train.json"} <= artifacts
    images = [a.path for a in client.list_artifacts(result.run_id, "images")]
    assert any("validation" in p and "step+3" in p for p in images)

    metrics = json.loads((train_root / "metrics/train.json").read_text())
    assert metrics["steps"] == 6 and np.isfinite(metrics["final_loss"])
    pa = metrics["palette_adherence"]
    assert 0 <= pa["base"] <= 1 and 0 <= pa["adapter"] <= 1 and pa["n_images"] == 2
    plot = (train_root / "plots/train_loss.csv").read_text().splitlines()
    assert len(plot) == 7
    assert {int(r.split(",")[0]): float(r.split(",")[1]) for r in plot[1:]} == pytest.approx(losses)

    weights = _adapter(train_root)
    assert weights and all(k.startswith("unet.") for k in weights)
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora.up" in k or "lora_B" in k)


def test_latents_are_cached_once_per_dataset_version(train_root: Path):
    train_lora.run(_params(max_steps=1, checkpoint_every=1), root=train_root)
    cached = list((train_root / "cache/latents").glob("*.pt"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    train_lora.run(_params(max_steps=2, checkpoint_every=1), root=train_root)
    assert [p.stat().st_mtime_ns for p in (train_root / "cache/latents").glob("*.pt")] == [stamp]


def test_text_encoder_lora_and_accumulation(train_root: Path):
    result = train_lora.run(
        _params(
            max_steps=2,
            checkpoint_every=2,
            text_encoder_lora=True,
            gradient_accumulation_steps=2,
            snr_gamma=None,
        ),
        root=train_root,
    )
    assert result.completed
    weights = _adapter(train_root)
    assert any(k.startswith("text_encoder.") for k in weights)


def _lora_modules(model) -> set[str]:
    return {name for name, m in model.named_modules() if getattr(m, "lora_A", None)}


def test_every_trained_layer_is_loaded_back(train_root: Path):
    """Attention, convolution and feed-forward LoRA layers, UNet and text encoder, all reload."""
    from diffusers import StableDiffusionPipeline

    modules = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "ff.net.2", "proj_in"]
    result = train_lora.run(
        _params(max_steps=2, checkpoint_every=2, target_modules=modules, text_encoder_lora=True),
        root=train_root,
    )
    assert result.completed
    pipe = StableDiffusionPipeline.from_pretrained(train_root / "models/base")
    pipe.load_lora_weights(train_root / "models/lora")
    loaded = _lora_modules(pipe.unet)
    kinds = {name.rsplit(".", 1)[-1] for name in loaded} | {
        name.rsplit(".", 2)[-2] + "." + name.rsplit(".", 1)[-1] for name in loaded
    }
    assert {"to_q", "to_out.0", "conv1", "conv2", "proj_in"} <= kinds, sorted(kinds)
    weights = _adapter(train_root)
    trained = {k.removeprefix("unet.").split(".lora")[0] for k in weights if k.startswith("unet.")}
    assert loaded == trained
    assert _lora_modules(pipe.text_encoder)


def test_missing_prepared_dataset_is_a_clear_error(tmp_path: Path):
    with pytest.raises(train_lora.TrainingError, match="dvc repro prepare"):
        train_lora.run(_params(), root=tmp_path)


def test_min_snr_weights_cap_high_snr_timesteps():
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000)
    w = train_lora.min_snr_weights(sched, torch.tensor([1, 500, 999]), gamma=5.0)
    # low t: SNR >> gamma, weight gamma/SNR < 1; high t: SNR < gamma, weight 1
    assert w[0] < 0.01 and w[2] == pytest.approx(1.0)


def test_batches_depend_only_on_their_position():
    a = train_lora.batch_indices(seed=1, step=5, micro=0, process=0, n=10, size=4)
    b = train_lora.batch_indices(seed=1, step=5, micro=0, process=0, n=10, size=4)
    c = train_lora.batch_indices(seed=1, step=6, micro=0, process=0, n=10, size=4)
    assert list(a) == list(b) and list(a) != list(c)
    assert len(set(a)) == 4  # without replacement when the dataset is large enough


def test_trainer_handles_an_sdxl_base(train_root: Path):
    import shutil

    from diffusers import StableDiffusionXLPipeline

    from brandforge.pipeline import BaseReference, write_base_reference
    from tests.tiny_models import save_tiny_sdxl

    base = train_root / "models/base"
    shutil.rmtree(base)
    save_tiny_sdxl(base)
    write_base_reference(
        base,
        BaseReference(model=".", kind="sdxl", identity="tiny-sdxl", source="local", resolution=32),
    )
    result = train_lora.run(_params(max_steps=2, checkpoint_every=2), root=train_root)
    assert result.completed
    assert mlflow.get_run(result.run_id).data.tags["brandforge.base_kind"] == "sdxl"
    pipe = StableDiffusionXLPipeline.from_pretrained(base, local_files_only=True)
    pipe.load_lora_weights(train_root / "models/lora")
    assert pipe.get_list_adapters()["unet"]


def test_a_training_killed_by_sigterm_ends_killed_and_resumes(train_root: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    train = {**MICRO, "max_steps": 2000, "checkpoint_every": 1, "validation_every": 1000}
    (train_root / "params.yaml").write_text(yaml.safe_dump({"train": train}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "brandforge", "train"],
        cwd=train_root,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    try:
        # Old checkpoints are pruned as new ones land: wait for any at step 2 or later.
        while not any(
            int(p.parent.name.split("-")[1]) >= 2
            for p in (train_root / "checkpoints").glob("*/step-*/state.json")
        ):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert [r.info.status for r in runs] == ["KILLED"]
    killed_at = max(
        int(p.name.split("-")[1]) for p in (train_root / "checkpoints").glob("*/step-*")
    )
    assert killed_at >= 2

    resumed = train_lora.run(
        parse_params({"train": {**train, "max_steps": killed_at + 1}}), root=train_root
    )
    # max_steps changed, so this is a different configuration: it must NOT resume.
    assert resumed.metrics["resumed_from_step"] == 0
    resumed = train_lora.run(
        parse_params({"train": train}), root=train_root, stop_after=killed_at + 1
    )
    assert resumed.run_id == runs[0].info.run_id and resumed.step == killed_at + 1
