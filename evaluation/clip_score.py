"""Prompt alignment as CLIPScore (Hessel et al. 2021), from a local CLIP model only.

CLIP-S(image, prompt) = w * max(cos(E_image, E_text), 0) with w = 2.5, the paper's scale, so a
score lies in [0, 2.5]. (torchmetrics reports 100 * max(cos, 0): multiply these scores by 40 to
compare.) Nothing is downloaded: without `eval.clip_model` prompt alignment is reported as not
configured rather than estimated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

CLIP_SCORE_WEIGHT = 2.5

_EXPECTED = (
    "eval.clip_model must be a folder saved with CLIPModel.save_pretrained plus its processor "
    "(CLIPProcessor.save_pretrained, or the tokenizer and image processor saved separately), "
    "or a Hugging Face id already in the local cache"
)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


class ClipScoreError(RuntimeError):
    """The configured CLIP model cannot be found or loaded."""


def _as_rgb(image: np.ndarray | Image.Image) -> Image.Image:
    """A PIL RGB image from a PIL image or a uint8 array (greyscale, RGB or RGBA)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        # A float array in 0..1 would silently become a black image.
        raise ValueError(
            f"images must be PIL images or uint8 arrays (H, W[, C]), "
            f"got dtype {array.dtype} and shape {array.shape}"
        )
    return Image.fromarray(array).convert("RGB")


class ClipScorer:
    """A CLIP model with its tokenizer and image processor, scoring (image, prompt) pairs."""

    def __init__(
        self, *, model: Any, tokenizer: Any, image_processor: Any, location: str, device: str
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.location = location
        self.device = device
        # Prompts longer than CLIP's context are truncated, as in the CLIPScore reference code.
        self.max_length = min(
            int(tokenizer.model_max_length), int(model.config.text_config.max_position_embeddings)
        )

    @classmethod
    def load(cls, location: str | Path, *, device: str = "cpu") -> ClipScorer:
        """Load a CLIP model, tokenizer and image processor from a folder or the local HF cache."""
        import torch
        from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, CLIPModel
        from transformers.utils import logging as transformers_logging

        path = Path(location).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise ClipScoreError(f"{path.resolve()} has no config.json; {_EXPECTED}")
            # Without tokenizer files AutoTokenizer quietly builds an empty CLIP tokenizer.
            if not any((path / name).is_file() for name in _TOKENIZER_FILES):
                raise ClipScoreError(
                    f"{path.resolve()} has no tokenizer ({' or '.join(_TOKENIZER_FILES)}); "
                    f"{_EXPECTED}"
                )
            source = str(path)
        elif path.is_absolute() or str(location).startswith((".", "~")):
            raise ClipScoreError(f"no folder at {path.resolve()}; {_EXPECTED}")
        else:
            source = str(location)  # not on disk: a Hugging Face id, looked up in the cache only
        where = str(path.resolve()) if path.exists() else f"{source!r} (no folder {path.resolve()})"
        transformers_logging.disable_progress_bar()  # loading takes a second; its bars are noise
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=True)
            if config.model_type != "clip":
                raise ClipScoreError(
                    f"{where} holds a {config.model_type!r} model, not CLIP; {_EXPECTED}"
                )
            # Any: transformers' typing of `.to` on a loaded model confuses mypy.
            model: Any = CLIPModel.from_pretrained(
                source, config=config, dtype=torch.float32, local_files_only=True
            )
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            # The PIL backend whether or not torchvision is installed, so that scores do not
            # depend on which resize implementation happens to be available.
            image_processor = AutoImageProcessor.from_pretrained(
                source, local_files_only=True, backend="pil"
            )
        except (OSError, ValueError, KeyError) as err:
            message = str(err).strip().rstrip(".")
            raise ClipScoreError(
                f"cannot load a CLIP model from {where}: {message}. {_EXPECTED}"
            ) from err
        if len(tokenizer) > config.text_config.vocab_size:
            raise ClipScoreError(
                f"{where}: the tokenizer has {len(tokenizer)} tokens but the text encoder only "
                f"{config.text_config.vocab_size}; they are not a pair. {_EXPECTED}"
            )
        model.to(device).eval()
        logger.info("CLIP model for prompt alignment: %s on %s", source, device)
        return cls(
            model=model,
            tokenizer=tokenizer,
            image_processor=image_processor,
            location=source,
            device=device,
        )

    def score(
        self,
        images: Sequence[np.ndarray | Image.Image],
        prompts: Sequence[str],
        *,
        batch_size: int = 16,
    ) -> np.ndarray:
        """CLIP-S of each (image, prompt) pair, in [0, CLIP_SCORE_WEIGHT]."""
        import torch

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts; pair them 1:1")
        if len(images) == 0:
            raise ValueError("no images to score")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        scores = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                stop = start + batch_size
                pixels = self.image_processor(
                    images=[_as_rgb(image) for image in images[start:stop]], return_tensors="pt"
                )["pixel_values"].to(self.device)
                text = self.tokenizer(
                    [str(prompt) for prompt in prompts[start:stop]],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                # transformers 5 returns model outputs here; the projected embedding is the pooler.
                image_embeds = self.model.get_image_features(pixel_values=pixels).pooler_output
                text_embeds = self.model.get_text_features(
                    input_ids=text["input_ids"], attention_mask=text["attention_mask"]
                ).pooler_output
                cosine = torch.nn.functional.cosine_similarity(image_embeds, text_embeds, dim=-1)
                scores.append(CLIP_SCORE_WEIGHT * cosine.clamp(min=0))
        return torch.cat(scores).to(dtype=torch.float64, device="cpu").numpy()


def prompt_alignment(
    images: Sequence[np.ndarray | Image.Image],
    prompts: Sequence[str],
    clip_model: str | Path | None,
    *,
    device: str = "cpu",
) -> dict[str, Any]:
    """CLIPScore of generated images against their prompts, or why it is not configured."""
    if clip_model is None or not str(clip_model).strip():
        return {"configured": False, "reason": "eval.clip_model is not set"}
    scores = ClipScorer.load(clip_model, device=device).score(images, prompts)
    return {
        "configured": True,
        "model": str(clip_model),
        "scores": [float(score) for score in scores],
        "mean": float(scores.mean()),
    }
