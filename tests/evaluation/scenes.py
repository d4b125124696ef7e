"""Test images shared by the text-region and logo tests: JPEG damage and photo-like scenes."""

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def photo_like(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth colour structure at several scales, sharp-edged objects and mild noise."""
    rng = np.random.default_rng(seed)
    field = np.zeros((height, width, 3))
    for sigma, amplitude in ((2, 10), (5, 25), (15, 50), (40, 60)):
        # the broad scales are made small and enlarged: same look, a fraction of the time
        shrink = 1 if sigma < 4 else 4
        small = rng.normal(size=(-(-height // shrink), -(-width // shrink), 3))
        noise = ndimage.gaussian_filter(small, (sigma / shrink, sigma / shrink, 0))
        noise = ndimage.zoom(noise, (shrink, shrink, 1), order=1)[:height, :width]
        field += amplitude * noise / noise.std()
    canvas = Image.fromarray(np.clip(field + rng.uniform(70, 180, 3), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(12):
        x, y = rng.integers(0, width), rng.integers(0, height)
        r = int(rng.integers(min(width, height) // 40, min(width, height) // 8))
        fill = tuple(int(v) for v in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        else:
            draw.rectangle((x - r, y - r // 3, x + r, y + r // 3), fill=fill)
    noisy = np.asarray(canvas).astype(float) + rng.normal(0, 3, (height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)
