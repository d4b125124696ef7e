"""GPU benchmark of training and serving on a random SD 1.5-architecture base at 512 px.

No weights are downloaded: the UNet, VAE and CLIP text encoder are built from SD 1.5's
configurations (written below) with random weights, the tokenizer is the project's local CLIP
BPE vocabulary padded to 77 tokens, and the LoRA adapter is the one `training/train_lora.py`
attaches (`add_lora`, the default `train:` settings). Random weights make the images noise, but
every figure here is a speed, and speed does not depend on the weights' values.

Prints, on one device:
- LoRA training steps/s and model FLOP utilisation (FLOPs of one UNet forward + backward counted
  by `torch.utils.flop_counter.FlopCounterMode`, against `--peak-tflops`);
- serving latency p50 of one image at 4 and at 20 steps, and images/s at batch 8;
- the effect of `channels_last`, of `torch.compile` (warm-up seconds and steady gain) and of
  switching between two resident adapters with and without diffusers' LoRA hot-swapping.

Every section is bounded by `--section-budget-s` (a loop stops early when it is spent):

    python bench/gpu.py                       # CUDA, 512 px, bf16; about 5-8 minutes on an H200
    python bench/gpu.py --json gpu.json       # the figures as JSON too
    python bench/gpu.py --tiny --device cpu --skip-compile   # tiny model at 64 px, for the test
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

H200_BF16_DENSE_TFLOPS = 989.0
MAX_TOKENS = 77
SD15_VOCAB = 49408
PROMPT = "acme summer sale banner, bold teal and orange"

# Stable Diffusion 1.5's component configurations (runwayml/stable-diffusion-v1-5).
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "center_input_sample": False,
}
SD15_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SD15_TEXT: dict[str, Any] = {
    "vocab_size": SD15_VOCAB,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": MAX_TOKENS,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
SD15_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

# The same layout, small enough for a CPU test (64 px images, 8x8 latents).
TINY_UNET: dict[str, Any] = {
    **SD15_UNET,
    "sample_size": 8,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "cross_attention_dim": 32,
}
TINY_VAE: dict[str, Any] = {
    **SD15_VAE,
    "block_out_channels": (8, 8, 8, 8),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
}
TINY_TEXT: dict[str, Any] = {
    **SD15_TEXT,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 32,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Building the random base and the adapters.


def build_tokenizer() -> Any:
    """The project's local CLIP BPE tokenizer (as the embedded base builds it), 77 tokens."""
    from transformers import CLIPTokenizer

    from training.corpus import CORPUS_WORDS
    from training.tokenizer import write_clip_tokenizer

    tmp = Path(tempfile.mkdtemp(prefix="brandforge-bench-tokenizer-"))
    try:
        write_clip_tokenizer(tmp, words=CORPUS_WORDS, model_max_length=MAX_TOKENS)
        return CLIPTokenizer.from_pretrained(tmp, local_files_only=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_pipeline(*, tiny: bool, size: int, device: str, dtype: torch.dtype) -> Any:
    """A `StableDiffusionPipeline` of random SD 1.5-architecture parts with SDPA attention."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from diffusers.models.attention_processor import AttnProcessor2_0
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tokenizer()
    if len(tokenizer) > SD15_VOCAB:
        raise SystemExit(f"tokenizer has {len(tokenizer)} tokens, more than SD 1.5's {SD15_VOCAB}")
    torch.manual_seed(0)
    text_cfg = TINY_TEXT if tiny else SD15_TEXT
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            **text_cfg,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(**{**(TINY_UNET if tiny else SD15_UNET), "sample_size": size // 8})
    unet.set_attn_processor(AttnProcessor2_0())  # scaled_dot_product_attention
    vae = AutoencoderKL(**{**(TINY_VAE if tiny else SD15_VAE), "sample_size": size})
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def train_params() -> Any:
    """The repository's default LoRA settings (`train:` in params.yaml)."""
    from brandforge.params import TrainParams

    return TrainParams()


def adapter_states(unet: Any, *, count: int) -> list[dict[str, torch.Tensor]]:
    """`count` distinct adapters of the repository's LoRA config, in `load_lora_weights`'s
    layout (`unet.` + PEFT keys, as `training/outputs.py:save_adapter` writes them)."""
    from peft.utils import get_peft_model_state_dict

    base = get_peft_model_state_dict(unet)
    states = []
    for i in range(count):
        gen = torch.Generator().manual_seed(100 + i)
        state = {}
        for key, value in base.items():
            noise = torch.randn(value.shape, generator=gen) * 0.01
            state[f"unet.{key}"] = noise.to(device=value.device, dtype=value.dtype)
        states.append(state)
    return states


# ---------------------------------------------------------------------------------------------
# Timing.


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    tic = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - tic


def repeat(fn: Callable[[], Any], device: str, *, n: int, budget_s: float) -> list[float]:
    """Times of up to `n` calls of `fn` (at least one), stopping when `budget_s` is spent."""
    times: list[float] = []
    start = time.monotonic()
    while len(times) < n and (not times or time.monotonic() - start < budget_s):
        times.append(timed(fn, device))
    return times


def p50(times: list[float]) -> float:
    return float(statistics.median(times))


def autocast(device: str, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Sections.


def bench_training(args: argparse.Namespace, dtype: torch.dtype) -> dict[str, Any]:
    """LoRA training of the UNet as `train_lora` does it: frozen base in the compute dtype,
    LoRA weights in fp32 under autocast, cached text embeddings and latents, AdamW."""
    from torch.utils.flop_counter import FlopCounterMode

    from training.train_lora import add_lora

    log("training: building the base")
    pipe = build_pipeline(tiny=args.tiny, size=args.size, device=args.device, dtype=dtype)
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    add_lora(pipe, train_params())
    unet = pipe.unet
    trainable = [p for p in unet.parameters() if p.requires_grad]
    for p in trainable:
        p.data = p.data.float()
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    sched = pipe.scheduler
    batch, latent = args.train_batch, args.size // 8
    with torch.no_grad():
        ids = pipe.tokenizer(
            [PROMPT] * batch, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt"
        ).input_ids.to(args.device)
        hidden = pipe.text_encoder(ids).last_hidden_state
    latents = torch.randn(batch, 4, latent, latent, device=args.device, dtype=dtype)
    unet.train()

    def step() -> None:
        noise = torch.randn_like(latents)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), device=args.device)
        noisy = sched.add_noise(latents, noise, t)
        with autocast(args.device, dtype):
            pred = unet(noisy, t, hidden).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()

    log("training: warm-up and FLOP count")
    for _ in range(2):
        step()
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = float(counter.get_total_flops())
    log(f"training: timing up to {args.steps_train} steps")
    times = repeat(step, args.device, n=args.steps_train, budget_s=args.section_budget_s)
    steps_per_s = len(times) / sum(times)
    mfu = flops * steps_per_s / (args.peak_tflops * 1e12)
    return {
        "train_batch": batch,
        "train_steps_timed": len(times),
        "train_steps_per_s": steps_per_s,
        "train_images_per_s": steps_per_s * batch,
        "train_tflop_per_step": flops / 1e12,
        "train_mfu": mfu,
    }


def training_fitting_memory(args: argparse.Namespace, dtype: torch.dtype) -> dict[str, Any]:
    """`bench_training` at `--train-batch`, halving the batch while the device runs out of
    memory (the figures name the batch that ran)."""
    while True:
        try:
            return bench_training(args, dtype)
        except torch.cuda.OutOfMemoryError:
            if args.train_batch == 1:
                raise
        free_memory(args.device)  # out of the handler: the traceback no longer holds tensors
        args.train_batch //= 2
        log(f"training: out of memory, trying batch {args.train_batch}")


def serving_pipeline(
    args: argparse.Namespace, dtype: torch.dtype, *, hotswap: bool
) -> tuple[Any, list[dict[str, torch.Tensor]]]:
    """The base with adapter "a" loaded by `load_lora_weights`, as serving loads it, and the
    tensors of two adapters kept resident on the device."""
    from training.train_lora import add_lora

    pipe = build_pipeline(tiny=args.tiny, size=args.size, device=args.device, dtype=dtype)
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    tp = train_params()
    # The adapters' tensors come from the repository's LoRA config on a throwaway attachment.
    add_lora(pipe, tp)
    states = adapter_states(pipe.unet, count=2)
    pipe.unet.delete_adapters("default")
    if hotswap:
        pipe.enable_lora_hotswap(target_rank=tp.rank)
    pipe.load_lora_weights(dict(states[0]), adapter_name="a")
    pipe.unet.eval()
    return pipe, states


def generate(pipe: Any, args: argparse.Namespace, *, steps: int, batch: int = 1) -> Any:
    with torch.inference_mode():
        return pipe(
            [PROMPT] * batch,
            height=args.size,
            width=args.size,
            num_inference_steps=steps,
            guidance_scale=7.5,
            output_type="np",
        ).images


def bench_serving(args: argparse.Namespace, dtype: torch.dtype) -> dict[str, Any]:
    log("serving: building the base with one adapter")
    pipe, _ = serving_pipeline(args, dtype, hotswap=False)
    out: dict[str, Any] = {}
    budget, reps = args.section_budget_s, args.repeats
    for steps in (4, 20):
        generate(pipe, args, steps=steps)  # warm-up
        times = repeat(
            lambda s=steps: generate(pipe, args, steps=s), args.device, n=reps, budget_s=budget / 3
        )
        out[f"latency_p50_{steps}_steps_s"] = p50(times)
        log(f"serving: {steps} steps p50 {p50(times):.3f} s over {len(times)} images")
    generate(pipe, args, steps=20, batch=8)
    times = repeat(
        lambda: generate(pipe, args, steps=20, batch=8),
        args.device,
        n=max(2, reps // 3),
        budget_s=budget / 3,
    )
    out["throughput_batch8_images_per_s"] = 8 / p50(times)
    log(f"serving: batch 8 {8 / p50(times):.2f} images/s")

    # channels_last, side by side with the default layout in the same run.
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    generate(pipe, args, steps=20)
    times = repeat(lambda: generate(pipe, args, steps=20), args.device, n=reps, budget_s=budget / 3)
    out["channels_last_latency_p50_20_steps_s"] = p50(times)
    out["channels_last_speedup"] = out["latency_p50_20_steps_s"] / p50(times)
    log(f"serving: channels_last 20 steps p50 {p50(times):.3f} s")
    return out


def bench_compile_and_swap(args: argparse.Namespace, dtype: torch.dtype) -> dict[str, Any]:
    """Compiled (unless --skip-compile) UNet; then switching between two resident adapters by
    hot-swapping their weights in place, and by `set_adapters` between two named adapters."""
    log("compile/swap: building the base with one adapter, hot-swapping enabled")
    pipe, states = serving_pipeline(args, dtype, hotswap=True)
    budget, reps, steps = args.section_budget_s, args.repeats, 4
    out: dict[str, Any] = {"swap_steps": steps}
    pipe.unet.to(memory_format=torch.channels_last)
    eager = repeat(
        lambda: generate(pipe, args, steps=steps), args.device, n=reps, budget_s=budget / 6
    )
    if not args.skip_compile:
        pipe.unet = torch.compile(pipe.unet, fullgraph=False)
        log("compile: first call (compilation)")
        first = timed(lambda: generate(pipe, args, steps=steps), args.device)
        compiled = repeat(
            lambda: generate(pipe, args, steps=steps), args.device, n=reps, budget_s=budget / 6
        )
        out["compile_warmup_s"] = first - p50(compiled)
        out["compile_latency_p50_4_steps_s"] = p50(compiled)
        out["compile_speedup"] = p50(eager) / p50(compiled)
        log(f"compile: warm-up {out['compile_warmup_s']:.1f} s, gain x{out['compile_speedup']:.2f}")
    steady = p50(
        repeat(lambda: generate(pipe, args, steps=steps), args.device, n=reps, budget_s=budget / 6)
    )
    out["swap_steady_latency_s"] = steady

    def switch_hot(i: int) -> None:
        pipe.load_lora_weights(dict(states[i % 2]), adapter_name="a", hotswap=True)

    out.update(_switches("hotswap", switch_hot, pipe, args, steps, budget / 4))
    # A second named adapter: with a compiled UNet the first image after this (the first
    # switch's) pays for the recompilation, and is reported apart.
    pipe.load_lora_weights(dict(states[1]), adapter_name="b")
    names = ("a", "b")

    def switch_named(i: int) -> None:
        # The UNet's own `set_adapters`: the pipeline's does not see through a compiled UNet.
        pipe.unet.set_adapters([names[i % 2]])

    out.update(_switches("set_adapters", switch_named, pipe, args, steps, budget / 4))
    return out


def _switches(
    label: str,
    switch: Callable[[int], None],
    pipe: Any,
    args: argparse.Namespace,
    steps: int,
    budget_s: float,
) -> dict[str, float]:
    """Median seconds of one switch and of the first image after it (recompilation shows
    there); the first switch of all is reported apart, it may pay for a compilation."""
    switch_s, image_s = [], []
    start = time.monotonic()
    i = 1
    while i <= args.repeats and (i <= 2 or time.monotonic() - start < budget_s):
        switch_s.append(timed(lambda n=i: switch(n), args.device))
        image_s.append(timed(lambda: generate(pipe, args, steps=steps), args.device))
        i += 1
    log(f"{label}: switch {p50(switch_s) * 1e3:.1f} ms, next image {p50(image_s[1:]):.3f} s")
    return {
        f"{label}_switch_s": p50(switch_s),
        f"{label}_first_switch_image_s": image_s[0],
        f"{label}_image_after_switch_s": p50(image_s[1:]),
    }


def free_memory(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# Report.


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


ROWS: tuple[tuple[str, str, str], ...] = (
    ("train_steps_per_s", "LoRA training steps/s (batch {train_batch})", "{:.2f}"),
    ("train_images_per_s", "LoRA training images/s", "{:.1f}"),
    ("train_tflop_per_step", "UNet fwd+bwd TFLOP per step (FlopCounterMode)", "{:.4g}"),
    ("train_mfu", "model FLOP utilisation", "{:.1%}"),
    ("latency_p50_4_steps_s", "latency p50, 1 image, 4 steps (s)", "{:.3f}"),
    ("latency_p50_20_steps_s", "latency p50, 1 image, 20 steps (s)", "{:.3f}"),
    ("throughput_batch8_images_per_s", "throughput, batch 8, 20 steps (images/s)", "{:.2f}"),
    ("channels_last_latency_p50_20_steps_s", "channels_last: p50, 20 steps (s)", "{:.3f}"),
    ("channels_last_speedup", "channels_last: gain (x)", "{:.2f}"),
    ("compile_warmup_s", "torch.compile: warm-up (s)", "{:.1f}"),
    ("compile_latency_p50_4_steps_s", "torch.compile: p50, 4 steps (s)", "{:.3f}"),
    ("compile_speedup", "torch.compile: steady gain (x)", "{:.2f}"),
    ("swap_steady_latency_s", "adapter swap: image without a switch, 4 steps (s)", "{:.3f}"),
    ("hotswap_switch_s", "hotswap: one switch (s)", "{:.4f}"),
    ("hotswap_first_switch_image_s", "hotswap: first image after the first switch (s)", "{:.3f}"),
    ("hotswap_image_after_switch_s", "hotswap: image after a switch, p50 (s)", "{:.3f}"),
    ("set_adapters_switch_s", "set_adapters: one switch (s)", "{:.4f}"),
    (
        "set_adapters_first_switch_image_s",
        "set_adapters: first image after 1st switch (s)",
        "{:.3f}",
    ),
    ("set_adapters_image_after_switch_s", "set_adapters: image after a switch, p50 (s)", "{:.3f}"),
)


def table(figures: dict[str, Any]) -> str:
    meta = figures["meta"]
    lines = [
        f"BrandForge GPU benchmark, {meta['date']}",
        f"device {meta['device_name']} ({meta['device']}), dtype {meta['dtype']}, "
        f"{meta['size']} px, {'tiny' if meta['tiny'] else 'SD 1.5'} architecture, random weights",
        f"torch {meta['torch']}, diffusers {meta['diffusers']}, peft {meta['peft']}; "
        f"peak {meta['peak_tflops']:g} TFLOP/s for MFU; compile "
        f"{'skipped' if meta['skip_compile'] else 'on'}",
        "",
    ]
    width = max(len(label) for _, label, _ in ROWS) + 2
    for key, label, fmt in ROWS:
        value = figures.get(key)
        if value is None:
            shown = "skipped"
        elif key == "train_mfu":
            shown = f"{100 * value:.3g}%"  # tiny CPU runs are far below 0.1%
        else:
            shown = fmt.format(value)
        lines.append(f"{label.format(**figures):<{width}}{shown:>10}")
    lines.append(f"\ntotal {meta['seconds']:.0f} s")
    return "\n".join(lines)


FULL_DEFAULTS = {
    "size": 512,
    "steps_train": 30,
    "train_batch": 16,
    "repeats": 10,
    "section_budget_s": 60.0,
}
TINY_DEFAULTS = {
    "size": 64,
    "steps_train": 4,
    "train_batch": 2,
    "repeats": 2,
    "section_budget_s": 4.0,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, help="image width and height (default 512; --tiny: 64)")
    ap.add_argument("--tiny", action="store_true", help="tiny architecture at 64 px (CPU test)")
    ap.add_argument("--steps-train", type=int, help="timed LoRA training steps (30; tiny 4)")
    ap.add_argument("--train-batch", type=int, help="LoRA training batch (16, as train:; tiny 2)")
    ap.add_argument("--repeats", type=int, help="timed images per latency figure (10; tiny 2)")
    ap.add_argument(
        "--section-budget-s",
        type=float,
        help="seconds a section's timing loops may take (60; tiny 4)",
    )
    ap.add_argument(
        "--peak-tflops",
        type=float,
        default=H200_BF16_DENSE_TFLOPS,
        help="device peak for MFU (default: H200 bf16 dense)",
    )
    ap.add_argument(
        "--dtype", choices=["bf16", "fp16", "fp32"], help="default bf16 on CUDA, fp32 on CPU"
    )
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    defaults = TINY_DEFAULTS if args.tiny else FULL_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.size % 8 or not 64 <= args.size <= 1024:
        ap.error("--size must be a multiple of 8 in 64..1024")
    if args.steps_train < 1 or args.repeats < 2 or args.train_batch < 1:
        ap.error("--steps-train and --train-batch must be >= 1, --repeats >= 2")
    if args.peak_tflops <= 0 or not math.isfinite(args.peak_tflops):
        ap.error("--peak-tflops must be a positive number")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    return args


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
    tic = time.monotonic()
    log(f"== {name}")
    yield
    log(f"== {name}: {time.monotonic() - tic:.0f} s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import diffusers
    import peft
    import transformers

    args = parse_args(argv)
    # Random weights and adapters without text-encoder layers make both libraries chatty.
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if args.tiny and args.device == "cpu":
        # The test machine's cores are shared; a second thread waiting on a busy core makes
        # small ops many times slower (see training/base_model.py:_ThreadTuner).
        torch.set_num_threads(1)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    start = time.monotonic()
    figures: dict[str, Any] = {}
    with section("LoRA training"):
        figures.update(training_fitting_memory(args, dtype))
    free_memory(args.device)
    with section("serving"):
        figures.update(bench_serving(args, dtype))
    free_memory(args.device)
    with section("compile and adapter switching"):
        figures.update(bench_compile_and_swap(args, dtype))
    figures["meta"] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": args.device,
        "device_name": device_name(args.device),
        "dtype": args.dtype,
        "size": args.size,
        "tiny": args.tiny,
        "skip_compile": args.skip_compile,
        "peak_tflops": args.peak_tflops,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "peft": peft.__version__,
        "seconds": time.monotonic() - start,
    }
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
