"""Did the adapter learn the brand? Base vs base+adapter on the same prompts and seeds.

The figure is the share of pixels within the brand's colour tolerance (CIEDE2000) of its palette,
measured on images generated from fixed seeds by the base model and by base + the saved adapter
(loaded back from disk with `load_lora_weights`, exactly as serving will load it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from brandforge.brandkit import BrandKit
from brandforge.params import EvidenceParams
from brandforge.pipeline import generate, image_grid, load_pipeline
from evaluation.palette import palette_adherence
from evaluation.stats import paired_bootstrap

log = logging.getLogger(__name__)


def evidence_prompts(kit: BrandKit, params: EvidenceParams) -> list[str]:
    """The configured prompts, with `{brand}` replaced by the brand's trigger phrase."""
    return [p.replace("{brand}", kit.phrase) for p in params.prompts]


def measure_learning(
    *,
    base_location: str,
    adapter_dir: Path,
    kit: BrandKit,
    params: EvidenceParams,
    resolution: int,
) -> dict[str, Any]:
    """Palette adherence of base and adapter images, with a paired bootstrap interval."""
    from tqdm.auto import tqdm

    prompts = evidence_prompts(kit, params)
    seeds = list(params.seeds)
    palette = [c.rgb for c in kit.palette]
    pipe = load_pipeline(base_location)

    images: dict[str, list[Any]] = {}
    with tqdm(total=2, desc="evidence: base vs adapter", unit="model") as bar:
        for name in ("base", "adapter"):
            if name == "adapter":
                pipe.load_lora_weights(str(adapter_dir))
            images[name] = generate(
                pipe,
                prompts,
                seeds,
                steps=params.num_inference_steps,
                guidance=params.guidance_scale,
                resolution=resolution,
            )
            bar.update(1)
    del pipe

    scores = {
        name: np.array(
            [palette_adherence(np.asarray(img), palette, kit.color_tolerance) for img in imgs]
        )
        for name, imgs in images.items()
    }
    comparison = paired_bootstrap(scores["base"], scores["adapter"], rng=np.random.default_rng(0))
    per_prompt = {
        prompt: {
            "base": float(scores["base"][i * len(seeds) : (i + 1) * len(seeds)].mean()),
            "adapter": float(scores["adapter"][i * len(seeds) : (i + 1) * len(seeds)].mean()),
        }
        for i, prompt in enumerate(prompts)
    }
    # Rows: prompt x seed; left half base, right half adapter.
    pairs = [img for b, a in zip(images["base"], images["adapter"], strict=True) for img in (b, a)]
    grid = image_grid(pairs, cols=2 * len(seeds), upscale=4)
    log.info(
        "palette adherence: base %.3f → adapter %.3f (Δ %.3f, 95%% CI %.3f..%.3f, n=%d)",
        comparison.mean_a,
        comparison.mean_b,
        comparison.delta,
        *comparison.ci95,
        comparison.n,
    )
    return {
        "palette_adherence": {
            "base": round(comparison.mean_a, 4),
            "adapter": round(comparison.mean_b, 4),
            "delta": round(comparison.delta, 4),
            "delta_ci95": [round(comparison.ci95[0], 4), round(comparison.ci95[1], 4)],
            "win_rate": round(comparison.win_rate, 4),
            "n_images": comparison.n,
            "tolerance": kit.color_tolerance,
            "per_prompt": per_prompt,
        },
        "grid": grid,
    }
