import typing

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from brandforge import brandkit
from evaluation.logo import Placement, find_logo, logo_placement
from evaluation.palette import hex_to_rgb
from tests.evaluation.scenes import jpeg, photo_like


def make_logo(size: int = 200) -> np.ndarray:
    """A teal circle with an orange letter on a transparent background (RGBA)."""
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((4, 4, size - 5, size - 5), fill=(26, 158, 158, 255))
    font = ImageFont.load_default(size=int(size * 0.6))
    draw.text((size / 2, size / 2), "B", font=font, fill=(245, 140, 30, 255), anchor="mm")
    return np.asarray(canvas)


def paste(background: np.ndarray, logo: np.ndarray, share: float, xy) -> tuple[np.ndarray, tuple]:
    width = round(share * background.shape[1])
    height = round(width * logo.shape[0] / logo.shape[1])
    resized = Image.fromarray(logo).resize((width, height), Image.Resampling.LANCZOS)
    canvas = Image.fromarray(background).convert("RGBA")
    canvas.alpha_composite(resized, xy)
    box = (xy[0], xy[1], xy[0] + width, xy[1] + height)
    return np.asarray(canvas.convert("RGB")), box


PLACED = [
    # image size, logo width share, position (fractions of the free space), expected placement
    ((800, 600), 0.10, (0.05, 0.05), "top-left"),
    ((1024, 768), 0.22, (0.95, 0.9), "bottom-right"),
    ((640, 640), 0.06, (0.5, 0.5), "center"),
    ((1200, 800), 0.28, (0.97, 0.02), "top-right"),
    ((512, 512), 0.15, (0.02, 0.98), "bottom-left"),
]


@pytest.mark.parametrize(("size", "share", "where", "placement"), PLACED)
def test_logo_is_found_where_it_was_pasted(size, share, where, placement):
    width, height = size
    logo = make_logo()
    background = photo_like(width, height, seed=width)
    side = round(share * width)
    xy = (round(where[0] * (width - side)), round(where[1] * (height - side)))
    image, box = paste(background, logo, share, xy)

    match = find_logo(image, logo)
    assert match.found and match.score > 0.85
    assert match.box is not None and match.scale is not None
    assert max(abs(a - b) for a, b in zip(match.box, box, strict=True)) <= 3
    assert match.scale == pytest.approx(share, rel=0.05)
    assert logo_placement(match.box, image.shape) == placement

    absent = find_logo(background, logo)
    assert not absent.found and absent.box is None and absent.score < 0.5


def make_wordmark() -> np.ndarray:
    """Dark letters over an orange bar, transparent between and around them (RGBA)."""
    canvas = Image.new("RGBA", (300, 100), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 70, 300, 84), fill=(245, 140, 30, 255))
    font = ImageFont.load_default(size=60)
    draw.text((150, 35), "BRAND", font=font, fill=(27, 42, 74, 255), anchor="mm")
    return np.asarray(canvas)


@pytest.mark.parametrize("busy", [False, True], ids=["gradient", "photo"])
def test_wordmark_is_found_whole_not_by_a_part(busy):
    logo = make_wordmark()
    if busy:
        background = photo_like(800, 600, seed=11)
    else:
        ramp = np.linspace(0, 1, 800)[None, :, None]
        sky = np.array(hex_to_rgb("#DDEEFF")) * (1 - ramp) + np.array(hex_to_rgb("#F5F5F5")) * ramp
        background = np.broadcast_to(sky, (600, 800, 3)).round().astype(np.uint8)
    image, box = paste(background, logo, 0.2, (420, 440))
    match = find_logo(image, logo)
    assert match.found and match.box is not None
    # a shrunken wordmark matches its own last letters; the whole must win
    assert max(abs(a - b) for a, b in zip(match.box, box, strict=True)) <= 3
    assert not find_logo(background, logo).found


def test_logo_is_found_in_a_jpeg():
    logo = make_logo()
    background = photo_like(800, 600, seed=5)
    image, box = paste(background, logo, 0.1, (90, 400))
    match = find_logo(jpeg(image, quality=70), logo)
    assert match.found and match.box is not None
    assert max(abs(a - b) for a, b in zip(match.box, box, strict=True)) <= 3


def test_logo_transparency_is_ignored_in_the_match():
    logo = make_logo()
    flattened = np.asarray(Image.fromarray(logo).convert("RGB"))  # transparent -> black corners
    for shade in (235, 40):
        image, box = paste(np.full((600, 800, 3), shade, np.uint8), logo, 0.12, (600, 420))
        assert find_logo(image, logo).found
    # without the mask the black corners must match too, which they do not on a light background
    light, _ = paste(np.full((600, 800, 3), 235, np.uint8), logo, 0.12, (600, 420))
    assert find_logo(light, flattened).score < find_logo(light, logo).score - 0.3


def test_one_colour_logo_is_found_by_its_shape_and_colour():
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    star = [(80, 5), (100, 60), (155, 60), (110, 95), (130, 155)]
    star += [(80, 120), (30, 155), (50, 95), (5, 60), (60, 60)]
    ImageDraw.Draw(canvas).polygon(star, fill=(20, 20, 20, 255))
    logo = np.asarray(canvas)
    background = photo_like(640, 640, seed=1)
    image, box = paste(background, logo, 0.15, (300, 200))
    match = find_logo(image, logo)
    assert match.found and match.box is not None
    assert max(abs(a - b) for a, b in zip(match.box, box, strict=True)) <= 3
    assert not find_logo(background, logo).found


def test_logo_that_fits_nowhere_and_bad_arguments():
    logo = make_logo()
    assert find_logo(np.full((3, 5, 3), 90, np.uint8), logo).score == -1.0
    assert not find_logo(np.full((32, 32, 3), 90, np.uint8), logo).found
    image = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match="width_shares"):
        find_logo(image, logo, width_shares=(0.0, 0.2))
    with pytest.raises(ValueError, match="transparent"):
        find_logo(image, np.zeros((20, 20, 4), np.uint8))


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((10, 10, 60, 60), "top-left"),
        ((540, 10, 590, 60), "top-right"),
        ((10, 340, 60, 390), "bottom-left"),
        ((540, 340, 590, 390), "bottom-right"),
        ((270, 170, 330, 230), "center"),
        ((260, 10, 320, 60), "top-left"),  # top middle: not the centre, nearest corner
    ],
)
def test_logo_placement_regions(box, expected):
    assert logo_placement(box, (400, 600, 3)) == expected


def test_placements_are_the_brand_kit_values():
    assert set(typing.get_args(Placement)) == set(typing.get_args(brandkit.Placement))
