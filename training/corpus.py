"""The generated generic corpus the embedded base model is pretrained on.

Flat marketing-style layouts (solid, gradient and split backgrounds, stripes, bands, bars, cards,
circles, squares, triangles) in a broad set of named colours, each with a caption that names the
colours and shapes drawn, so the model learns to follow colour and shape words. Pure and
deterministic: the same `n`, `resolution` and `seed` always give the same arrays and captions.
"""

from __future__ import annotations

import numpy as np

# Prototype sRGB values; each drawn colour is jittered around its prototype so a name covers a
# small range, as in real images. Brand-like colours (teal #1A9E9E, off-white #F5F5F5, orange
# #F58C1E, red #DC2828) are prototypes on purpose.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (22, 22, 22),
    "grey": (128, 128, 128),
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (245, 210, 40),
    "green": (50, 160, 60),
    "teal": (26, 158, 158),
    "blue": (40, 90, 210),
    "navy": (22, 36, 94),
    "purple": (130, 60, 170),
    "pink": (240, 130, 180),
    "brown": (120, 72, 38),
    "beige": (225, 205, 165),
}
COLOUR_NAMES: tuple[str, ...] = tuple(NAMED_COLOURS)
# Jitter is mostly brightness (the same offset on all channels) and only a little hue, so that
# "white" never drifts towards yellow or blue in the training data.
BRIGHTNESS_JITTER = 8
HUE_JITTER = 3

SHAPES = ("circle", "square", "triangle", "card")
POSITIONS = ("left", "right", "top", "bottom")
LAYOUTS = (
    "plain",
    "gradient",
    "split",
    "stripes",
    "band",
    "bars",
    "shape",
    "shape",
    "shape",
    "two_shapes",
)

# Every word a caption can contain (for the tokenizer's whole-word merges).
CORPUS_WORDS: tuple[str, ...] = (
    *COLOUR_NAMES,
    *SHAPES,
    *POSITIONS,
    *"a an and on of the to with at in background plain solid gradient split stripes".split(),
    *"horizontal vertical band bars across small large centre centered halves".split(),
)


def _colour(rng: np.random.Generator, name: str) -> np.ndarray:
    base = np.asarray(NAMED_COLOURS[name], dtype=np.int16)
    jitter = rng.integers(-BRIGHTNESS_JITTER, BRIGHTNESS_JITTER + 1) + rng.integers(
        -HUE_JITTER, HUE_JITTER + 1, size=3
    )
    return np.clip(base + jitter, 0, 255).astype(np.float32)


def _pick(rng: np.random.Generator, k: int) -> list[str]:
    return [COLOUR_NAMES[i] for i in rng.choice(len(COLOUR_NAMES), size=k, replace=False)]


def _shape_mask(
    shape: str, *, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float
) -> np.ndarray:
    if shape == "circle":
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    if shape == "square":
        return (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
    if shape == "triangle":  # apex up, base at cy + r
        top, bottom = cy - r, cy + r
        half_width = (yy - top) / (2 * r) * r * 1.15
        return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half_width)
    if shape == "card":  # a wide rectangle with rounded corners
        h, w, rad = r * 0.75, r * 1.35, r * 0.3
        dy = np.maximum(np.abs(yy - cy) - (h - rad), 0)
        dx = np.maximum(np.abs(xx - cx) - (w - rad), 0)
        return dy**2 + dx**2 <= rad**2
    raise ValueError(f"unknown shape {shape!r}")


def _draw_one(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    layout = LAYOUTS[rng.integers(len(LAYOUTS))]
    img = np.empty((size, size, 3), dtype=np.float32)

    if layout == "plain":
        (bg,) = _pick(rng, 1)
        img[:] = _colour(rng, bg)
        template = ("a plain {0} background", "a solid {0} background", "{0} background")
        return img, template[rng.integers(3)].format(bg)

    if layout == "gradient":
        c1, c2 = _pick(rng, 2)
        vertical = bool(rng.integers(2))
        t = (yy if vertical else xx) / size
        img[:] = (1 - t)[..., None] * _colour(rng, c1) + t[..., None] * _colour(rng, c2)
        direction = "vertical" if vertical else "horizontal"
        return img, f"a {direction} {c1} to {c2} gradient background"

    if layout == "split":
        c1, c2 = _pick(rng, 2)
        vertical = bool(rng.integers(2))
        first = (xx < size / 2) if vertical else (yy < size / 2)
        img[:] = _colour(rng, c2)
        img[first] = _colour(rng, c1)
        return img, f"a {c1} and {c2} split background"

    if layout == "stripes":
        c1, c2 = _pick(rng, 2)
        vertical = bool(rng.integers(2))
        width = int(rng.integers(max(2, size // 16), max(3, size // 5) + 1))
        coord = xx if vertical else yy
        img[:] = _colour(rng, c1)
        img[(coord // width) % 2 == 1] = _colour(rng, c2)
        direction = "vertical" if vertical else "horizontal"
        return img, f"{c1} and {c2} {direction} stripes"

    if layout == "band":
        fg, bg = _pick(rng, 2)
        vertical = bool(rng.integers(2))
        band_width = rng.uniform(0.2, 0.4) * size
        centre = rng.uniform(0.3, 0.7) * size
        coord = xx if vertical else yy
        img[:] = _colour(rng, bg)
        img[np.abs(coord - centre) <= band_width / 2] = _colour(rng, fg)
        direction = "vertical" if vertical else "horizontal"
        return img, f"a {fg} {direction} band across a {bg} background"

    if layout == "bars":
        fg, bg = _pick(rng, 2)
        img[:] = _colour(rng, bg)
        colour = _colour(rng, fg)
        n_bars = int(rng.integers(3, 5))
        slot = size / (n_bars + 1)
        for i in range(n_bars):
            height = rng.uniform(0.25, 0.8) * size
            cx = slot * (i + 1)
            img[(np.abs(xx - cx) <= slot * 0.3) & (yy >= size - height)] = colour
        return img, f"{fg} bars on a {bg} background"

    if layout == "shape":
        fg, bg = _pick(rng, 2)
        shape = SHAPES[rng.integers(len(SHAPES))]
        large = bool(rng.integers(2))
        r = rng.uniform(0.28, 0.38) * size if large else rng.uniform(0.14, 0.22) * size
        position = "centre" if rng.random() < 0.4 else POSITIONS[rng.integers(len(POSITIONS))]
        offset = size * 0.5 - r * 1.1
        cy = cx = size / 2
        if position == "left":
            cx -= offset
        elif position == "right":
            cx += offset
        elif position == "top":
            cy -= offset
        elif position == "bottom":
            cy += offset
        img[:] = _colour(rng, bg)
        img[_shape_mask(shape, yy=yy, xx=xx, cy=cy, cx=cx, r=r)] = _colour(rng, fg)
        size_word = "large " if large else "small "
        caption = f"a {size_word if rng.random() < 0.5 else ''}{fg} {shape} on a {bg} background"
        if position != "centre" and rng.random() < 0.6:
            caption += f", {shape} at the {position}"
        return img, caption

    # two shapes side by side on one background
    c1, c2, bg = _pick(rng, 3)
    s1, s2 = (SHAPES[i] for i in rng.integers(0, 3, size=2))
    r = rng.uniform(0.16, 0.22) * size
    img[:] = _colour(rng, bg)
    img[_shape_mask(s1, yy=yy, xx=xx, cy=size / 2, cx=size * 0.27, r=r)] = _colour(rng, c1)
    img[_shape_mask(s2, yy=yy, xx=xx, cy=size / 2, cx=size * 0.73, r=r)] = _colour(rng, c2)
    return img, f"a {c1} {s1} and a {c2} {s2} on a {bg} background"


def generate_corpus(n: int, *, resolution: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """`n` generated images, (n, resolution, resolution, 3) uint8, and their captions."""
    if n < 1 or resolution < 8:
        raise ValueError(f"need n >= 1 and resolution >= 8, got n={n}, resolution={resolution}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, resolution, resolution, 3), dtype=np.uint8)
    captions: list[str] = []
    for i in range(n):
        img, caption = _draw_one(rng, resolution)
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        captions.append(caption)
    return images, captions


def nearest_colour_names(pixels: np.ndarray) -> np.ndarray:
    """Index into COLOUR_NAMES of the nearest named colour for each RGB pixel (..., 3)."""
    palette = np.asarray([NAMED_COLOURS[c] for c in COLOUR_NAMES], dtype=np.float32)
    flat = pixels.reshape(-1, 3).astype(np.float32)
    dist = ((flat[:, None, :] - palette[None, :, :]) ** 2).sum(-1)
    return dist.argmin(1).reshape(pixels.shape[:-1])
