"""Compose a campaign's final asset: the generated image as background, the brand's logo and text
drawn on top by code (text never comes from the diffusion model).

Pure: PIL images and a brand kit in, a PIL image out; no HTTP, no database. Where things go comes
from the kit's `layouts:` (brand.yaml), else `brandforge.brandkit.default_layout`. Text colours
are chosen so the result passes `evaluation.compliance.compliance_report` for text contrast in
the returned `text_boxes`: a palette colour when one contrasts enough with the pixels behind the
text, else a plate behind it, else black or white (the only colours outside the palette compose
ever draws, and only when no palette pair reaches the brand's minimum contrast). Fitting the
text into its box is `serving.delivery.typeset`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from brandforge.brandkit import Box, BrandKit, BrandKitError, LogoRules, TextBox, parse_ratio
from brandforge.wcag import contrast_ratio, relative_luminance
from evaluation.text_regions import region_contrast
from serving.delivery.typeset import PAD_X, PAD_Y, Font, PixelBox, fit_text, line_metrics

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]

# Black and white: the fallback when no palette colour (pair) reaches the brand's contrast.
_NEUTRALS: tuple[tuple[str, RGB], ...] = (("black", (0, 0, 0)), ("white", (255, 255, 255)))
# The pixels behind the text are judged by these luminance percentiles, not their extremes:
# a few stray pixels do not decide the colour, and region_contrast checks the result anyway.
_BEHIND_PERCENTILES = (2.0, 98.0)


class BrandAssetError(BrandKitError):
    """A file the brand kit names (logo, font) is missing or unreadable."""


@dataclass(frozen=True)
class Composition:
    image: Image.Image  # RGB, the output size
    text_boxes: list[PixelBox]  # where text was drawn (with its plate), for compliance_report
    logo_box: PixelBox | None
    layout: dict[str, Any]  # what was used (layout, sizes, colours), for the asset's settings


def output_size(ratio: str, long_side: int) -> tuple[int, int]:
    """Pixel size (width, height) of an asset of `ratio` whose longer side is `long_side`.

    Both sides are multiples of 8 (what the diffusion model and video encoders want): the short
    side is rounded to the nearest multiple, so the ratio holds within 4 pixels.
    """
    if long_side < 8 or long_side % 8:
        raise ValueError(f"long_side must be a positive multiple of 8, got {long_side}")
    width, height = parse_ratio(ratio)
    short = max(8, round(long_side * min(width, height) / max(width, height) / 8) * 8)
    return (long_side, short) if width >= height else (short, long_side)


def fit_background(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Cover-crop the generated image to the output's aspect ratio (centred) and resize it."""
    return ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS)


def load_brand_assets(kit: BrandKit, brand_dir: Path) -> tuple[Image.Image | None, Path | None]:
    """The brand's logo (RGBA) and font file from its folder, as `logo.file` and `font_file`
    name them; (None, None) for what the kit does not name."""
    brand_dir = Path(brand_dir)
    logo: Image.Image | None = None
    if kit.logo is not None:
        path = brand_dir / kit.logo.file
        if not path.is_file():
            raise BrandAssetError(
                f"{path}: logo file not found (brand.yaml logo.file: {kit.logo.file!r})"
            )
        try:
            with Image.open(path) as opened:
                logo = opened.convert("RGBA")
        except (UnidentifiedImageError, OSError) as err:
            raise BrandAssetError(f"{path}: cannot read the logo as an image ({err})") from None
    font_path: Path | None = None
    if kit.font_file is not None:
        font_path = brand_dir / kit.font_file
        if not font_path.is_file():
            raise BrandAssetError(
                f"{font_path}: font file not found (brand.yaml font_file: {kit.font_file!r})"
            )
        _load_font(font_path, 12)  # fail here, not mid-campaign
    return logo, font_path


def compose(
    background: Image.Image,
    kit: BrandKit,
    *,
    ratio: str,
    headline: str | None,
    cta: str | None,
    logo: Image.Image | None,
    font_path: Path | None,
) -> Composition:
    """Draw the logo, headline and call to action on a background of the ratio's shape.

    The layout is the kit's for `ratio`, else the default one. Texts are fitted to their boxes
    (largest size that fits, words wrapped; truncated with an ellipsis only at the minimum size)
    and coloured to meet `kit.min_text_contrast`; the logo is fitted to its box keeping its
    shape, within the kit's logo width shares.
    """
    width, height = background.size
    rw, rh = parse_ratio(ratio)
    # output_size rounds the short side to a multiple of 8: up to 4 px off the exact ratio
    if abs(width * rh - height * rw) > max(4.5, 0.01 * min(width, height)) * max(rw, rh):
        raise ValueError(
            f"background is {width}x{height}, not {ratio}; fit it with fit_background first"
        )
    layout = kit.layout_for(ratio)
    canvas = background.convert("RGB")  # a copy: the caller's image is left alone
    settings: dict[str, Any] = {
        "ratio": ratio,
        "size": [width, height],
        "layout_source": "brand kit" if ratio in kit.layouts else "default",
        "layout": layout.model_dump(),
        "font": str(font_path) if font_path is not None else _default_font_name(),
    }
    if font_path is None and kit.font_file is not None:
        logger.warning(
            "brand %s names font_file %s but none was passed; using the default font",
            kit.name,
            kit.font_file,
        )

    logo_box: PixelBox | None = None
    if logo is not None and layout.logo is not None:
        logo_box = _paste_logo(canvas, logo.convert("RGBA"), layout.logo, kit.logo)
        settings["logo"] = {"box": list(logo_box), "width_share": _share(logo_box, width)}
    elif logo is not None:
        logger.warning("layout for %s has no logo box; the logo was left out", ratio)
    elif kit.logo is not None:
        logger.warning("brand %s has a logo (%s) but none was passed", kit.name, kit.logo.file)

    def font_at(size: int) -> Font:
        return _load_font(font_path, size) if font_path is not None else _default_font(size)

    text_boxes: list[PixelBox] = []
    for name, text, spec in (("headline", headline, layout.headline), ("cta", cta, layout.cta)):
        if not text or not text.strip():
            continue
        if spec is None:
            raise ValueError(f"a {name} was given but the {ratio} layout has no {name} box")
        box, used = _draw_text(canvas, text, spec, kit=kit, font_at=font_at, what=name)
        text_boxes.append(box)
        settings[name] = used
    return Composition(image=canvas, text_boxes=text_boxes, logo_box=logo_box, layout=settings)


# ---------------------------------------------------------------------------------------------
# Logo


def _pixels(box: Box, size: tuple[int, int]) -> PixelBox:
    width, height = size
    return (
        round(box.x * width),
        round(box.y * height),
        round((box.x + box.w) * width),
        round((box.y + box.h) * height),
    )


def _share(box: PixelBox, width: int) -> float:
    return round((box[2] - box[0]) / width, 4)


def _paste_logo(
    canvas: Image.Image, logo: Image.Image, box: Box, rules: LogoRules | None
) -> PixelBox:
    """Fit the logo inside its box keeping its shape, pinned to the box's side nearest the image
    edge (a bottom-right box keeps the logo in the corner); its width is then held within the
    kit's min/max width shares, growing or shrinking away from that edge."""
    width, height = canvas.size
    x0, y0, x1, y1 = _pixels(box, canvas.size)
    aspect = logo.width / logo.height
    logo_w = min(x1 - x0, (y1 - y0) * aspect)
    if rules is not None:
        logo_w = min(max(logo_w, rules.min_width_share * width), rules.max_width_share * width)
    logo_w = max(1, round(logo_w))
    logo_h = max(1, round(logo_w / aspect))
    placement = box.placement
    if placement == "center":
        left, top = (x0 + x1 - logo_w) // 2, (y0 + y1 - logo_h) // 2
    else:
        left = x0 if placement.endswith("left") else x1 - logo_w
        top = y0 if placement.startswith("top") else y1 - logo_h
    left = min(max(left, 0), width - logo_w)
    top = min(max(top, 0), height - logo_h)
    resized = logo.resize((logo_w, logo_h), Image.Resampling.LANCZOS)
    canvas.paste(resized.convert("RGB"), (left, top), resized.getchannel("A"))
    return (left, top, left + logo_w, top + logo_h)


# ---------------------------------------------------------------------------------------------
# Text


@lru_cache(maxsize=256)
def _default_font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _default_font_name() -> str:
    family, style = _default_font(12).getname()  # type: ignore[union-attr]
    return f"Pillow default ({family} {style})"


@lru_cache(maxsize=256)
def _load_font(path: Path, size: int) -> Font:
    try:
        return ImageFont.truetype(str(path), size)
    except OSError as err:
        raise BrandAssetError(f"{path}: cannot read the font file ({err})") from None


def _palette(kit: BrandKit) -> list[tuple[str, RGB]]:
    return [(c.name, c.rgb) for c in kit.palette]


def _behind(canvas: Image.Image, box: PixelBox) -> tuple[RGB, RGB]:
    """The darkest and lightest colours behind a box (luminance percentiles)."""
    pixels = np.asarray(canvas.crop(box)).reshape(-1, 3)
    luminance = np.asarray(relative_luminance(pixels))
    order = np.argsort(luminance)
    low, high = (order[round(p / 100 * (len(order) - 1))] for p in _BEHIND_PERCENTILES)
    return (
        tuple(int(v) for v in pixels[low]),  # type: ignore[return-value]
        tuple(int(v) for v in pixels[high]),
    )


def _worst_contrast(colour: RGB, behind: tuple[RGB, RGB]) -> float:
    """Contrast of a text colour with the pixels behind it, at their least: 1 when the colour's
    luminance lies within theirs (some pixel behind matches it)."""
    dark, light = behind
    level = relative_luminance(colour)
    if relative_luminance(dark) <= level <= relative_luminance(light):
        return 1.0
    return min(contrast_ratio(colour, dark), contrast_ratio(colour, light))


def _draw_text(
    canvas: Image.Image,
    text: str,
    spec: TextBox,
    *,
    kit: BrandKit,
    font_at: Callable[[int], Font],
    what: str,
) -> tuple[PixelBox, dict[str, Any]]:
    """Fit, colour and draw one text; returns its box (text and padding, or its plate)."""
    height = canvas.height
    area = _pixels(spec.box, canvas.size)
    low = max(6, round(spec.min_size * height))
    high = max(low, round(spec.max_size * height))
    try:
        fit = fit_text(text, area, low, high, font_at)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None
    font = font_at(fit.size)
    pad_x, pad_y = round(PAD_X * fit.size), round(PAD_Y * fit.size)
    line_h, spacing = line_metrics(font, fit.size)
    widths = [font.getlength(line) for line in fit.lines]
    block_w = round(max(widths))
    block_h = len(fit.lines) * fit.line_height - spacing
    inner = (area[0] + pad_x, area[1] + pad_y, area[2] - pad_x, area[3] - pad_y)
    if spec.valign == "top":
        top = inner[1]
    elif spec.valign == "bottom":
        top = inner[3] - block_h
    else:
        top = (inner[1] + inner[3] - block_h) // 2
    if spec.align == "left":
        left = inner[0]
    elif spec.align == "right":
        left = inner[2] - block_w
    else:
        left = (inner[0] + inner[2] - block_w) // 2
    box = (left - pad_x, top - pad_y, left + block_w + pad_x, top + block_h + pad_y)
    box = (max(box[0], area[0]), max(box[1], area[1]), min(box[2], area[2]), min(box[3], area[3]))

    def render(target: Image.Image, colour: RGB, plate: RGB | None) -> None:
        draw = ImageDraw.Draw(target)
        if plate is not None:
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=plate)
        for i, (line, line_w) in enumerate(zip(fit.lines, widths, strict=True)):
            if spec.align == "left":
                x: float = left
            elif spec.align == "right":
                x = left + block_w - line_w
            else:
                x = left + (block_w - line_w) / 2
            draw.text((x, top + i * fit.line_height), line, font=font, fill=colour, anchor="la")

    colour, plate, measured = _choose_colours(canvas, box, spec, kit, render, what)
    render(canvas, colour[1], plate[1] if plate else None)
    used = {
        "text": " ".join(fit.lines),
        "lines": fit.lines,
        "size_px": fit.size,
        "truncated": fit.truncated,
        "color": _hex(colour[1]),
        "color_name": colour[0],
        "plate": _hex(plate[1]) if plate else None,
        "plate_name": plate[0] if plate else None,
        "contrast": round(measured, 2),
        "box": list(box),
    }
    return box, used


def _hex(rgb: RGB) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


Named = tuple[str, RGB]


def _choose_colours(
    canvas: Image.Image,
    box: PixelBox,
    spec: TextBox,
    kit: BrandKit,
    render: Callable[[Image.Image, RGB, RGB | None], None],
    what: str,
) -> tuple[Named, Named | None, float]:
    """Text colour and plate (None: no plate), in order of preference: palette text on the
    background; palette text on a palette plate; black or white text on the background; on a
    palette plate; palette text on a black or white plate; black on white or white on black.
    The layout's `color` and `background` fix the text or plate colour. Within a step the pair
    with the highest contrast wins; each choice is rendered and measured with region_contrast
    (what compliance_report does), because stripes or photos behind text can defeat it."""
    palette = _palette(kit)
    by_name = dict(palette)
    floor = kit.min_text_contrast
    texts = [(spec.color, by_name[spec.color])] if spec.color else palette
    plates = [(spec.background, by_name[spec.background])] if spec.background else palette
    neutral_texts = [] if spec.color else list(_NEUTRALS)
    neutral_plates = [] if spec.background else list(_NEUTRALS)
    no_plate: list[Named | None] = [None]
    steps: list[tuple[list[Named], list[Named | None]]] = []
    if not spec.background:
        steps.append((texts, no_plate))
    steps.append((texts, list(plates)))
    if neutral_texts and not spec.background:
        steps.append((neutral_texts, no_plate))
    if neutral_texts:
        steps.append((neutral_texts, list(plates)))
    if neutral_plates:
        steps.append((texts, list(neutral_plates)))
    if neutral_texts and neutral_plates:
        steps.append((neutral_texts, list(neutral_plates)))

    behind = _behind(canvas, box)
    best: tuple[float, Named, Named | None] | None = None
    busy = False  # the background defeated text without a plate once: plates from then on
    for step_texts, step_plates in steps:
        if busy and step_plates == no_plate:
            continue
        pairs: list[tuple[float, Named, Named | None]] = []
        for text in step_texts:
            for plate in step_plates:
                if plate is not None and plate[1] == text[1]:
                    continue
                predicted = (
                    _worst_contrast(text[1], behind)
                    if plate is None
                    else contrast_ratio(text[1], plate[1])
                )
                pairs.append((predicted, text, plate))
        pairs.sort(key=lambda p: -p[0])
        for predicted, text, plate in pairs:
            if predicted < floor:
                break
            trial = canvas.copy()
            render(trial, text[1], plate[1] if plate else None)
            measured = region_contrast(np.asarray(trial), box).contrast
            if best is None or measured > best[0]:
                best = (measured, text, plate)
            if measured >= floor:
                return text, plate, measured
            if plate is None:
                busy = True
                break
    if best is None:  # nothing predicted to pass: the highest contrast on offer
        fallback = [
            (contrast_ratio(t[1], p[1]), t, p)
            for t in texts + neutral_texts
            for p in plates + neutral_plates
            if t[1] != p[1]
        ]
        best = max(fallback, key=lambda p: p[0]) if fallback else (1.0, texts[0], None)
    logger.warning(
        "%s: no colour choice reaches the brand's text contrast %.2f:1; the best is %.2f:1",
        what,
        floor,
        best[0],
    )
    return best[1], best[2], best[0]
