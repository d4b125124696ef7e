"""The demo brand: a deterministic set of on-brand marketing visuals in the `imagefolder` layout.

`generate_demo_brand` writes `brand.yaml`, `images/*.png` and `metadata.jsonl` for a fictional
brand whose visuals (banners, product cards, social tiles, posters) are drawn in its palette,
each with a caption that starts with the trigger and names the layout and colours in plain words.
The drawing functions are pure: they take a numpy Generator and return a PIL image and a caption.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw
from tqdm import tqdm

from brandforge.params import Params

log = logging.getLogger(__name__)

# Shapes are drawn at SUPERSAMPLE x the target size, then box-filtered down: area averaging is
# exact anti-aliasing for an integer factor and, unlike Lanczos, never rings into off-palette
# halos around the edges.
SUPERSAMPLE = 4

LAYOUTS = ("banner", "product card", "social tile", "poster")
SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class BrandColor:
    name: str
    hex: str
    share: float
    role: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        return (int(self.hex[1:3], 16), int(self.hex[3:5], 16), int(self.hex[5:7], 16))


PALETTE: tuple[BrandColor, ...] = (
    BrandColor("teal", "#1A9E9E", 0.45, "primary"),
    BrandColor("white", "#F5F5F5", 0.35, "background"),
    BrandColor("orange", "#F58C1E", 0.20, "accent"),
)
_RGB = {c.name: c.rgb for c in PALETTE}
_ACCENT = "orange"


# The brand's eval prompt set (the `evaluate` stage): versioned with the brand's data, so a
# change to it is a change of the evaluation, visible in `dvc status`.
DEMO_EVAL_PROMPTS = """\
# Every prompt is generated with every seed, by the champion and by the challenger.
# {brand} is replaced by the brand kit's trigger phrase.
prompts:
  - "{brand} banner"
  - "{brand} product card"
  - "{brand} social tile"
  - "{brand} poster"
  - "{brand} spring sale banner"
  - "{brand} poster with a circle"
seeds: [100, 101, 102, 103, 104, 105, 106, 107]
# Held out: unlike every training caption. Whether their images pass the brand kit says
# whether the adapter learned the brand or only its captions.
held_out:
  - "{brand} billboard for a winter launch"
  - "{brand} email header, minimal"
"""


def demo_brand_kit(name: str) -> dict[str, Any]:
    """The demo brand's `brand.yaml` content (valid for `load_brand_kit`)."""
    return {
        "name": name,
        "trigger": name,
        "palette": [
            {"name": c.name, "hex": c.hex, "share": c.share, "role": c.role} for c in PALETTE
        ],
        "forbidden_colors": ["#DC2828"],
        "color_tolerance": 12,
        "fonts": ["Inter"],
        "banned_terms": ["cheapest", "guaranteed", "miracle"],
        "aspect_ratios": ["1:1", "4:5", "16:9"],
        "min_text_contrast": 3.0,
        "quality": {"min_palette_adherence": 0.6},
    }


class _Canvas:
    """A supersampled drawing surface addressed in target-resolution pixel units."""

    def __init__(self, background: Image.Image, size: int) -> None:
        self.size = size
        self.image = background
        self.draw = ImageDraw.Draw(self.image)

    def px(self, fraction: float) -> int:
        return max(1, round(fraction * self.size))

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, ...]:
        s = SUPERSAMPLE
        return (x0 * s, y0 * s, x1 * s - 1, y1 * s - 1)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: str) -> None:
        # Integer pixel coordinates: straight edges land on pixel borders and stay pure colour.
        self.draw.rectangle(self._box(x0, y0, x1, y1), fill=_RGB[color])

    def rounded(self, x0: int, y0: int, x1: int, y1: int, color: str, radius: float) -> None:
        self.draw.rounded_rectangle(
            self._box(x0, y0, x1, y1), radius=radius * SUPERSAMPLE, fill=_RGB[color]
        )

    def circle(self, cx: float, cy: float, r: float, color: str) -> None:
        self.draw.ellipse(self._box(cx - r, cy - r, cx + r, cy + r), fill=_RGB[color])

    def triangle(self, x0: int, y0: int, x1: int, y1: int, color: str, up: bool) -> None:
        s = SUPERSAMPLE
        xm = (x0 + x1) / 2
        pts = [(x0, y1), (x1, y1), (xm, y0)] if up else [(x0, y0), (x1, y0), (xm, y1)]
        self.draw.polygon([(x * s, y * s) for x, y in pts], fill=_RGB[color])

    def stripes(
        self, x0: int, y0: int, x1: int, y1: int, color: str, *, horizontal: bool, period: int
    ) -> None:
        if horizontal:
            for y in range(y0, y1, period):
                self.rect(x0, y, x1, y + 1, color)
        else:
            for x in range(x0, x1, period):
                self.rect(x, y0, x + 1, y1, color)

    def dots(self, x0: int, y0: int, x1: int, y1: int, color: str, *, spacing: int) -> None:
        # 2x2 px dots on the pixel grid: round at 4x, still mostly pure colour after the filter.
        for y in range(y0, y1 - 1, spacing):
            for x in range(x0, x1 - 1, spacing):
                self.circle(x + 1, y + 1, 1.1, color)


def _choice(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _weighted_color(rng: np.random.Generator, exclude: set[str], power: float = 1.0) -> str:
    names = [c.name for c in PALETTE if c.name not in exclude]
    weights = np.array([c.share for c in PALETTE if c.name not in exclude]) ** power
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> np.ndarray:
    return np.array(a, dtype=np.float64) * (1 - t) + np.array(b, dtype=np.float64) * t


def _background(rng: np.random.Generator, size: int) -> tuple[Image.Image, set[str], str]:
    """A solid or gradient background; returns the image, its colours and its caption phrase."""
    big = size * SUPERSAMPLE
    # Backgrounds favour the big-share colours more strongly than the shares themselves: the
    # foreground elements (buttons in the accent especially) add the smaller colours back.
    main = _weighted_color(rng, set(), power=2.0)
    kind = _choice(rng, ("solid", "solid", "tonal", "blend"))
    if kind == "solid":
        return Image.new("RGB", (big, big), _RGB[main]), {main}, f"{main} background"

    direction = _choice(rng, ("vertical", "horizontal", "diagonal"))
    ys, xs = np.mgrid[0:big, 0:big] / (big - 1)
    along = {"vertical": ys, "horizontal": xs, "diagonal": (xs + ys) / 2}[direction]
    if rng.random() < 0.5:
        along = 1 - along
    if kind == "tonal":
        # A shade of one colour: the far end stays within the brand's colour tolerance.
        toward = (0, 0, 0) if main == "white" else (255, 255, 255)
        start, end = _mix(_RGB[main], toward, 0), _mix(_RGB[main], toward, 0.08)
        t = along[..., None]
        colours = {main}
        phrase = f"{main} {direction} gradient background"
    else:
        # Two brand colours meeting in a narrow soft band, so nearly every pixel is on palette.
        other = _weighted_color(rng, {main})
        start, end = _mix(_RGB[main], _RGB[other], 0), _mix(_RGB[main], _RGB[other], 1)
        edge = rng.uniform(0.35, 0.65)
        t = np.clip((along - edge) / 0.08 + 0.5, 0, 1)[..., None]
        colours = {main, other}
        phrase = f"{main} to {other} {direction} gradient background"
    pixels = start * (1 - t) + end * t
    image = Image.fromarray(np.round(pixels).astype(np.uint8))
    return image, colours, phrase


def _shape(
    canvas: _Canvas, rng: np.random.Generator, box: tuple[int, int, int, int], color: str
) -> str:
    kind = _choice(rng, SHAPES)
    x0, y0, x1, y1 = box
    if kind == "circle":
        canvas.circle((x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2, color)
    elif kind == "square":
        canvas.rect(x0, y0, x1, y1, color)
    else:
        canvas.triangle(x0, y0, x1, y1, color, up=bool(rng.random() < 0.75))
    return kind


def _square_box(cx: int, cy: int, side: int) -> tuple[int, int, int, int]:
    x0, y0 = cx - side // 2, cy - side // 2
    return (x0, y0, x0 + side, y0 + side)


def _button_color(local: set[str]) -> str:
    return _ACCENT if _ACCENT not in local else ("teal" if "teal" not in local else "white")


def _text_lines(
    canvas: _Canvas, rng: np.random.Generator, x0: int, y0: int, x1: int, y1: int, color: str
) -> None:
    """Headline copy stand-ins: one or two 1 px lines inside a bar or card."""
    n = 1 + int(rng.integers(2)) if y1 - y0 >= 6 else 1
    for i in range(n):
        y = y0 + 2 + 2 * i
        if y >= y1 - 1:
            break
        width = max(2, round((x1 - x0 - 4) * rng.uniform(0.5, 0.9)))
        canvas.rect(x0 + 2, y, x0 + 2 + width, y + 1, color)


def _banner(canvas: _Canvas, rng: np.random.Generator, bg: set[str]) -> list[str]:
    r = canvas.size
    top = rng.random() < 0.5
    h = int(rng.integers(canvas.px(0.2), canvas.px(0.32) + 1))
    bar = _weighted_color(rng, bg)
    y0, y1 = (0, h) if top else (r - h, r)
    canvas.rect(0, y0, r, y1, bar)
    _text_lines(canvas, rng, 0, y0, r, y1, _weighted_color(rng, {bar}))
    phrases = [f"{bar} headline bar at the {'top' if top else 'bottom'}"]

    free0, free1 = (h, r) if top else (0, r - h)
    left = rng.random() < 0.5
    side = min(
        free1 - free0 - canvas.px(0.1), int(rng.integers(canvas.px(0.35), canvas.px(0.5) + 1))
    )
    cx = canvas.px(rng.uniform(0.22, 0.32)) if left else r - canvas.px(rng.uniform(0.22, 0.32))
    color = _weighted_color(rng, bg)
    shape = _shape(canvas, rng, _square_box(cx, (free0 + free1) // 2, side), color)
    phrases.append(f"{color} {shape} on the {'left' if left else 'right'}")

    button = _button_color(bg)
    bw, bh = canvas.px(rng.uniform(0.25, 0.35)), max(3, canvas.px(0.12))
    bx = r - bw - canvas.px(0.1) if left else canvas.px(0.1)
    by = (free0 + free1 - bh) // 2
    canvas.rounded(bx, by, bx + bw, by + bh, button, radius=bh / 2.5)
    phrases.append(f"{button} button")
    return phrases


def _product_card(canvas: _Canvas, rng: np.random.Generator, bg: set[str]) -> list[str]:
    r = canvas.size
    card = _weighted_color(rng, bg)
    w = int(rng.integers(canvas.px(0.55), canvas.px(0.75) + 1))
    margin_y = int(rng.integers(canvas.px(0.06), canvas.px(0.14) + 1))
    place = _choice(rng, ("left", "center", "right"))
    x0 = {"left": canvas.px(0.08), "center": (r - w) // 2, "right": r - w - canvas.px(0.08)}[place]
    x1, y0, y1 = x0 + w, margin_y, r - margin_y
    canvas.rounded(x0, y0, x1, y1, card, radius=max(1.5, w / 10))
    where = "in the center" if place == "center" else f"on the {place}"
    phrases = [f"{card} product card {where}"]

    product = _weighted_color(rng, {card})
    side = round(w * rng.uniform(0.45, 0.6))
    cy = y0 + round((y1 - y0) * 0.38)
    phrases.append(
        f"{product} {_shape(canvas, rng, _square_box((x0 + x1) // 2, cy, side), product)}"
    )

    button = _button_color({card})
    bh = max(3, canvas.px(0.12))
    inset = max(2, round(w * rng.uniform(0.15, 0.25)))
    canvas.rounded(x0 + inset, y1 - bh - 2, x1 - inset, y1 - 2, button, radius=bh / 2.5)
    phrases.append(f"{button} button")
    return phrases


def _social_tile(canvas: _Canvas, rng: np.random.Generator, bg: set[str]) -> list[str]:
    r = canvas.size
    color = _weighted_color(rng, bg)
    side = int(rng.integers(canvas.px(0.45), canvas.px(0.7) + 1))
    spots = {
        "center": (r // 2, r // 2),
        "top left": (canvas.px(0.4), canvas.px(0.4)),
        "bottom right": (r - canvas.px(0.4), r - canvas.px(0.4)),
        "top right": (r - canvas.px(0.4), canvas.px(0.4)),
        "bottom left": (canvas.px(0.4), r - canvas.px(0.4)),
    }
    spot = _choice(rng, tuple(spots))
    shape = _shape(canvas, rng, _square_box(*spots[spot], side), color)
    where = "in the center" if spot == "center" else f"at the {spot}"
    phrases = [f"big {color} {shape} {where}"]

    deco = _weighted_color(rng, bg | {color}) if len(bg | {color}) < len(PALETTE) else color
    patch = canvas.px(0.3)
    # The decoration goes in the corner opposite the shape (or any corner when it is central).
    corner = {
        "top left": "bottom right",
        "bottom right": "top left",
        "top right": "bottom left",
        "bottom left": "top right",
    }.get(spot, _choice(rng, ("top left", "top right", "bottom left", "bottom right")))
    px0 = 1 if "left" in corner else r - patch - 1
    py0 = 1 if "top" in corner else r - patch - 1
    if rng.random() < 0.5:
        canvas.dots(px0, py0, px0 + patch, py0 + patch, deco, spacing=3 + int(rng.integers(2)))
        phrases.append(f"{deco} dots at the {corner}")
    else:
        horizontal = bool(rng.random() < 0.5)
        canvas.stripes(px0, py0, px0 + patch, py0 + patch, deco, horizontal=horizontal, period=2)
        phrases.append(f"{deco} stripes at the {corner}")
    return phrases


def _poster(canvas: _Canvas, rng: np.random.Generator, bg: set[str]) -> list[str]:
    r = canvas.size
    bar = _weighted_color(rng, bg)
    h = int(rng.integers(canvas.px(0.15), canvas.px(0.22) + 1))
    canvas.rect(0, 0, r, h, bar)
    _text_lines(canvas, rng, 0, 0, r, h, _weighted_color(rng, {bar}))
    phrases = [f"{bar} headline bar at the top"]

    color = _weighted_color(rng, bg)
    band = canvas.px(0.18)
    side = min(r - h - band - 2, int(rng.integers(canvas.px(0.4), canvas.px(0.55) + 1)))
    cx = r // 2 + int(rng.integers(-canvas.px(0.15), canvas.px(0.15) + 1))
    shape = _shape(canvas, rng, _square_box(cx, (h + r - band) // 2, side), color)
    phrases.append(f"{color} {shape}")

    footer = _weighted_color(rng, bg)
    if rng.random() < 0.5:
        canvas.stripes(0, r - band, r, r, footer, horizontal=True, period=2)
        phrases.append(f"{footer} stripes at the bottom")
    else:
        canvas.rect(0, r - band, r, r, footer)
        button = _button_color({footer})
        bw = canvas.px(0.35)
        canvas.rounded((r - bw) // 2, r - band + 1, (r + bw) // 2, r - 1, button, radius=band / 3)
        phrases.append(f"{footer} footer with a {button} button")
    return phrases


_DRAW = {
    "banner": _banner,
    "product card": _product_card,
    "social tile": _social_tile,
    "poster": _poster,
}


def draw_visual(
    rng: np.random.Generator, *, resolution: int, trigger: str
) -> tuple[Image.Image, str]:
    """Draw one on-brand visual at `resolution` px; returns the RGB image and its caption."""
    layout = _choice(rng, LAYOUTS)
    background, bg_colors, bg_phrase = _background(rng, resolution)
    canvas = _Canvas(background, resolution)
    phrases = _DRAW[layout](canvas, rng, bg_colors)
    image = canvas.image.resize((resolution, resolution), Image.Resampling.BOX)
    caption = ", ".join([f"{trigger} {layout}", bg_phrase, *phrases])
    return image, caption


def _png_bytes_path(image: Image.Image, path: Path) -> None:
    # Fixed options and no text chunks, so the same pixels give the same bytes on every run.
    image.save(path, format="PNG", optimize=False, compress_level=6)


def generate_demo_brand(
    out_dir: Path, *, name: str, n_images: int, resolution: int, seed: int
) -> int:
    """Write the demo brand (brand.yaml, images/, metadata.jsonl) into `out_dir`; returns the count.

    Image i depends only on (seed, i), so a larger `n_images` adds images without changing the
    existing ones.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "brand.yaml").write_text(yaml.safe_dump(demo_brand_kit(name), sort_keys=False))
    (out_dir / "prompt_set.yaml").write_text(DEMO_EVAL_PROMPTS)
    lines = []
    for i in tqdm(range(n_images), desc=f"demo brand {name}", unit="img"):
        image, caption = draw_visual(
            np.random.default_rng([seed, i]), resolution=resolution, trigger=name
        )
        file_name = f"images/{name}-{i:05d}.png"
        _png_bytes_path(image, out_dir / file_name)
        lines.append(json.dumps({"file_name": file_name, "text": caption}))
    (out_dir / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return n_images


def run(params: Params, *, root: Path) -> Path:
    """Generate `data.demo_brand` under `data.brands_dir`, replacing whatever was there."""
    target = Path(root) / params.data.brands_dir / params.data.demo_brand
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and swap it in, so an interrupted run never leaves a mix of old and
    # new images (and images from an earlier, larger run do not linger).
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the brand folder is ordinary project data
    try:
        n = generate_demo_brand(
            tmp,
            name=params.data.demo_brand,
            n_images=params.data.demo.n_images,
            resolution=params.base.resolution,
            seed=params.data.demo.seed,
        )
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "demo brand %s: %d images at %d px in %s",
        params.data.demo_brand,
        n,
        params.base.resolution,
        target,
    )
    return target
