"""The `train` stage: fine-tune a LoRA adapter of the base model's UNet on one brand.

Read top to bottom: load base → freeze → cache latents and text embeddings → add LoRA →
loop (min-SNR weighted noise prediction) with checkpoints and validation grids → save the
adapter → log it to MLflow with the `mlflow.diffusers` flavor → measure what it learned.

Runs unchanged under `accelerate launch` on several GPUs: batches are drawn per process from a
seeded generator, so a run is reproducible and resumes exactly from a checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from brandforge.brandkit import load_brand_kit
from brandforge.params import Params, TrainParams
from brandforge.pipeline import (
    BASE_DIR,
    LORA_DIR,
    PREPARED_DIR,
    BaseReference,
    generate,
    image_grid,
    load_pipeline,
    pipeline_kind,
    read_base_reference,
)
from brandforge.settings import get_settings
from brandforge.tracking import flatten, git_commit, params_hash, run_url, setup_mlflow
from training.evidence import evidence_prompts, measure_learning

log = logging.getLogger(__name__)

CHECKPOINT_DIR = Path("checkpoints")
METRICS_FILE = Path("metrics/train.json")
LOSS_PLOT = Path("plots/train_loss.csv")
ADAPTER_FILE = "pytorch_lora_weights.safetensors"


class TrainingError(RuntimeError):
    """Training cannot start (missing inputs) or produced something unusable."""


@dataclass
class TrainResult:
    completed: bool
    step: int
    run_id: str
    run_url: str
    adapter_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Text conditioning: SD 1.x/2.x and SDXL differ only here.


@dataclass
class Conditioning:
    """Per-caption text conditioning: hidden states (+ pooled embeddings for SDXL)."""

    hidden: torch.Tensor  # (N, tokens, dim)
    pooled: torch.Tensor | None = None  # (N, dim) SDXL only

    def take(self, index: torch.Tensor) -> Conditioning:
        return Conditioning(self.hidden[index], None if self.pooled is None else self.pooled[index])


def encode_captions(pipe: Any, captions: list[str], device: torch.device) -> Conditioning:
    """Text-encoder outputs exactly as the pipeline computes them at inference."""
    if pipeline_kind(pipe) == "sdxl":
        hidden, _, pooled, _ = pipe.encode_prompt(
            prompt=captions,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
        return Conditioning(hidden, pooled)
    hidden, _ = pipe.encode_prompt(captions, device, 1, False)
    return Conditioning(hidden)


def sdxl_time_ids(pipe: Any, resolution: int, batch: int, device: torch.device) -> torch.Tensor:
    """SDXL's size/crop conditioning for uncropped square training images."""
    size = (resolution, resolution)
    ids = torch.tensor([list(size + (0, 0) + size)], dtype=torch.float32, device=device)
    return ids.repeat(batch, 1)


# ---------------------------------------------------------------------------------------------
# The cache of VAE latents and text embeddings, computed once per dataset version and base.


def load_prepared(root: Path) -> tuple[dict[str, Any], list[Path], list[str]]:
    prepared = root / PREPARED_DIR
    info_file = prepared / "dataset.json"
    if not info_file.is_file():
        raise TrainingError(f"{info_file}: no prepared dataset; run `dvc repro prepare` first")
    info = json.loads(info_file.read_text())
    files, captions = [], []
    with (prepared / "metadata.jsonl").open() as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                files.append(prepared / row["file_name"])
                captions.append(row["text"])
    if not files:
        raise TrainingError(f"{prepared}: the prepared dataset is empty")
    return info, files, captions


def build_cache(
    *,
    pipe: Any,
    files: list[Path],
    captions: list[str],
    resolution: int,
    device: torch.device,
    cache_file: Path,
) -> dict[str, Any]:
    """Encode every image once (latent mean and std) and every caption once."""
    if cache_file.is_file():
        log.info("using cached latents and text embeddings %s", cache_file)
        return dict(torch.load(cache_file, map_location="cpu", weights_only=True))
    from PIL import Image

    vae = pipe.vae
    means, stds = [], []
    batch = 32
    for start in tqdm(range(0, len(files), batch), desc="caching latents", unit="batch"):
        pixels = []
        for path in files[start : start + batch]:
            with Image.open(path) as opened:
                rgb = opened.convert("RGB")
            if rgb.size != (resolution, resolution):
                rgb = rgb.resize((resolution, resolution), Image.Resampling.BICUBIC)
            pixels.append(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0)
        x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).to(device, vae.dtype)
        with torch.no_grad():
            dist = vae.encode(x).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
    with torch.no_grad():
        cond = encode_captions(pipe, captions, device)
        empty = encode_captions(pipe, [""], device)
    cache = {
        "latent_mean": torch.cat(means),
        "latent_std": torch.cat(stds),
        "hidden": cond.hidden.float().cpu(),
        "empty_hidden": empty.hidden.float().cpu(),
    }
    if cond.pooled is not None and empty.pooled is not None:
        cache["pooled"] = cond.pooled.float().cpu()
        cache["empty_pooled"] = empty.pooled.float().cpu()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp")
    torch.save(cache, tmp)
    tmp.replace(cache_file)
    return cache


# ---------------------------------------------------------------------------------------------
# Checkpoints: LoRA weights, optimizer, LR scheduler, step and the MLflow run to continue.


def checkpoint_key(train: TrainParams, dataset_hash: str, base_identity: str) -> str:
    """Checkpoints are only resumable by a run with the same params, data and base."""
    return params_hash({"train": train.model_dump(), "data": dataset_hash, "base": base_identity})


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


# ---------------------------------------------------------------------------------------------
# Helpers of the loop.


def min_snr_weights(scheduler: Any, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al. 2023) for epsilon or v-prediction targets."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps)
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


def batch_indices(
    *, seed: int, step: int, micro: int, process: int, n: int, size: int
) -> np.ndarray:
    """The examples of one micro-batch: a pure function of its position, so resume is exact."""
    rng = np.random.default_rng([seed, step, micro, process])
    return rng.choice(n, size=size, replace=size > n)


# ---------------------------------------------------------------------------------------------


def run(
    params: Params, *, root: Path = Path("."), stop_after: int | None = None, fresh: bool = False
) -> TrainResult:
    """Train, checkpoint, log and save; `stop_after` ends early (as an interruption would)."""
    import mlflow
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    tp = params.train
    started = time.perf_counter()
    info, files, captions = load_prepared(root)
    kit = load_brand_kit(root / PREPARED_DIR / "brand.yaml")
    base_dir = root / BASE_DIR
    ref: BaseReference = read_base_reference(base_dir)
    resolution = int(info.get("resolution", ref.resolution))

    accelerator = Accelerator(
        mixed_precision=tp.mixed_precision,
        gradient_accumulation_steps=tp.gradient_accumulation_steps,
    )
    device = accelerator.device
    set_seed(tp.seed)

    pipe = load_pipeline(ref.location(base_dir), device=str(device))
    kind = pipeline_kind(pipe)
    unet = pipe.unet
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    for module in (pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None), unet):
        if module is not None:
            module.requires_grad_(False)

    # 1. Cache: VAE latents and text embeddings once per (dataset version, base model).
    settings = get_settings()
    cache_key = hashlib.sha256(f"{info['hash']}|{ref.identity}|{resolution}".encode()).hexdigest()
    cache_file = root / settings.cache_dir / "latents" / f"{cache_key[:24]}.pt"
    with accelerator.main_process_first():
        cache = build_cache(
            pipe=pipe,
            files=files,
            captions=captions,
            resolution=resolution,
            device=device,
            cache_file=cache_file,
        )
    n_examples = cache["latent_mean"].shape[0]
    scaling = pipe.vae.config.scaling_factor
    shift = getattr(pipe.vae.config, "shift_factor", None) or 0.0

    # 2. LoRA on the UNet (and optionally the text encoder, which then cannot be cached).
    unet.add_adapter(
        LoraConfig(
            r=tp.rank,
            lora_alpha=tp.alpha,  # type: ignore[arg-type]  # peft accepts a float scale
            lora_dropout=tp.dropout,
            init_lora_weights="gaussian",
            target_modules=list(tp.target_modules),
        )
    )
    text_encoders = [m for m in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if m]
    if tp.text_encoder_lora:
        # peft's own injection: transformers' `add_adapter` wants a newer peft than diffusers.
        from peft import inject_adapter_in_model

        for te in text_encoders:
            inject_adapter_in_model(
                LoraConfig(
                    r=tp.text_encoder_rank,
                    lora_alpha=tp.text_encoder_rank,
                    init_lora_weights="gaussian",
                    target_modules=list(tp.text_encoder_target_modules),
                ),
                te,
            )
    trainable = [p for m in [unet, *text_encoders] for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=tp.learning_rate, weight_decay=tp.weight_decay)
    lr_scheduler = get_scheduler(
        tp.lr_scheduler,
        optimizer=optimizer,
        # accelerate steps a prepared scheduler once per process per optimizer step
        num_warmup_steps=tp.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=tp.max_steps * accelerator.num_processes,
    )
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)

    def lora_state() -> dict[str, torch.Tensor]:
        state = {
            f"unet.{k}": v
            for k, v in get_peft_model_state_dict(accelerator.unwrap_model(unet)).items()
        }
        if tp.text_encoder_lora:
            for i, te in enumerate(text_encoders):
                state.update({f"te{i}.{k}": v for k, v in get_peft_model_state_dict(te).items()})
        return state

    # 3. Resume from the latest checkpoint of this exact configuration.
    run_dir = root / CHECKPOINT_DIR / checkpoint_key(tp, info["hash"], ref.identity)
    if fresh or (run_dir / "COMPLETED").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
    step, history, resumed_from, run_id = 0, [], 0, None
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        from safetensors.torch import load_file

        state = json.loads((ckpt / "state.json").read_text())
        weights = load_file(ckpt / "lora.safetensors")
        set_peft_model_state_dict(
            accelerator.unwrap_model(unet),
            {k[len("unet.") :]: v for k, v in weights.items() if k.startswith("unet.")},
        )
        for i, te in enumerate(text_encoders if tp.text_encoder_lora else []):
            prefix = f"te{i}."
            set_peft_model_state_dict(
                te, {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            )
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        lr_scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        step = resumed_from = int(state["step"])
        history = list(state.get("history", []))
        run_id = state.get("mlflow_run_id")
        log.info("resuming from %s (step %d of %d)", ckpt, step, tp.max_steps)

    # 4. MLflow: one run per training, continued after a resume.
    setup_mlflow(info["brand"], settings=settings)
    if run_id is not None:
        try:
            mlflow.get_run(run_id)
        except mlflow.exceptions.MlflowException:
            log.warning("MLflow run %s of the checkpoint is gone; starting a new run", run_id)
            run_id = None
    sigterm = _Sigterm()
    sigterm.install()
    active = mlflow.start_run(run_id=run_id, run_name=None if run_id else f"{info['brand']}-lora")
    try:
        if run_id is None:
            mlflow.log_params({f"train.{k}": v for k, v in flatten(tp.model_dump()).items()})
            mlflow.log_params({"base.model": params.base.model, "base.resolution": resolution})
            mlflow.set_tags(
                {
                    "brandforge.stage": "train",
                    "brandforge.brand": info["brand"],
                    "brandforge.dataset_hash": info["hash"],
                    "brandforge.dataset_size": str(n_examples),
                    "brandforge.base_identity": ref.identity,
                    "brandforge.base_source": ref.source,
                    "brandforge.base_kind": kind,
                    "brandforge.git_commit": git_commit(root),
                    "brandforge.params_hash": params_hash(tp.model_dump()),
                }
            )
        else:
            mlflow.set_tag("brandforge.resumed_from_step", str(resumed_from))

        validation_prompts = [p.replace("{brand}", kit.phrase) for p in tp.validation_prompts]
        validation_prompts = validation_prompts or evidence_prompts(kit, tp.evidence)

        def validate(at_step: int) -> None:
            images = generate(
                pipe,
                validation_prompts,
                tp.evidence.seeds[:4],
                steps=tp.evidence.num_inference_steps,
                guidance=tp.evidence.guidance_scale,
                resolution=resolution,
            )
            grid = image_grid(images, cols=len(tp.evidence.seeds[:4]), upscale=4)
            mlflow.log_image(grid, key="validation", step=at_step)

        # 5. The loop.
        unet.train()
        micro_batch = tp.batch_size
        progress = tqdm(
            total=tp.max_steps,
            initial=step,
            desc="training LoRA",
            unit="step",
            disable=not accelerator.is_local_main_process,
        )
        last_save = step
        window_start, window_images = time.perf_counter(), 0
        if step == 0 and accelerator.is_main_process:
            validate(0)
        while step < tp.max_steps:
            with sigterm.deferred():  # a SIGTERM ends the step first
                step_loss = 0.0
                for micro in range(tp.gradient_accumulation_steps):
                    idx = torch.from_numpy(
                        batch_indices(
                            seed=tp.seed,
                            step=step,
                            micro=micro,
                            process=accelerator.process_index,
                            n=n_examples,
                            size=micro_batch,
                        )
                    )
                    gen = torch.Generator("cpu").manual_seed(
                        int(
                            np.random.default_rng(
                                [tp.seed, step, micro, accelerator.process_index, 1]
                            ).integers(2**62)
                        )
                    )
                    mean, std = cache["latent_mean"][idx], cache["latent_std"][idx]
                    latents = (
                        mean + std * torch.randn(mean.shape, generator=gen) - shift
                    ) * scaling
                    latents = latents.to(device)
                    noise = torch.randn(latents.shape, generator=gen).to(device)
                    timesteps = torch.randint(
                        0, noise_scheduler.config.num_train_timesteps, (micro_batch,), generator=gen
                    ).to(device)
                    noisy = noise_scheduler.add_noise(latents, noise, timesteps)

                    drop = torch.rand(micro_batch, generator=gen) < tp.caption_dropout
                    if tp.text_encoder_lora:
                        batch_captions = [
                            "" if d else captions[i]
                            for i, d in zip(idx.tolist(), drop.tolist(), strict=True)
                        ]
                        cond = encode_captions(pipe, batch_captions, device)
                    else:
                        hidden = cache["hidden"][idx].clone()
                        hidden[drop] = cache["empty_hidden"][0]
                        pooled = None
                        if "pooled" in cache:
                            pooled = cache["pooled"][idx].clone()
                            pooled[drop] = cache["empty_pooled"][0]
                            pooled = pooled.to(device)
                        cond = Conditioning(hidden.to(device), pooled)
                    extra = {}
                    if kind == "sdxl":
                        extra["added_cond_kwargs"] = {
                            "text_embeds": cond.pooled,
                            "time_ids": sdxl_time_ids(pipe, resolution, micro_batch, device),
                        }

                    if noise_scheduler.config.prediction_type == "v_prediction":
                        target = noise_scheduler.get_velocity(latents, noise, timesteps)
                    else:
                        target = noise

                    with accelerator.accumulate(unet):
                        pred = unet(noisy, timesteps, cond.hidden, **extra, return_dict=False)[0]
                        per_example = F.mse_loss(pred.float(), target.float(), reduction="none")
                        per_example = per_example.mean(dim=list(range(1, per_example.ndim)))
                        if tp.snr_gamma is not None:
                            per_example = per_example * min_snr_weights(
                                noise_scheduler, timesteps, tp.snr_gamma
                            ).to(per_example.device)
                        loss = per_example.mean()
                        accelerator.backward(loss)
                        if accelerator.sync_gradients:
                            accelerator.clip_grad_norm_(trainable, tp.max_grad_norm)
                        optimizer.step()
                        lr_scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                    step_loss += accelerator.gather(loss.detach()).mean().item()
                    window_images += micro_batch * accelerator.num_processes

                step += 1
                step_loss /= tp.gradient_accumulation_steps
                lr = lr_scheduler.get_last_lr()[0]
                elapsed = time.perf_counter() - window_start
                throughput = window_images / elapsed if elapsed > 0 else 0.0
                window_start, window_images = time.perf_counter(), 0
                history.append({"step": step, "loss": round(step_loss, 6), "lr": lr})
                progress.update(1)
                progress.set_postfix(loss=f"{step_loss:.4f}")
                if accelerator.is_main_process:
                    mlflow.log_metrics(
                        {
                            "train_loss": step_loss,
                            "learning_rate": lr,
                            "images_per_second": throughput,
                        },
                        step=step,
                    )
                    if step % tp.validation_every == 0 or step == tp.max_steps:
                        validate(step)
                    if step % tp.checkpoint_every == 0 or step == tp.max_steps:
                        save_checkpoint(
                            run_dir,
                            step=step,
                            lora_state=lora_state(),
                            optimizer=optimizer,
                            lr_scheduler=lr_scheduler,
                            keep=tp.keep_checkpoints,
                            state={"mlflow_run_id": active.info.run_id, "history": history},
                        )
                        last_save = step
                if stop_after is not None and step >= stop_after and step < tp.max_steps:
                    progress.close()
                    log.info(
                        "stopping at step %d as asked (last checkpoint: step %d)", step, last_save
                    )
                    mlflow.end_run(status="KILLED")
                    return TrainResult(
                        completed=False,
                        step=step,
                        run_id=active.info.run_id,
                        run_url=run_url(active),
                    )
        progress.close()
        accelerator.wait_for_everyone()
        train_seconds = time.perf_counter() - started

        if not accelerator.is_main_process:
            mlflow.end_run()
            return TrainResult(completed=True, step=step, run_id=active.info.run_id, run_url="")

        # 6. Save the adapter in the standard diffusers LoRA format and log it to MLflow.
        adapter_dir = root / LORA_DIR
        save_adapter(
            pipe,
            accelerator.unwrap_model(unet),
            text_encoders if tp.text_encoder_lora else [],
            adapter_dir,
        )
        write_loss_plot(root / LOSS_PLOT, history)
        (run_dir / "COMPLETED").touch()

        evidence = measure_learning(
            base_location=ref.location(base_dir),
            adapter_dir=adapter_dir,
            kit=kit,
            params=tp.evidence,
            resolution=resolution,
        )
        mlflow.log_metrics(
            {
                "palette_adherence_base": evidence["palette_adherence"]["base"],
                "palette_adherence_adapter": evidence["palette_adherence"]["adapter"],
                "palette_adherence_delta": evidence["palette_adherence"]["delta"],
            }
        )
        mlflow.log_image(evidence.pop("grid"), artifact_file="evidence/base_vs_adapter.png")
        mlflow.log_dict(evidence, "evidence/palette_adherence.json")

        import mlflow.diffusers

        model_info = mlflow.diffusers.log_model(
            adapter_path=str(adapter_dir),
            base_model=ref.location(base_dir),
            name="adapter",
            metadata={
                "brand": info["brand"],
                "dataset_hash": info["hash"],
                "base_identity": ref.identity,
                "base_kind": kind,
            },
        )
        metrics = {
            "brand": info["brand"],
            "steps": step,
            "resumed_from_step": resumed_from,
            "final_loss": history[-1]["loss"] if history else None,
            "mean_loss_last_10pct": float(
                np.mean([h["loss"] for h in history[-max(1, len(history) // 10) :]])
            )
            if history
            else None,
            "train_seconds": round(train_seconds, 1),
            "dataset_hash": info["hash"],
            "base_identity": ref.identity,
            "mlflow_run_id": active.info.run_id,
            "model_uri": model_info.model_uri,
            **{k: v for k, v in evidence.items() if k != "images"},
        }
        (root / METRICS_FILE).parent.mkdir(parents=True, exist_ok=True)
        (root / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        mlflow.log_artifact(str(root / METRICS_FILE))
        result = TrainResult(
            completed=True,
            step=step,
            run_id=active.info.run_id,
            run_url=run_url(active),
            adapter_dir=adapter_dir,
            metrics=metrics,
        )
    except (KeyboardInterrupt, SystemExit):
        # Interrupted (Ctrl-C, or SIGTERM via _Sigterm): resumable from a checkpoint.
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    finally:
        sigterm.restore()
    mlflow.end_run()
    return result


class _Sigterm:
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
