"""Composed assets: a background with the brand's logo and text on top, checked with the
evaluation package the way the compliance gate checks them."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from brandforge.brandkit import Box, BrandKit, load_brand_kit
from evaluation.compliance import compliance_report
from evaluation.logo import logo_placement
from evaluation.text_regions import region_contrast
from serving.delivery.compose import (
    BrandAssetError,
    compose,
    fit_background,
    load_brand_assets,
    output_size,
)

TEAL, WHITE, ORANGE = (0x1A, 0x9E, 0x9E), (0xF5, 0xF5, 0xF5), (0xF5, 0x8C, 0x1E)
DARK = (16, 24, 32)
LONG_SIDE = 400  # small: find_logo in compliance_report dominates the runtime
PALETTE = [
    {"name": "teal", "hex": "#1A9E9E", "role": "primary"},
    {"name": "white", "hex": "#F5F5F5", "role": "background"},
    {"name": "orange", "hex": "#F58C1E", "role": "accent"},
]
LOGO_RULES = {
    "file": "logo.png",
    "placement": ["bottom-right", "top-left"],
    "min_width_share": 0.08,
    "max_width_share": 0.3,
}
LAYOUTS = {
    "1:1": {
        "logo": {"x": 0.05, "y": 0.05, "w": 0.2, "h": 0.12},
        "headline": {
            "box": {"x": 0.3, "y": 0.05, "w": 0.65, "h": 0.3},
            "align": "right",
            "valign": "top",
            "max_size": 0.09,
            "min_size": 0.04,
        },
        "cta": {
            "box": {"x": 0.05, "y": 0.8, "w": 0.45, "h": 0.15},
            "align": "center",
            "max_size": 0.06,
            "min_size": 0.03,
            "background": "orange",
        },
    },
    "9:16": {
        "safe_margin": 0.06,
        "logo": {"x": 0.7, "y": 0.86, "w": 0.24, "h": 0.1},
        "headline": {
            "box": {"x": 0.06, "y": 0.1, "w": 0.88, "h": 0.3},
            "align": "center",
            "valign": "top",
            "max_size": 0.07,
            "min_size": 0.03,
        },
        "cta": {"box": {"x": 0.06, "y": 0.86, "w": 0.5, "h": 0.1}, "max_size": 0.045},
    },
}
HEADLINE = "Summer sale on everything teal"
CTA = "Shop now"


def make_logo() -> Image.Image:
    """A navy badge with an orange disc and two bars, on transparency (RGBA)."""
    logo = Image.new("RGBA", (240, 120), (0, 0, 0, 0))
    draw = ImageDraw.Draw(logo)
    draw.rounded_rectangle((0, 0, 239, 119), radius=24, fill=(0x1F, 0x2A, 0x44, 255))
    draw.ellipse((16, 16, 104, 104), fill=(*ORANGE, 255))
    draw.rectangle((120, 30, 220, 50), fill=(*WHITE, 255))
    draw.rectangle((120, 70, 190, 90), fill=(*TEAL, 255))
    return logo


def write_brand(folder: Path, **extra) -> Path:
    """A brand folder: brand.yaml (palette, logo rules, `extra` keys) and logo.png."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = {"name": "acme", "palette": PALETTE, "logo": LOGO_RULES, **extra}
    (folder / "brand.yaml").write_text(yaml.safe_dump(raw))
    make_logo().save(folder / "logo.png")
    return folder


@pytest.fixture(scope="module")
def brand_dir(tmp_path_factory) -> Path:
    return write_brand(tmp_path_factory.mktemp("acme"), layouts=LAYOUTS)


@pytest.fixture(scope="module")
def plain_brand_dir(tmp_path_factory) -> Path:
    """The same brand with no layouts: every ratio uses default_layout."""
    return write_brand(tmp_path_factory.mktemp("plain"))


def background(kind: str, size: tuple[int, int]) -> Image.Image:
    """Backgrounds standing in for the generator's: flat brand teal, busy diagonal stripes of
    the three brand colours, and a dark and a light one."""
    width, height = size
    if kind == "busy":
        stripes = (np.add.outer(np.arange(height), np.arange(width)) // 18) % 3
        pixels = np.array([TEAL, ORANGE, WHITE], np.uint8)[stripes]
    else:
        colour = {"flat": TEAL, "dark": DARK, "light": WHITE}[kind]
        pixels = np.broadcast_to(np.array(colour, np.uint8), (height, width, 3))
    return Image.fromarray(np.ascontiguousarray(pixels))


def pixel_box(box: Box, size: tuple[int, int]) -> tuple[float, float, float, float]:
    width, height = size
    return (box.x * width, box.y * height, (box.x + box.w) * width, (box.y + box.h) * height)


def inside(inner, outer, slack: float = 1.0) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


@pytest.mark.parametrize(
    ("ratio", "long_side", "size"),
    [
        ("4:5", 1080, (864, 1080)),
        ("1:1", 1024, (1024, 1024)),
        ("9:16", 1920, (1080, 1920)),
        ("16:9", 1920, (1920, 1080)),
        ("3:2", 1000, (1000, 664)),
    ],
)
def test_output_size_keeps_the_ratio_in_multiples_of_8(ratio, long_side, size):
    assert output_size(ratio, long_side) == size
    assert all(side % 8 == 0 for side in size)


def test_output_size_rejects_a_bad_ratio_or_side():
    with pytest.raises(ValueError, match="'4x5' is not an aspect ratio"):
        output_size("4x5", 1080)
    with pytest.raises(ValueError, match="multiple of 8, got 1001"):
        output_size("1:1", 1001)


def test_fit_background_cover_crops_the_centre():
    # red | green | blue columns, 50 + 200 + 50 px wide: a square crop keeps only green
    pixels = np.zeros((200, 300, 4), np.uint8)
    pixels[:, :50] = (255, 0, 0, 255)
    pixels[:, 50:250] = (0, 255, 0, 255)
    pixels[:, 250:] = (0, 0, 255, 255)
    fitted = fit_background(Image.fromarray(pixels), (96, 96))
    assert fitted.size == (96, 96) and fitted.mode == "RGB"
    inner = np.asarray(fitted)[:, 2:-2].astype(int)  # Lanczos reads a pixel past the crop
    assert np.abs(inner - (0, 255, 0)).max() <= 2


# every background on one ratio, the others on a few: find_logo takes a second or two per image
CASES = [
    *[("layouts", "1:1", kind) for kind in ("flat", "busy", "dark", "light")],
    ("layouts", "9:16", "busy"),
    ("layouts", "9:16", "light"),
    ("plain", "4:5", "flat"),
    ("plain", "16:9", "dark"),
]


@pytest.mark.parametrize(("which", "ratio", "kind"), CASES)
def test_composed_asset_passes_the_contrast_and_logo_checks(
    brand_dir, plain_brand_dir, which, ratio, kind
):
    folder = brand_dir if which == "layouts" else plain_brand_dir
    kit = load_brand_kit(folder)
    logo, font_path = load_brand_assets(kit, folder)
    assert logo is not None and font_path is None
    size = output_size(ratio, LONG_SIDE)
    base = background(kind, size)

    comp = compose(
        base, kit, ratio=ratio, headline=HEADLINE, cta=CTA, logo=logo, font_path=font_path
    )

    assert comp.image.size == size and comp.image.mode == "RGB"
    assert comp.layout["layout_source"] == ("brand kit" if which == "layouts" else "default")
    image = np.asarray(comp.image)
    report = compliance_report(image, kit, logo=np.asarray(logo), text_boxes=comp.text_boxes)
    failed = {v.rule for v in report.violations}
    assert not failed & {"text_contrast", "logo_missing", "logo_placement", "logo_size"}, (
        report.violations
    )
    assert len(comp.text_boxes) == 2
    for box in comp.text_boxes:
        assert region_contrast(image, box).contrast >= kit.min_text_contrast
    # the logo is where the layout put it, at a size the kit allows
    layout = kit.layout_for(ratio)
    assert layout.logo is not None and comp.logo_box is not None
    assert report.metrics["logo"]["found"]
    assert report.metrics["logo"]["placement"] == layout.logo.placement
    assert logo_placement(comp.logo_box, image.shape) == layout.logo.placement
    share = report.metrics["logo"]["width_share"]
    assert kit.logo.min_width_share <= share <= kit.logo.max_width_share
    # text inside its layout box, boxes inside the safe margin, nothing drawn elsewhere
    safe = pixel_box(layout.safe_box(ratio), size)
    for name, box in zip(("headline", "cta"), comp.text_boxes, strict=True):
        assert inside(box, pixel_box(getattr(layout, name).box, size))
        assert inside(box, safe)
    assert inside(comp.logo_box, safe)
    untouched = np.ones(image.shape[:2], bool)
    for x0, y0, x1, y1 in [*comp.text_boxes, comp.logo_box]:
        untouched[y0:y1, x0:x1] = False
    assert np.array_equal(image[untouched], np.asarray(base)[untouched])
    if kind == "busy":  # text straight on stripes fails region_contrast: it gets a plate
        assert comp.layout["headline"]["plate"] is not None


def test_palette_colours_are_preferred_and_plated_when_no_single_one_contrasts(tmp_path):
    # With a lenient 2.5:1 floor white on teal (3.0:1) is enough on its own; on orange no
    # palette colour is (white 2.2:1, teal 1.35:1), but white and teal as text and plate are.
    kit = load_brand_kit(write_brand(tmp_path, min_text_contrast=2.5))
    hexes = {c.hex for c in kit.palette}
    size = output_size("1:1", 320)
    on_teal = compose(
        background("flat", size),
        kit,
        ratio="1:1",
        headline=HEADLINE,
        cta=None,
        logo=None,
        font_path=None,
    )
    used = on_teal.layout["headline"]
    assert used["color_name"] == "white" and used["plate"] is None
    orange = Image.new("RGB", size, ORANGE)
    on_orange = compose(
        orange, kit, ratio="1:1", headline=HEADLINE, cta=None, logo=None, font_path=None
    )
    used = on_orange.layout["headline"]
    assert {used["color"], used["plate"]} == {"#F5F5F5", "#1A9E9E"}
    assert used["plate"] in hexes
    box = on_orange.text_boxes[0]
    assert region_contrast(np.asarray(on_orange.image), box).contrast >= 2.5
    plate = next(c.rgb for c in kit.palette if c.hex == used["plate"])
    assert on_orange.image.getpixel((box[0] + 1, box[1] + 1)) == plate


def test_the_layouts_plate_colour_is_drawn_behind_the_cta(brand_dir):
    kit = load_brand_kit(brand_dir)
    size = output_size("1:1", LONG_SIDE)
    comp = compose(
        background("light", size),
        kit,
        ratio="1:1",
        headline=None,
        cta=CTA,
        logo=None,
        font_path=None,
    )
    (box,) = comp.text_boxes
    used = comp.layout["cta"]
    assert used["plate"] == "#F58C1E" and used["color_name"] == "black"  # 8.7:1 on orange
    assert comp.image.getpixel((box[0] + 1, box[1] + 1)) == ORANGE
    assert region_contrast(np.asarray(comp.image), box).contrast >= kit.min_text_contrast


def test_a_long_headline_is_shrunk_and_wrapped_and_cut_only_at_the_minimum_size(brand_dir, caplog):
    kit = load_brand_kit(brand_dir)
    spec = kit.layout_for("1:1").headline
    size = output_size("1:1", LONG_SIDE)
    largest, smallest = round(spec.max_size * size[1]), round(spec.min_size * size[1])

    short = compose(
        background("dark", size),
        kit,
        ratio="1:1",
        headline="Sale",
        cta=None,
        logo=None,
        font_path=None,
    )
    assert short.layout["headline"]["size_px"] == largest

    longer = "Summer sale: forty percent off every teal thing in the store"
    caplog.set_level(logging.WARNING, logger="serving.delivery.typeset")
    wrapped = compose(
        background("dark", size),
        kit,
        ratio="1:1",
        headline=longer,
        cta=None,
        logo=None,
        font_path=None,
    )
    used = wrapped.layout["headline"]
    assert smallest <= used["size_px"] < largest
    assert len(used["lines"]) > 1 and " ".join(used["lines"]) == longer
    assert not used["truncated"] and "truncated" not in caplog.text

    essay = " ".join(["Everything teal must go this weekend only"] * 12)
    cut = compose(
        background("dark", size),
        kit,
        ratio="1:1",
        headline=essay,
        cta=None,
        logo=None,
        font_path=None,
    )
    used = cut.layout["headline"]
    assert used["size_px"] == smallest and used["truncated"]
    assert used["lines"][-1].endswith("…")
    assert essay.startswith(used["text"].removesuffix("…").rstrip())
    assert "does not fit" in caplog.text and "truncated" in caplog.text
    box = cut.text_boxes[0]
    assert inside(box, pixel_box(spec.box, size))
    assert region_contrast(np.asarray(cut.image), box).contrast >= kit.min_text_contrast


def test_a_word_wider_than_the_box_is_split_at_the_minimum_size(brand_dir):
    kit = load_brand_kit(brand_dir)
    size = output_size("9:16", LONG_SIDE)
    word = "Supercalifragilisticexpialidocious" * 2
    comp = compose(
        background("dark", size),
        kit,
        ratio="9:16",
        headline=None,
        cta=word,
        logo=None,
        font_path=None,
    )
    used = comp.layout["cta"]
    assert len(used["lines"]) >= 2 and used["truncated"]
    assert inside(comp.text_boxes[0], pixel_box(kit.layout_for("9:16").cta.box, size))


def test_the_brands_own_font_is_used_when_given(tmp_path):
    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    folder = write_brand(tmp_path / "acme", font_file="fonts/DejaVuSans.ttf")
    (folder / "fonts").mkdir()
    shutil.copy(dejavu, folder / "fonts" / "DejaVuSans.ttf")
    kit = load_brand_kit(folder)
    logo, font_path = load_brand_assets(kit, folder)
    assert font_path == folder / "fonts" / "DejaVuSans.ttf"
    size = output_size("1:1", 320)

    def draw(font: Path | None):
        return compose(
            background("dark", size),
            kit,
            ratio="1:1",
            headline=HEADLINE,
            cta=None,
            logo=logo,
            font_path=font,
        )

    own, default = draw(font_path), draw(None)
    assert own.layout["font"] == str(font_path)
    assert "default" in default.layout["font"]
    assert not np.array_equal(np.asarray(own.image), np.asarray(default.image))
    box = own.text_boxes[0]
    assert region_contrast(np.asarray(own.image), box).contrast >= kit.min_text_contrast


def test_missing_or_unreadable_brand_files_are_errors_naming_the_file(tmp_path):
    folder = write_brand(tmp_path / "acme", font_file="brand.ttf")
    kit = load_brand_kit(folder)
    with pytest.raises(BrandAssetError, match=r"brand\.ttf: font file not found") as err:
        load_brand_assets(kit, folder)
    assert "font_file" in str(err.value)
    (folder / "brand.ttf").write_text("not a font")
    with pytest.raises(BrandAssetError, match=r"brand\.ttf: cannot read the font file"):
        load_brand_assets(kit, folder)

    (folder / "logo.png").unlink()
    with pytest.raises(BrandAssetError, match=r"logo\.png: logo file not found") as err:
        load_brand_assets(kit, folder)
    assert "logo.file" in str(err.value)
    (folder / "logo.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(BrandAssetError, match=r"logo\.png: cannot read the logo"):
        load_brand_assets(kit, folder)


def test_a_kit_without_logo_or_font_needs_no_files(tmp_path):
    kit = BrandKit.model_validate({"name": "bare", "palette": PALETTE})
    assert load_brand_assets(kit, tmp_path) == (None, None)
    size = output_size("16:9", 320)
    comp = compose(
        background("light", size),
        kit,
        ratio="16:9",
        headline=HEADLINE,
        cta=CTA,
        logo=None,
        font_path=None,
    )
    assert comp.logo_box is None and len(comp.text_boxes) == 2
    for box in comp.text_boxes:
        assert region_contrast(np.asarray(comp.image), box).contrast >= kit.min_text_contrast


def test_a_background_of_another_shape_is_rejected(brand_dir):
    kit = load_brand_kit(brand_dir)
    small = output_size("9:16", 320)  # (176, 320): 8-px rounding is not another shape
    assert small == (176, 320)
    assert (
        compose(
            background("flat", small),
            kit,
            ratio="9:16",
            headline=None,
            cta=None,
            logo=None,
            font_path=None,
        ).image.size
        == small
    )
    with pytest.raises(ValueError, match="not 9:16; fit it with fit_background"):
        compose(
            background("flat", (320, 320)),
            kit,
            ratio="9:16",
            headline=HEADLINE,
            cta=None,
            logo=None,
            font_path=None,
        )


@pytest.mark.parametrize("x", [0.0, 0.2, 0.35, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("y", [0.0, 0.2, 0.35, 0.5, 0.7, 0.9])
def test_a_boxs_placement_is_the_one_find_logo_would_report(x, y):
    box = Box(x=x, y=y, w=0.1, h=0.1)
    pixels = (round(x * 1000), round(y * 1000), round((x + 0.1) * 1000), round((y + 0.1) * 1000))
    assert box.placement == logo_placement(pixels, (1000, 1000, 3))
