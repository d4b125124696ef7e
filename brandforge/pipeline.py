"""Loading the base diffusion pipeline (SD 1.x / SDXL) and its LoRA adapters, offline.

The `base` stage writes `models/base/brandforge_base.json`, the *base reference*: which pipeline
every later stage uses and its identity for lineage. For the embedded model the pipeline lives in
that same folder (`"model": "."`); for a Hugging Face id or an outside folder it points there.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

REFERENCE_FILE = "brandforge_base.json"
# Where the `base` stage writes the base reference (and the embedded pipeline), from the root.
BASE_DIR = Path("models/base")
# The prepared dataset (`prepare` writes it; train, evaluate and register read it) and the
# trained adapter (`train` writes it; evaluate and register read it).
PREPARED_DIR = Path("data/prepared")
LORA_DIR = Path("models/lora")


class BaseModelError(RuntimeError):
    """The base model cannot be found or loaded."""


@dataclass(frozen=True)
class BaseReference:
    model: str  # "." (this folder), a local folder, or a Hugging Face id
    kind: Literal["sd", "sdxl"]
    identity: str  # content hash of the weights, or "<hf id>@<revision>"
    source: str  # "embedded", "local" or "huggingface"
    resolution: int

    def location(self, base_dir: Path) -> str:
        """Where `from_pretrained` should look."""
        if self.model == ".":
            return str(base_dir.resolve())
        return self.model


def write_base_reference(base_dir: Path, ref: BaseReference) -> None:
    base_dir.mkdir(parents=True, exist_ok=True)
    (base_dir / REFERENCE_FILE).write_text(json.dumps(asdict(ref), indent=2) + "\n")


def read_base_reference(base_dir: str | Path) -> BaseReference:
    path = Path(base_dir) / REFERENCE_FILE
    if not path.is_file():
        raise BaseModelError(
            f"{path}: no base reference; run the base stage first (`dvc repro base`)"
        )
    try:
        return BaseReference(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise BaseModelError(
            f"{path}: unreadable base reference ({err}); rerun `dvc repro base`"
        ) from None


def pipeline_kind(pipe: Any) -> Literal["sd", "sdxl"]:
    """SDXL pipelines carry a second text encoder; everything else is treated as SD 1.x/2.x."""
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd"


def load_pipeline(location: str | Path, *, device: str = "cpu", dtype: Any = None) -> Any:
    """Load a diffusers pipeline from a folder or the local HF cache, never the network."""
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # loading takes a second; its bars are noise
    try:
        pipe = DiffusionPipeline.from_pretrained(
            str(location), dtype=dtype or torch.float32, local_files_only=True
        )
    except (OSError, ValueError) as err:
        raise BaseModelError(
            f"cannot load diffusion pipeline {str(location)!r} offline: {err}. "
            "Use a local diffusers folder or a model already in the Hugging Face cache."
        ) from err
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_base(
    base_dir: str | Path, *, device: str = "cpu", dtype: Any = None
) -> tuple[Any, BaseReference]:
    """The base pipeline named by `models/base/brandforge_base.json`, and its reference."""
    ref = read_base_reference(base_dir)
    return load_pipeline(ref.location(Path(base_dir)), device=device, dtype=dtype), ref


def image_grid(images: list[Any], *, cols: int, upscale: int) -> Any:
    """Tile images row-major into one picture, enlarged for viewing in the MLflow UI."""
    from PIL import Image

    w, h = images[0].size
    rows = math.ceil(len(images) / cols)
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, img in enumerate(images):
        grid.paste(img, ((i % cols) * w, (i // cols) * h))
    if upscale > 1:
        grid = grid.resize((grid.width * upscale, grid.height * upscale), Image.Resampling.NEAREST)
    return grid


def generate(
    pipe: Any, prompts: list[str], seeds: list[int], *, steps: int, guidance: float, resolution: int
) -> list[Any]:
    """One image per (prompt, seed), prompt-major, same noise for the same seed."""
    import torch

    all_prompts = [p for p in prompts for _ in seeds]
    generators = [torch.Generator("cpu").manual_seed(s) for _ in prompts for s in seeds]
    with torch.no_grad():
        return list(
            pipe(
                all_prompts,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generators,
                height=resolution,
                width=resolution,
            ).images
        )
