"""The generate request path's per-image work outside the pipeline, without a trained model:
how the generator hands an image to the ingress (PNG bytes, or the pixel array) and what the
ingress then does with it (compliance score, watermark + encoding).

For each size, in the same run, side by side:

    png     generator: PIL image -> PNG bytes; transfer (pickle, protocol 5, as Ray does);
            ingress: decode the PNG -> RGB image
    pixels  generator: PIL image -> uint8 array; transfer (pickle, protocol 5);
            ingress: array -> RGB image (no copy of the pixels' meaning, no codec)

and, for scale, `score_image` and `encode_marked` (PNG) of the same image: the ingress's work
that stays. Prints the median of --repeat runs in ms and the ratio png / pixels.

    python bench/request_path.py [--sizes 32 256] [--repeat 50]
"""

from __future__ import annotations

import argparse
import io
import logging
import pickle
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

KIT = Path(__file__).parents[1] / "tests/evaluation/data/acme.yaml"


def _image(side: int) -> Image.Image:
    """A smooth picture with mild noise, like a drawn one (pure noise would flatter neither)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / max(side - 1, 1)
    rgb = np.stack([x, y, 1 - x * y], axis=-1) * 220 + rng.normal(0, 6, (side, side, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def _median_ms(work: Callable[[], Any], repeat: int) -> float:
    work()  # warm up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _png_hand_off(image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    sent = pickle.loads(pickle.dumps(buf.getvalue(), protocol=5))
    return Image.open(io.BytesIO(sent)).convert("RGB")


def _pixel_hand_off(image: Image.Image) -> Image.Image:
    sent = pickle.loads(pickle.dumps(np.asarray(image), protocol=5))
    return Image.fromarray(sent, "RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    from brandforge.brandkit import load_brand_kit
    from serving.delivery.deliver import encode_marked, score_image

    kit = load_brand_kit(KIT)
    logging.disable(logging.WARNING)  # 32 px is below the watermark's minimum: said per image
    print(f"median of {args.repeat} runs, ms per image")
    print("| side | png hand-off | pixel hand-off | ratio | score | mark + encode (png) |")
    print("|---|---|---|---|---|---|")
    for side in args.sizes:
        image = _image(side)
        assert np.array_equal(np.asarray(_png_hand_off(image)), np.asarray(_pixel_hand_off(image)))
        png = _median_ms(partial(_png_hand_off, image), args.repeat)
        pixels = _median_ms(partial(_pixel_hand_off, image), args.repeat)
        score = _median_ms(partial(score_image, image, kit), args.repeat)
        encode = _median_ms(
            partial(encode_marked, image, "png", asset_id="bench", xmp=b""), args.repeat
        )
        print(
            f"| {side} | {png:.3f} | {pixels:.3f} | {png / pixels:.1f}x | {score:.2f} | "
            f"{encode:.2f} |"
        )


if __name__ == "__main__":
    main()
