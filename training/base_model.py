"""The `base` stage: build and pretrain the embedded base model, or check an external one.

With `base.model: embedded`, read top to bottom: generated corpus → CLIP BPE tokenizer →
VAE (reconstruction) → latents of the corpus → text encoder and UNet trained jointly (noise
prediction, caption dropout for classifier-free guidance) → save a standard
`StableDiffusionPipeline` folder → colour-following check → base reference and metrics.
Everything runs within `base.pretrain.time_budget_s` on a CPU: each phase stops early when its
share of the budget is spent, and the UNet's learning-rate schedule is planned from the measured
step time so that it still decays to zero when the budget, not the step count, ends training.

With a local folder or a Hugging Face id it only checks that the pipeline loads offline and
records its identity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from brandforge.params import Params, PretrainParams
from brandforge.pipeline import (
    BASE_DIR,
    BaseModelError,
    BaseReference,
    load_pipeline,
    pipeline_kind,
    write_base_reference,
)
from training.corpus import (
    COLOUR_NAMES,
    CORPUS_WORDS,
    NAMED_COLOURS,
    generate_corpus,
    nearest_colour_names,
)
from training.tokenizer import write_clip_tokenizer

log = logging.getLogger(__name__)

METRICS_FILE = Path("metrics/base.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")

# Architecture of the embedded model (latents are resolution / 4).
VAE_CHANNELS = (16, 32, 64)
UNET_CHANNELS = (64, 128)
TEXT_WIDTH = 64
TEXT_LAYERS = 2
MAX_TOKENS = 77  # SD 1.5's length, so brand captions and stock tools behave the same
CAPTION_DROPOUT = 0.1  # empty prompts teach the unconditional branch used by CFG
MIN_SNR_GAMMA = 5.0
VAE_BUDGET_SHARE = 0.35  # the VAE may use at most this share of the time budget
RESERVE_S = 20.0  # kept back from the budget for saving and the colour check
MAX_THREADS = max(1, min(2, os.cpu_count() or 1))  # the target machine has 2 cores

# Pairs (foreground, background) of the colour-following check: brand-like and generic.
CHECK_PAIRS: tuple[tuple[str, str], ...] = (
    ("white", "teal"),
    ("orange", "white"),
    ("red", "blue"),
    ("yellow", "navy"),
    ("teal", "orange"),
    ("green", "pink"),
    ("black", "beige"),
    ("purple", "grey"),
)
CHECK_SEEDS: tuple[int, ...] = (0, 1, 2, 3)
# The stage itself checks fewer seeds and colours than bench/base_colour_following.py, to stay
# within its time budget.
STAGE_FIDELITY_COLOURS = ("white", "black", "teal", "orange", "red", "navy")


def run(params: Params, *, root: Path) -> BaseReference:
    """Run the base stage into `root/models/base` and write `root/metrics/base.json`."""
    start = time.monotonic()
    base_dir = root / BASE_DIR
    model = params.base.model
    if model == "embedded":
        ref, metrics = _build_embedded(params, base_dir=base_dir, start=start)
    else:
        ref = _check_external(model, resolution=params.base.resolution)
        write_base_reference(base_dir, ref)
        metrics = {}
    metrics = {
        "source": ref.source,
        "identity": ref.identity,
        "kind": ref.kind,
        "resolution": ref.resolution,
        "seconds": round(time.monotonic() - start, 1),
        **metrics,
    }
    metrics_path = root / METRICS_FILE
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    log.info(
        "base model %s (%s, %s) ready in %.0f s",
        ref.model,
        ref.source,
        ref.kind,
        metrics["seconds"],
    )
    return ref


# ---------------------------------------------------------------------------------------------
# External base model: check it loads, record its identity.


def _check_external(model: str, *, resolution: int) -> BaseReference:
    path = Path(model).expanduser()
    looks_local = path.is_absolute() or model.startswith((".", "~")) or path.exists()
    if looks_local:
        if not (path / "model_index.json").is_file():
            raise BaseModelError(
                f"base.model: {str(path)!r} is not a diffusers pipeline folder (no "
                "model_index.json there). Point base.model at a folder saved with "
                "`save_pretrained`, a Hugging Face id in the local cache, or `embedded`."
            )
        pipe = load_pipeline(path)
        location, source, identity = str(path.resolve()), "local", weights_sha256(path)
    else:
        pipe = load_pipeline(model)
        location, source = model, "huggingface"
        identity = f"{model}@{_hf_cached_revision(model)}"
    kind = pipeline_kind(pipe)
    log.info("external base %s loads offline: %s pipeline, identity %s", location, kind, identity)
    return BaseReference(
        model=location, kind=kind, identity=identity, source=source, resolution=resolution
    )


def _hf_cached_revision(repo_id: str) -> str:
    """The commit of the cached snapshot of `repo_id`, or "unknown"."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "model_index.json")
    except Exception:  # noqa: BLE001 - identity is best effort; loading already succeeded
        return "unknown"
    return Path(found).parent.name if isinstance(found, str) else "unknown"


def weights_sha256(folder: Path) -> str:
    """SHA-256 over the weight files of a pipeline folder (relative names and contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise BaseModelError(f"{folder}: no weight files (*.safetensors, *.bin) to identify")
    for file in files:
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Embedded base model.


def _build_embedded(
    params: Params, *, base_dir: Path, start: float
) -> tuple[BaseReference, dict[str, Any]]:
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    pp = params.base.pretrain
    resolution = params.base.resolution
    if resolution % 4:
        raise BaseModelError(
            f"base.resolution: the embedded model needs a multiple of 4, got {resolution}"
        )
    torch.set_num_threads(MAX_THREADS)
    torch.manual_seed(params.base.seed)
    deadline = start + pp.time_budget_s

    # 1. Corpus and tokenizer.
    with tqdm(total=1, desc="base: corpus", leave=False) as bar:
        images, captions = generate_corpus(
            pp.corpus_size, resolution=resolution, seed=params.base.seed
        )
        bar.update()
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    tmp = Path(tempfile.mkdtemp(prefix="brandforge-tokenizer-"))
    try:
        write_clip_tokenizer(tmp, words=CORPUS_WORDS, model_max_length=MAX_TOKENS)
        tokenizer = CLIPTokenizer.from_pretrained(tmp, local_files_only=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "corpus: %d images at %d px, vocab %d tokens", len(captions), resolution, len(tokenizer)
    )

    # 2. VAE: starts as an exact colour-preserving autoencoder (see `_colour_preserving_init`);
    # optional fine-tuning on the corpus (`pretrain.vae_steps`, 0 by default).
    vae = _new_vae(resolution)
    _colour_preserving_init(vae)
    vae_steps, vae_loss = 0, None
    if pp.vae_steps > 0:
        vae_deadline = min(deadline - RESERVE_S, start + VAE_BUDGET_SHARE * pp.time_budget_s)
        vae_steps, vae_loss = _train_vae(
            vae, pixels, pp=pp, seed=params.base.seed, deadline=vae_deadline
        )

    # 3. Latents of the whole corpus, once; the scaling factor makes them unit variance.
    vae.eval()
    with torch.no_grad():
        dists = [vae.encode(chunk).latent_dist for chunk in pixels.split(256)]
    latent_mean = torch.cat([d.mean for d in dists])
    latent_std = torch.cat([d.std for d in dists])
    scaling = float(1.0 / latent_mean.std())
    vae.register_to_config(scaling_factor=scaling)

    # 4. Text encoder and UNet, jointly.
    text_encoder = _new_text_encoder(tokenizer)
    unet = _new_unet(resolution)
    scheduler = _new_scheduler()
    input_ids = tokenizer(
        captions,
        padding="max_length",
        max_length=MAX_TOKENS,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    empty_ids = tokenizer(
        [""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt"
    ).input_ids
    unet_steps, unet_loss = _train_unet(
        unet,
        text_encoder,
        scheduler,
        latent_mean=latent_mean * scaling,
        latent_std=latent_std * scaling,
        input_ids=input_ids,
        empty_ids=empty_ids,
        pp=pp,
        seed=params.base.seed,
        deadline=deadline - RESERVE_S,
    )

    # 5. Save as a standard SD 1.x pipeline folder.
    unet.eval()
    text_encoder.eval()
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    if base_dir.exists():
        shutil.rmtree(base_dir)
    pipe.save_pretrained(base_dir, safe_serialization=True)
    tok_dir = base_dir / "tokenizer"
    missing = [f for f in ("vocab.json", "merges.txt") if not (tok_dir / f).is_file()]
    if missing:  # the fast tokenizer may only save tokenizer.json; stock tools want both
        write_clip_tokenizer(tok_dir, words=CORPUS_WORDS, model_max_length=MAX_TOKENS)

    # 6. Does it follow colour words?
    following = colour_following(
        pipe, resolution=resolution, seeds=CHECK_SEEDS[:2], steps=pp.check_steps
    )
    fidelity = colour_fidelity(
        pipe,
        resolution=resolution,
        colours=STAGE_FIDELITY_COLOURS,
        seeds=CHECK_SEEDS[:2],
        steps=pp.check_steps,
    )
    log.info(
        "colour following %.2f; white renders as %s",
        following["share"],
        fidelity["white"]["mean_rgb"],
    )

    identity = weights_sha256(base_dir)
    ref = BaseReference(
        model=".", kind="sd", identity=identity, source="embedded", resolution=resolution
    )
    write_base_reference(base_dir, ref)
    metrics = {
        "vae_steps": vae_steps,
        "unet_steps": unet_steps,
        "vae_final_loss": None if vae_loss is None else round(vae_loss, 5),
        "unet_final_loss": round(unet_loss, 5),
        "colour_following": round(following["share"], 4),
        "colour_following_pairs": following["pairs"],
        "colour_fidelity": fidelity,
    }
    return ref, metrics


@torch.no_grad()
def _colour_preserving_init(vae: Any, *, k: float = 50.0, shift: float = 10.0) -> None:
    """Set the VAE weights so it is exactly 4x4 average pooling of RGB and nearest upsampling.

    Trained from scratch within the CPU budget, the VAE was the ceiling of the whole product: it
    reconstructed the demo brand's images with 0.20 palette adherence (teal decoded as sky blue),
    so no adapter could render the palette. GroupNorm is what makes flat colours hard: it
    normalises absolute colour away. Here every feature map carries [r, g, b, -r, -g, -b, K, -K]:
    zero mean per pixel and a variance dominated by the constant K, so each GroupNorm (one group)
    becomes a fixed scale that its affine weight undoes, and a shift keeps SiLU in its linear
    range. Residual branches start at zero (conv2 = 0), so the blocks are identities that
    fine-tuning can still grow. Latents are the image's colours at 1/4 resolution (8x8 at 32 px):
    flat regions reconstruct exactly (0.73 palette adherence on the demo brand, edges are what
    remains), and the diffusion model learns in a space where a colour word is a colour.
    """
    enc, dec = vae.encoder, vae.decoder

    def centre(conv: Any, taps: list[tuple[int, int, float]], bias: dict[int, float]) -> None:
        conv.weight.zero_()
        mid = conv.kernel_size[0] // 2
        for out_ch, in_ch, weight in taps:
            conv.weight[out_ch, in_ch, mid, mid] = weight
        if conv.bias is not None:
            conv.bias.zero_()
            for ch, value in bias.items():
                conv.bias[ch] = value

    def identity_resnets(module: Any) -> None:
        for block in module.modules():
            if block.__class__.__name__ == "ResnetBlock2D":
                block.conv2.weight.zero_()
                block.conv2.bias.zero_()
                if block.conv_shortcut is not None:
                    sc = block.conv_shortcut
                    sc.weight.zero_()
                    sc.bias.zero_()
                    for ch in range(min(sc.in_channels, sc.out_channels)):
                        sc.weight[ch, ch, 0, 0] = 1.0

    def undo_norm(norm: Any) -> None:
        norm.weight.fill_((2 * k * k / norm.num_channels) ** 0.5)
        norm.bias.fill_(shift)

    rgb_pm = [(c, c, 1.0) for c in range(3)] + [(3 + c, c, -1.0) for c in range(3)]
    rgb_out = [(c, c, 1.0) for c in range(3)]
    unshift = {c: -shift for c in range(3)}
    latent = vae.config.latent_channels

    centre(enc.conv_in, rgb_pm, {6: k, 7: -k})
    identity_resnets(enc)
    for block in enc.down_blocks:
        for down in block.downsamplers or []:
            # stride-2 3x3 conv, padded right/bottom: taps (0..1, 0..1) are the 2x2 block
            down.conv.weight.zero_()
            down.conv.bias.zero_()
            for ch in range(down.conv.out_channels):
                down.conv.weight[ch, ch, :2, :2] = 0.25
    undo_norm(enc.conv_norm_out)
    # mean = RGB (4th latent channel 0), log-variance very low: sampling is deterministic
    centre(enc.conv_out, rgb_out, {**unshift, **{latent + c: -20.0 for c in range(latent)}})
    centre(vae.quant_conv, [(c, c, 1.0) for c in range(2 * latent)], {})
    centre(vae.post_quant_conv, [(c, c, 1.0) for c in range(latent)], {})

    centre(dec.conv_in, rgb_pm, {6: k, 7: -k})
    identity_resnets(dec)
    for block in dec.up_blocks:
        for up in block.upsamplers or []:
            centre(up.conv, [(c, c, 1.0) for c in range(up.conv.out_channels)], {})
    undo_norm(dec.conv_norm_out)
    centre(dec.conv_out, rgb_out, unshift)


def _new_vae(resolution: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_CHANNELS),
        block_out_channels=VAE_CHANNELS,
        layers_per_block=1,
        latent_channels=4,
        # One group: a flat colour region normalised in groups of two channels keeps only the
        # signs within each pair, so the decoder could only emit a few colours (green and
        # purple came out grey, navy black); one group keeps the colour's direction.
        norm_num_groups=1,
        sample_size=resolution,
        mid_block_add_attention=False,  # flat layouts need no attention at 8x8, it is slow
    )


def _new_text_encoder(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def _new_unet(resolution: int) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=resolution // 4,
        in_channels=4,
        out_channels=4,
        block_out_channels=UNET_CHANNELS,
        # Cross-attention at the 8x8 level and in the mid block; the 4x4 level is plain
        # convolution, which costs a fifth less per step and loses no colour following.
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def _new_scheduler() -> Any:
    from diffusers import DDIMScheduler

    # DDPM's linear betas end at a signal-to-noise ratio of ~4e-5, so sampling from pure noise
    # matches training; SD's scaled-linear schedule leaks the mean colour at t=T, which the
    # sampler cannot reproduce and which shows as colour casts (white rendered as yellow).
    # With so little signal left at high noise, epsilon prediction learns nothing about the
    # image there (every prompt came out the same grey); v-prediction has to predict the image
    # itself, which is where flat layouts get their colours.
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        prediction_type="v_prediction",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="trailing",
    )


class _ThreadTuner:
    """Uses 1 or 2 torch threads, whichever its measured training steps say is faster.

    On an idle 2-core machine two threads are faster, but when another process keeps a core
    busy every small op waits for the descheduled second thread and a step gets several times
    slower than with one thread. So every `period` steps it times `probe` steps with each
    choice and keeps the faster one.
    """

    def __init__(self, *, probe: int = 3, period: int = 100) -> None:
        self.choices = sorted({MAX_THREADS, 1}, reverse=True)
        self.probe, self.period = probe, period
        self.times: dict[int, list[float]] = {c: [] for c in self.choices}

    def _probing(self, step: int) -> int | None:
        slot = ((step - 1) % self.period) // self.probe
        return self.choices[slot] if slot < len(self.choices) and len(self.choices) > 1 else None

    def before(self, step: int) -> float:
        choice = self._probing(step)
        if choice is not None:
            torch.set_num_threads(choice)
        return time.monotonic()

    def after(self, step: int, tic: float) -> float:
        seconds = time.monotonic() - tic
        choice = self._probing(step)
        if choice is not None:
            self.times[choice].append(seconds)
            if choice == self.choices[-1] and len(self.times[choice]) == self.probe:
                best = min(self.choices, key=lambda c: float(np.median(self.times[c])))
                torch.set_num_threads(best)
                log.debug("step %d: using %d thread(s)", step, best)
                self.times = {c: [] for c in self.choices}
        return seconds


def _train_vae(
    vae: Any, pixels: torch.Tensor, *, pp: PretrainParams, seed: int, deadline: float
) -> tuple[int, float]:
    """Reconstruction (L1 + MSE) with a small KL term; returns steps done and the last loss."""
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=pp.vae_lr, weight_decay=0.0)
    vae.train()
    threads = _ThreadTuner()
    ema_loss, step = float("nan"), 0
    for step in tqdm(range(1, pp.vae_steps + 1), desc="base: VAE", leave=False):
        tic = threads.before(step)
        idx = torch.randint(0, len(pixels), (pp.batch_size,), generator=gen)
        x = pixels[idx]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        loss = (recon - x).abs().mean() + ((recon - x) ** 2).mean() + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        threads.after(step, tic)
        ema_loss = loss.item() if math.isnan(ema_loss) else 0.9 * ema_loss + 0.1 * loss.item()
        if time.monotonic() > deadline:
            log.info("VAE: time budget reached after %d steps", step)
            break
    log.info("VAE: %d steps, loss %.4f", step, ema_loss)
    return step, ema_loss


def _train_unet(
    unet: Any,
    text_encoder: Any,
    scheduler: Any,
    *,
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    input_ids: torch.Tensor,
    empty_ids: torch.Tensor,
    pp: PretrainParams,
    seed: int,
    deadline: float,
) -> tuple[int, float]:
    """Weighted v-prediction; returns steps done and the last (smoothed) loss."""
    gen = torch.Generator().manual_seed(seed + 1)
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=pp.unet_lr, weight_decay=1e-2)
    alphas_cumprod = scheduler.alphas_cumprod
    snr = alphas_cumprod / (1 - alphas_cumprod)
    # The v-loss is the image-prediction loss times (snr + 1); capping that factor keeps the
    # nearly noise-free steps (fine detail) from drowning the noisy ones (layout and colour).
    loss_weights = torch.clamp(snr + 1, max=MIN_SNR_GAMMA + 1) / (snr + 1)
    warmup = min(50, max(1, pp.unet_steps // 10))
    # The planned length is re-estimated from the measured step time: when the time budget
    # is shorter than `unet_steps`, the cosine schedule still reaches zero at the end.
    planned = pp.unet_steps
    unet.train()
    text_encoder.train()
    threads = _ThreadTuner()
    recent: deque[float] = deque(maxlen=50)
    ema_loss, step = float("nan"), 0
    bar = tqdm(total=pp.unet_steps, desc="base: text encoder + UNet", leave=False)
    for step in range(1, pp.unet_steps + 1):
        if step > 10 and step % 10 == 0:
            per_step = float(np.median(recent))
            fits = step - 1 + int(max(0.0, deadline - time.monotonic()) / per_step)
            planned = max(step, min(pp.unet_steps, fits))
        tic = threads.before(step)
        progress = (step - warmup) / max(1, planned - warmup)
        lr = pp.unet_lr * (
            step / warmup if step <= warmup else 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        )
        for group in optimizer.param_groups:
            group["lr"] = lr

        idx = torch.randint(0, len(latent_mean), (pp.batch_size,), generator=gen)
        latents = latent_mean[idx] + latent_std[idx] * torch.randn(
            latent_mean[idx].shape, generator=gen
        )
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (pp.batch_size,), generator=gen)
        noisy = scheduler.add_noise(latents, noise, t)
        target = scheduler.get_velocity(latents, noise, t)
        ids = input_ids[idx].clone()
        ids[torch.rand(pp.batch_size, generator=gen) < CAPTION_DROPOUT] = empty_ids[0]
        hidden = text_encoder(ids).last_hidden_state
        pred = unet(noisy, t, hidden).sample
        per_sample = ((pred - target) ** 2).mean(dim=(1, 2, 3))
        loss = (per_sample * loss_weights[t]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        recent.append(threads.after(step, tic))
        ema_loss = loss.item() if math.isnan(ema_loss) else 0.98 * ema_loss + 0.02 * loss.item()
        bar.update()
        bar.set_postfix(loss=f"{ema_loss:.4f}", planned=planned)
        if step >= planned or time.monotonic() > deadline:
            break
    bar.close()
    log.info("text encoder + UNet: %d steps (planned %d), loss %.4f", step, planned, ema_loss)
    return step, ema_loss


# ---------------------------------------------------------------------------------------------
# Colour following: does the model render the colours a prompt names?


def pair_share(images: np.ndarray, colours: Sequence[str]) -> float:
    """Share of pixels of `images` (..., 3) uint8 whose nearest named colour is in `colours`."""
    wanted = [COLOUR_NAMES.index(c) for c in colours]
    return float(np.isin(nearest_colour_names(images), wanted).mean())


def _generate(
    pipe: Any,
    prompts: list[str],
    *,
    seeds: Sequence[int],
    resolution: int,
    steps: int,
    guidance: float,
) -> np.ndarray:
    """(len(prompts), len(seeds), H, W, 3) uint8 images, one per prompt and seed."""
    all_prompts = [p for p in prompts for _ in seeds]
    generators = [torch.Generator().manual_seed(s) for _ in prompts for s in seeds]
    with torch.no_grad():
        out = pipe(
            all_prompts,
            height=resolution,
            width=resolution,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators,
            output_type="np",
        ).images
    images = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
    return images.reshape(len(prompts), len(seeds), *images.shape[1:])


def colour_following(
    pipe: Any,
    *,
    resolution: int,
    pairs: Sequence[tuple[str, str]] = CHECK_PAIRS,
    seeds: Sequence[int] = CHECK_SEEDS,
    steps: int = 20,
    guidance: float = 5.0,
) -> dict[str, Any]:
    """Share of pixels in the two colours named by "a X circle on a Y background" prompts."""
    prompts = [f"a {fg} circle on a {bg} background" for fg, bg in pairs]
    images = _generate(
        pipe, prompts, seeds=seeds, resolution=resolution, steps=steps, guidance=guidance
    )
    per_pair = {
        f"{fg}/{bg}": round(pair_share(images[i], (fg, bg)), 4) for i, (fg, bg) in enumerate(pairs)
    }
    return {"share": float(np.mean(list(per_pair.values()))), "pairs": per_pair}


def colour_fidelity(
    pipe: Any,
    *,
    resolution: int,
    colours: Sequence[str] = COLOUR_NAMES,
    seeds: Sequence[int] = CHECK_SEEDS,
    steps: int = 20,
    guidance: float = 5.0,
) -> dict[str, dict[str, Any]]:
    """Mean rendered colour of "a plain X background" against X's prototype, per colour."""
    prompts = [f"a plain {c} background" for c in colours]
    images = _generate(
        pipe, prompts, seeds=seeds, resolution=resolution, steps=steps, guidance=guidance
    )
    result = {}
    for i, colour in enumerate(colours):
        mean = images[i].reshape(-1, 3).astype(np.float64).mean(0)
        target = np.asarray(NAMED_COLOURS[colour], dtype=np.float64)
        result[colour] = {
            "mean_rgb": [round(float(v), 1) for v in mean],
            "target_rgb": [int(v) for v in target],
            "rgb_distance": round(float(np.linalg.norm(mean - target)), 1),
            "share": round(pair_share(images[i], (colour,)), 4),
        }
    return result
