"""The `train` stage: fine-tune a LoRA adapter of the base model's UNet on one brand.

Read `run` top to bottom: load base → freeze → cache latents and text embeddings → add LoRA →
loop (min-SNR weighted noise prediction) with checkpoints and validation grids → save the
adapter → measure what it learned → log it to MLflow with the `mlflow.diffusers` flavor.
The inputs and their cache live in `training.inputs`, checkpoints in `training.checkpoints`,
the MLflow run and the delivered adapter in `training.outputs`.

Runs unchanged under `accelerate launch` on several GPUs: batches are drawn per process from a
seeded generator, so a run is reproducible and resumes exactly from a checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from brandforge.params import Params, TrainParams
from brandforge.pipeline import pipeline_kind
from brandforge.settings import get_settings
from brandforge.tracking import run_url
from training.checkpoints import (
    CHECKPOINT_DIR,
    checkpoint_key,
    lora_state,
    resume,
    save_checkpoint,
)
from training.inputs import (
    Conditioning,
    TrainingError,
    encode_captions,
    load_cache,
    load_frozen_pipeline,
    load_inputs,
    sdxl_time_ids,
)
from training.outputs import (
    deliver,
    log_steps,
    log_validation,
    tracked_run,
    validation_prompts,
)

__all__ = ["TrainResult", "TrainingError", "batch_indices", "min_snr_weights", "run"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    completed: bool
    step: int
    run_id: str
    run_url: str
    adapter_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    # Wall time of this call's loop: its first step (with any compilation) and all of it.
    first_step_seconds: float | None = None
    loop_seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# Sampling: everything random in a micro-batch, a pure function of its position.


def batch_indices(
    *, seed: int, step: int, micro: int, process: int, n: int, size: int
) -> np.ndarray:
    """The examples of one micro-batch: a pure function of its position, so resume is exact."""
    rng = np.random.default_rng([seed, step, micro, process])
    return rng.choice(n, size=size, replace=size > n)


@dataclass
class MicroBatch:
    """One micro-batch's draws, on the CPU."""

    index: torch.Tensor  # (B,) rows of the latent and text cache
    latents: torch.Tensor  # (B, C, h, w) sampled from each image's VAE posterior, scaled
    noise: torch.Tensor  # like latents
    timesteps: torch.Tensor  # (B,) int64
    drop_caption: torch.Tensor  # (B,) bool: trained on the empty prompt (keeps CFG working)


def sample_micro_batch(
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    *,
    seed: int,
    step: int,
    micro: int,
    process: int,
    size: int,
    num_train_timesteps: int,
    caption_dropout: float,
    shift: float,
    scaling: float,
) -> MicroBatch:
    """The examples, latent sample, noise, timesteps and caption dropout of one micro-batch.

    Drawn from generators seeded by (seed, step, micro, process) alone, never from a stream
    that runs through the training: a run resumed at step k draws exactly what an
    uninterrupted run draws at step k, and each process of a multi-GPU run draws its own
    examples. The order of the draws is part of that contract.
    """
    n = len(latent_mean)
    index = torch.from_numpy(
        batch_indices(seed=seed, step=step, micro=micro, process=process, n=n, size=size)
    )
    gen = torch.Generator("cpu").manual_seed(
        int(np.random.default_rng([seed, step, micro, process, 1]).integers(2**62))
    )
    mean, std = latent_mean[index], latent_std[index]
    latents = (mean + std * torch.randn(mean.shape, generator=gen) - shift) * scaling
    noise = torch.randn(latents.shape, generator=gen)
    timesteps = torch.randint(0, num_train_timesteps, (size,), generator=gen)
    drop_caption = torch.rand(size, generator=gen) < caption_dropout
    return MicroBatch(index, latents, noise, timesteps, drop_caption)


def micro_batch_sampler(
    cache: dict[str, Any], tp: TrainParams, *, noise_scheduler: Any, vae: Any
) -> Callable[..., MicroBatch]:
    """`sample_micro_batch` with all but the position (step, micro, process) fixed."""
    return partial(
        sample_micro_batch,
        cache["latent_mean"],
        cache["latent_std"],
        seed=tp.seed,
        size=tp.batch_size,
        num_train_timesteps=noise_scheduler.config.num_train_timesteps,
        caption_dropout=tp.caption_dropout,
        shift=getattr(vae.config, "shift_factor", None) or 0.0,
        scaling=vae.config.scaling_factor,
    )


# ---------------------------------------------------------------------------------------------
# The pieces of a training step.


def add_lora(pipe: Any, tp: TrainParams) -> list[Any]:
    """LoRA layers on the UNet and, when asked, the text encoders; returns the text encoders
    that train (none when the text encoder is frozen and its outputs are cached)."""
    from peft import LoraConfig

    pipe.unet.add_adapter(
        LoraConfig(
            r=tp.rank,
            lora_alpha=tp.alpha,  # type: ignore[arg-type]  # peft accepts a float scale
            lora_dropout=tp.dropout,
            init_lora_weights="gaussian",
            target_modules=list(tp.target_modules),
        )
    )
    if not tp.text_encoder_lora:
        return []
    # peft's own injection: transformers' `add_adapter` wants a newer peft than diffusers.
    from peft import inject_adapter_in_model

    encoders = [m for m in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if m]
    for te in encoders:
        config = LoraConfig(
            r=tp.text_encoder_rank,
            lora_alpha=tp.text_encoder_rank,
            init_lora_weights="gaussian",
            target_modules=list(tp.text_encoder_target_modules),
        )
        inject_adapter_in_model(config, te)
    return encoders


def make_optimizer(trainable: list[Any], tp: TrainParams, *, processes: int) -> tuple[Any, Any]:
    """AdamW and its learning-rate schedule."""
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(trainable, lr=tp.learning_rate, weight_decay=tp.weight_decay)
    lr_scheduler = get_scheduler(
        tp.lr_scheduler,
        optimizer=optimizer,
        # accelerate steps a prepared scheduler once per process per optimizer step
        num_warmup_steps=tp.lr_warmup_steps * processes,
        num_training_steps=tp.max_steps * processes,
    )
    return optimizer, lr_scheduler


def batch_conditioning(
    batch: MicroBatch,
    *,
    cache: dict[str, Any],
    pipe: Any,
    captions: list[str] | None,
    device: torch.device,
) -> Conditioning:
    """Text conditioning of a micro-batch, dropped captions as the empty prompt: encoded now
    when `captions` are given (the text encoder trains), else read from the cache."""
    if captions is not None:
        texts = [
            "" if drop else captions[i]
            for i, drop in zip(batch.index.tolist(), batch.drop_caption.tolist(), strict=True)
        ]
        return encode_captions(pipe, texts, device)
    hidden = cache["hidden"][batch.index].clone()
    hidden[batch.drop_caption] = cache["empty_hidden"][0]
    pooled = None
    if "pooled" in cache:
        pooled = cache["pooled"][batch.index].clone()
        pooled[batch.drop_caption] = cache["empty_pooled"][0]
        pooled = pooled.to(device)
    return Conditioning(hidden.to(device), pooled)


def denoising_loss(
    unet: Any,
    noise_scheduler: Any,
    batch: MicroBatch,
    cond: Conditioning,
    *,
    time_ids: torch.Tensor | None,
    snr_gamma: float | None,
) -> torch.Tensor:
    """Mean (min-SNR weighted) error of the UNet's noise or velocity prediction."""
    device = cond.hidden.device
    latents, noise = batch.latents.to(device), batch.noise.to(device)
    timesteps = batch.timesteps.to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    extra = {}
    if time_ids is not None:  # SDXL
        extra["added_cond_kwargs"] = {"text_embeds": cond.pooled, "time_ids": time_ids}
    pred = unet(noisy, timesteps, cond.hidden, **extra, return_dict=False)[0]
    per_example = F.mse_loss(pred.float(), target.float(), reduction="none")
    per_example = per_example.mean(dim=list(range(1, per_example.ndim)))
    if snr_gamma is not None:
        weights = min_snr_weights(noise_scheduler, timesteps, snr_gamma)
        per_example = per_example * weights.to(per_example.device)
    return per_example.mean()


def min_snr_weights(scheduler: Any, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al. 2023) for epsilon or v-prediction targets."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps)
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


def is_due(step: int, every: int, max_steps: int) -> bool:
    """Whether something done every `every` steps (and at the end) is due after `step`."""
    return step % every == 0 or step == max_steps


def flush_due(step: int, tp: TrainParams, *, first: int, last: int) -> bool:
    """Whether the losses kept on the device are read now: every `train.log_every` steps, at the
    first step of this call (its time, compilation included), at its last, and before a
    validation grid or checkpoint (which saves the history)."""
    return (
        step == first
        or step == last
        or is_due(step, tp.log_every, tp.max_steps)
        or is_due(step, tp.validation_every, tp.max_steps)
        or is_due(step, tp.checkpoint_every, tp.max_steps)
    )


@dataclass
class StepLog:
    """The loss of each optimizer step, kept on the device until `flush`: one host sync and one
    MLflow write per window of steps instead of per step, the same values at the same steps."""

    images_per_step: int
    steps: list[int] = field(default_factory=list)
    losses: list[torch.Tensor] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)
    since: float = field(default_factory=time.perf_counter)

    def add(self, step: int, loss: torch.Tensor, lr: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)
        self.lrs.append(lr)
        self.timestamps_ms.append(int(time.time() * 1000))

    def flush(self) -> tuple[list[dict[str, Any]], list[int], float]:
        """The window's history rows, their times, and its images per second; starts anew."""
        if not self.steps:
            return [], [], 0.0
        losses = torch.stack(self.losses).tolist()  # the window's one host sync
        speed = self.images_per_step * len(self.steps) / (time.perf_counter() - self.since)
        rows = [
            {"step": step, "loss": round(loss, 6), "lr": lr}
            for step, loss, lr in zip(self.steps, losses, self.lrs, strict=True)
        ]
        times = self.timestamps_ms
        self.steps, self.losses, self.lrs, self.timestamps_ms = [], [], [], []
        return rows, times, speed

    def restart_clock(self) -> None:
        """Exclude what follows a flush (validation grids, checkpoints) from the throughput."""
        self.since = time.perf_counter()


def compile_unet(unet: Any) -> Any:
    """`torch.compile` of the UNet (`train.compile`): compiled lazily, at its first step."""
    if not hasattr(torch, "compile"):
        raise TrainingError("train.compile: this PyTorch has no torch.compile; set it to false")
    return torch.compile(unet)


def is_compile_error(err: Exception) -> bool:
    import torch._dynamo.exc

    return isinstance(err, torch._dynamo.exc.TorchDynamoException)


def compile_failed(err: Exception) -> TrainingError:
    return TrainingError(
        f"train.compile: torch.compile of the UNet failed on this machine "
        f"(torch {torch.__version__}): {type(err).__name__}: {str(err).splitlines()[0][:300]}. "
        "Set train.compile: false in params.yaml (training is the same, only slower or faster)."
    )


# ---------------------------------------------------------------------------------------------


def train_step(
    step: int,
    *,
    unet: Any,
    forward_unet: Any,
    tp: TrainParams,
    draw: Callable[..., MicroBatch],
    accelerator: Any,
    conditioning: Callable[[MicroBatch], Conditioning],
    loss_fn: Callable[..., torch.Tensor],
    trainable: list[Any],
    optimizer: Any,
    lr_scheduler: Any,
) -> torch.Tensor:
    """One optimizer step (its micro-batches); returns its mean loss, still on the device.
    `forward_unet` is `unet` itself or its compiled form."""
    step_loss = torch.zeros((), device=accelerator.device)
    for micro in range(tp.gradient_accumulation_steps):
        batch = draw(step=step, micro=micro, process=accelerator.process_index)
        cond = conditioning(batch)
        with accelerator.accumulate(unet):
            loss = loss_fn(forward_unet, batch=batch, cond=cond)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(trainable, tp.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        step_loss += accelerator.gather(loss.detach()).mean()
    return step_loss / tp.gradient_accumulation_steps


def run(
    params: Params, *, root: Path = Path("."), stop_after: int | None = None, fresh: bool = False
) -> TrainResult:
    """Train, checkpoint, log and save; `stop_after` ends early (as an interruption would)."""
    import mlflow
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler

    tp = params.train
    started = time.perf_counter()
    inputs = load_inputs(root)
    accelerator = Accelerator(
        mixed_precision=tp.mixed_precision,
        gradient_accumulation_steps=tp.gradient_accumulation_steps,
    )
    device = accelerator.device
    set_seed(tp.seed)
    pipe = load_frozen_pipeline(inputs, device)
    kind = pipeline_kind(pipe)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    time_ids = sdxl_time_ids(inputs.resolution, tp.batch_size, device) if kind == "sdxl" else None

    # 1. Cache: VAE latents and text embeddings once per (dataset version, base model).
    cache = load_cache(
        pipe, inputs, accelerator=accelerator, cache_dir=root / get_settings().cache_dir
    )
    draw = micro_batch_sampler(cache, tp, noise_scheduler=noise_scheduler, vae=pipe.vae)

    # 2. LoRA on the UNet (and optionally the text encoders, whose outputs then change: they
    # are encoded per batch instead of read from the cache).
    text_encoders = add_lora(pipe, tp)
    live_captions = inputs.captions if text_encoders else None
    trainable = [p for m in [pipe.unet, *text_encoders] for p in m.parameters() if p.requires_grad]
    optimizer, lr_scheduler = make_optimizer(trainable, tp, processes=accelerator.num_processes)
    unet, optimizer, lr_scheduler = accelerator.prepare(pipe.unet, optimizer, lr_scheduler)
    # Only the training forward is compiled: checkpoints and the adapter are saved from `unet`,
    # and validation grids sample with `pipe.unet`, both uncompiled.
    forward_unet = compile_unet(unet) if tp.compile else unet

    # 3. Resume from the latest checkpoint of this exact configuration.
    run_dir = root / CHECKPOINT_DIR / checkpoint_key(tp, inputs.dataset_hash, inputs.ref.identity)
    step, history, run_id = resume(
        run_dir,
        fresh=fresh,
        unet=accelerator.unwrap_model(unet),
        text_encoders=text_encoders,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
    )
    resumed_from = last_save = step

    # 4. MLflow: one run per training, continued after a resume.
    n_examples = len(cache["latent_mean"])
    with tracked_run(
        params, inputs, run_id=run_id, kind=kind, n_examples=n_examples, resumed_from=step
    ) as (active, sigterm):
        prompts = validation_prompts(inputs, tp)
        main_process = accelerator.is_main_process
        if step == 0 and main_process:
            log_validation(pipe, prompts, tp, resolution=inputs.resolution, step=0)

        # 5. The loop.
        unet.train()
        progress = tqdm(
            total=tp.max_steps,
            initial=step,
            desc="training LoRA",
            unit="step",
            disable=not accelerator.is_local_main_process,
        )
        last_step = tp.max_steps if stop_after is None else min(stop_after, tp.max_steps)
        images_per_step = tp.batch_size * tp.gradient_accumulation_steps * accelerator.num_processes
        steps_log = StepLog(images_per_step)
        conditioning = partial(
            batch_conditioning, cache=cache, pipe=pipe, captions=live_captions, device=device
        )
        loss_fn = partial(
            denoising_loss,
            noise_scheduler=noise_scheduler,
            time_ids=time_ids,
            snr_gamma=tp.snr_gamma,
        )
        first_step, first_step_seconds = step + 1, None
        loop_started = time.perf_counter()
        while step < last_step:
            with sigterm.deferred():  # a SIGTERM ends the step first
                try:
                    step_loss = train_step(
                        step,
                        unet=unet,
                        forward_unet=forward_unet,
                        tp=tp,
                        draw=draw,
                        accelerator=accelerator,
                        conditioning=conditioning,
                        loss_fn=loss_fn,
                        trainable=trainable,
                        optimizer=optimizer,
                        lr_scheduler=lr_scheduler,
                    )
                except Exception as err:
                    if tp.compile and step + 1 == first_step and is_compile_error(err):
                        raise compile_failed(err) from err
                    raise
                step += 1
                steps_log.add(step, step_loss, lr_scheduler.get_last_lr()[0])
                progress.update(1)
                if not flush_due(step, tp, first=first_step, last=last_step):
                    continue
                rows, times, speed = steps_log.flush()
                if first_step_seconds is None:
                    first_step_seconds = time.perf_counter() - loop_started
                history.extend(rows)
                progress.set_postfix(loss=f"{rows[-1]['loss']:.4f}")
                if main_process:
                    log_steps(active.info.run_id, rows, times, images_per_second=speed)
                if main_process and is_due(step, tp.validation_every, tp.max_steps):
                    log_validation(pipe, prompts, tp, resolution=inputs.resolution, step=step)
                if main_process and is_due(step, tp.checkpoint_every, tp.max_steps):
                    save_checkpoint(
                        run_dir,
                        step=step,
                        lora_state=lora_state(accelerator.unwrap_model(unet), text_encoders),
                        optimizer=optimizer,
                        lr_scheduler=lr_scheduler,
                        keep=tp.keep_checkpoints,
                        state={"mlflow_run_id": active.info.run_id, "history": history},
                    )
                    last_save = step
                steps_log.restart_clock()
        loop_seconds = time.perf_counter() - loop_started
        progress.close()
        if step < tp.max_steps:  # stopped as asked, as an interruption would
            log.info("stopped at step %d as asked (last checkpoint: step %d)", step, last_save)
            mlflow.end_run(status="KILLED")
            return TrainResult(
                False,
                step,
                active.info.run_id,
                run_url(active),
                first_step_seconds=first_step_seconds,
                loop_seconds=loop_seconds,
            )
        accelerator.wait_for_everyone()
        if not main_process:
            return TrainResult(completed=True, step=step, run_id=active.info.run_id, run_url="")

        # 6. Deliver: the adapter, its evidence and metrics, logged to MLflow.
        adapter_dir, metrics = deliver(
            inputs,
            tp,
            pipe=pipe,
            unet=accelerator.unwrap_model(unet),
            text_encoders=text_encoders,
            history=history,
            resumed_from=resumed_from,
            train_seconds=time.perf_counter() - started,
            run_id=active.info.run_id,
        )
        (run_dir / "COMPLETED").touch()
        return TrainResult(
            True,
            step,
            active.info.run_id,
            run_url(active),
            adapter_dir,
            metrics,
            first_step_seconds=first_step_seconds,
            loop_seconds=loop_seconds,
        )
