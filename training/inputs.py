"""What a LoRA training reads: the prepared dataset, its brand kit, the base model, and the cache
of VAE latents and text embeddings computed once per (dataset version, base model, resolution).

Text conditioning is the only place SD 1.x/2.x and SDXL differ.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from brandforge.brandkit import BrandKit, load_brand_kit
from brandforge.pipeline import (
    BASE_DIR,
    PREPARED_DIR,
    BaseReference,
    load_pipeline,
    pipeline_kind,
    read_base_reference,
)

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot start (missing inputs) or produced something unusable."""


@dataclass(frozen=True)
class TrainingInputs:
    root: Path
    info: dict[str, Any]  # the prepared dataset's dataset.json: brand, hash, resolution
    files: list[Path]
    captions: list[str]
    kit: BrandKit
    ref: BaseReference
    resolution: int  # what the prepared images were cut to, else the base's own

    @property
    def brand(self) -> str:
        return str(self.info["brand"])

    @property
    def dataset_hash(self) -> str:
        return str(self.info["hash"])

    @property
    def base_location(self) -> str:
        return self.ref.location(self.root / BASE_DIR)


def load_inputs(root: Path) -> TrainingInputs:
    """The prepared dataset (files and captions), its brand kit and the base reference."""
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
    ref = read_base_reference(root / BASE_DIR)
    return TrainingInputs(
        root=root,
        info=info,
        files=files,
        captions=captions,
        kit=load_brand_kit(prepared / "brand.yaml"),
        ref=ref,
        resolution=int(info.get("resolution", ref.resolution)),
    )


def load_frozen_pipeline(inputs: TrainingInputs, device: torch.device) -> Any:
    """The base pipeline with every weight frozen: only the LoRA layers added later train."""
    pipe = load_pipeline(inputs.base_location, device=str(device))
    for module in (pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None), pipe.unet):
        if module is not None:
            module.requires_grad_(False)
    return pipe


# ---------------------------------------------------------------------------------------------
# Text conditioning: SD 1.x/2.x and SDXL differ only here.


@dataclass
class Conditioning:
    """Per-caption text conditioning: hidden states (+ pooled embeddings for SDXL)."""

    hidden: torch.Tensor  # (N, tokens, dim)
    pooled: torch.Tensor | None = None  # (N, dim) SDXL only


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


def sdxl_time_ids(resolution: int, batch: int, device: torch.device) -> torch.Tensor:
    """SDXL's size/crop conditioning for uncropped square training images."""
    size = (resolution, resolution)
    ids = torch.tensor([list(size + (0, 0) + size)], dtype=torch.float32, device=device)
    return ids.repeat(batch, 1)


# ---------------------------------------------------------------------------------------------
# The cache of VAE latents and text embeddings.


def cache_file(inputs: TrainingInputs, cache_dir: Path) -> Path:
    """Where the cache of this dataset version, base model and resolution lives."""
    key = f"{inputs.dataset_hash}|{inputs.ref.identity}|{inputs.resolution}"
    return cache_dir / "latents" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"


def load_cache(
    pipe: Any, inputs: TrainingInputs, *, accelerator: Any, cache_dir: Path
) -> dict[str, Any]:
    """The cache of this dataset version, base model and resolution, built if missing: by the
    main process first, so that the others read its file instead of encoding again."""
    with accelerator.main_process_first():
        return build_cache(
            pipe=pipe,
            files=inputs.files,
            captions=inputs.captions,
            resolution=inputs.resolution,
            device=accelerator.device,
            cache_file=cache_file(inputs, cache_dir),
        )


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
