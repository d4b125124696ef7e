import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from brandforge.wcag import contrast_ratio
from evaluation.palette import hex_to_rgb
from evaluation.text_regions import find_text_regions, region_contrast
from tests.evaluation.scenes import jpeg, overlaps, photo_like


def draw_text(image: np.ndarray, text: str, font_size: int, colour, xy) -> tuple[np.ndarray, tuple]:
    """Text rendered with Pillow's scalable default font; returns the image and the text box."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_size)
    draw.text(xy, text, font=font, fill=colour)
    return np.asarray(canvas), draw.textbbox(xy, text, font=font)


def fitting_text(width: int, font_size: int) -> str:
    """The longest of a few marketing lines that fits in 90 % of the width."""
    font = ImageFont.load_default(size=font_size)
    for text in ("Summer Sale: 30% off everything", "Summer Sale 30% off", "Fresh look", "NEW"):
        if font.getlength(text) <= 0.9 * width:
            return text
    raise AssertionError(f"no text fits {width} px at font size {font_size}")


def text_on_flat(size: int, font_size: int, fg: str, bg: str) -> tuple[np.ndarray, tuple]:
    flat = np.full((size, size, 3), hex_to_rgb(bg), np.uint8)
    return draw_text(
        flat, fitting_text(size, font_size), font_size, hex_to_rgb(fg), (size // 20, size // 3)
    )


SIZES = [(256, 14), (256, 40), (512, 20), (512, 64), (1024, 14), (1024, 48)]


@pytest.mark.parametrize(("size", "font_size"), SIZES)
@pytest.mark.parametrize(
    ("fg", "bg"),
    [("#1B2A4A", "#F5F5F5"), ("#000000", "#FFFFFF"), ("#FFFFFF", "#1A9E9E")],
    ids=["navy-on-white", "black-on-white", "white-on-teal"],
)
def test_text_is_found_with_its_contrast(size, font_size, fg, bg):
    image, text_box = text_on_flat(size, font_size, fg, bg)
    regions = find_text_regions(image)
    assert len(regions) == 1
    region = regions[0]
    assert overlaps(region.box, text_box)
    # the region covers the text, give or take a letter's worth at the ends
    assert abs(region.box[0] - text_box[0]) <= font_size
    assert abs(region.box[2] - text_box[2]) <= font_size
    assert region.contrast == pytest.approx(contrast_ratio(hex_to_rgb(fg), hex_to_rgb(bg)), rel=0.1)
    assert region.foreground == pytest.approx(hex_to_rgb(fg), abs=12)
    assert region.background == pytest.approx(hex_to_rgb(bg), abs=4)


@pytest.mark.parametrize(("size", "font_size"), SIZES)
@pytest.mark.parametrize(("fg", "bg"), [("#BBBBBB", "#FFFFFF"), ("#1A9E9E", "#167F7F")])
def test_low_contrast_text_is_found_and_reported_low(size, font_size, fg, bg):
    image, text_box = text_on_flat(size, font_size, fg, bg)
    regions = find_text_regions(image)
    assert len(regions) == 1
    assert overlaps(regions[0].box, text_box)
    expected = contrast_ratio(hex_to_rgb(fg), hex_to_rgb(bg))  # 1.92 and 1.47
    assert regions[0].contrast == pytest.approx(expected, rel=0.1)
    assert regions[0].contrast < 4.5


def test_noisy_low_contrast_text_is_still_found():
    image, text_box = text_on_flat(512, 24, "#BBBBBB", "#FFFFFF")
    noise = np.random.default_rng(0).normal(0, 3, image.shape)
    noisy = np.clip(image + noise, 0, 255).astype(np.uint8)
    regions = find_text_regions(noisy)
    assert len(regions) == 1 and overlaps(regions[0].box, text_box)
    assert regions[0].contrast == pytest.approx(1.92, rel=0.1)


def test_text_on_a_gradient_is_measured_against_the_gradient_under_it():
    top, bottom = np.array(hex_to_rgb("#FFFFFF")), np.array(hex_to_rgb("#C8C8C8"))
    ramp = np.linspace(0, 1, 512)[:, None, None]
    gradient = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (512, 512, 3))
    image, text_box = draw_text(
        gradient.round().astype(np.uint8), "Fresh look", 40, (120,) * 3, (40, 300)
    )
    regions = find_text_regions(image)
    assert len(regions) == 1 and overlaps(regions[0].box, text_box)
    # the background right under the text, not either end of the gradient
    under = top * (1 - 320 / 511) + bottom * 320 / 511
    assert regions[0].contrast == pytest.approx(contrast_ratio((120,) * 3, under), rel=0.1)


def test_text_on_a_box_over_a_photo_is_the_only_region():
    photo = photo_like(640, 480, seed=3)
    canvas = Image.fromarray(photo)
    ImageDraw.Draw(canvas).rectangle((20, 190, 620, 270), fill=hex_to_rgb("#167F7F"))
    image, text_box = draw_text(
        np.asarray(canvas), "Fresh coffee, hand-picked", 32, hex_to_rgb("#1A9E9E"), (40, 210)
    )
    regions = find_text_regions(image)
    assert len(regions) == 1 and overlaps(regions[0].box, text_box)
    assert regions[0].contrast == pytest.approx(1.47, rel=0.1)


def test_lines_of_a_paragraph_form_one_block():
    canvas = Image.new("RGB", (512, 512), "#F5F5F5")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=24)
    lines = ["Fresh coffee, roasted daily", "in small batches by people", "who care about the bean"]
    for i, line in enumerate(lines):
        draw.text((40, 100 + 32 * i), line, font=font, fill="#1B2A4A")
    regions = find_text_regions(np.asarray(canvas))
    assert len(regions) == 1
    assert regions[0].box[1] < 110 and regions[0].box[3] > 100 + 32 * 2 + 10


def flat(size, seed):
    return np.full((size, size, 3), np.random.default_rng(seed).integers(0, 256, 3), np.uint8)


def gradient(size, seed):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)[None, :, None]
    image = rng.integers(0, 256, 3) * (1 - ramp) + rng.integers(0, 256, 3) * ramp
    return np.broadcast_to(image, (size, size, 3)).round().astype(np.uint8)


def shapes(size, seed):
    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(10):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(size // 30, size // 5))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=fill)
    return np.asarray(canvas)


def texture(size, seed):
    """Low-pass filtered noise: blobs with soft edges at several scales, like a photo."""
    rng = np.random.default_rng(seed)
    sigma = (1.5, 3.0, 8.0)[seed % 3]
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size, 3)), (sigma, sigma, 0))
    return np.clip(120 + 40 * noise / noise.std(), 0, 255).astype(np.uint8)


def noisy_flat(size, seed):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(140, 15, (size, size, 3)), 0, 255).astype(np.uint8)


def jpeg_shapes(size, seed):
    return jpeg(shapes(size, seed), quality=10)


def polka_dots(size, seed):
    canvas = Image.new("RGB", (size, size), "#F5E6D3")
    draw = ImageDraw.Draw(canvas)
    step = 12 + 6 * seed
    for y in range(0, size, step):
        for x in range(0, size, step):
            draw.ellipse((x, y, x + step // 2, y + step // 2), fill="#A0826D")
    return jpeg(np.asarray(canvas), quality=10)


@pytest.mark.parametrize("size", [256, 512, 1024])
@pytest.mark.parametrize(
    "make", [flat, gradient, shapes, texture, noisy_flat, jpeg_shapes, polka_dots, photo_like]
)
def test_text_free_images_have_no_low_contrast_text(make, size):
    for seed in range(2):
        image = photo_like(size, size, seed) if make is photo_like else make(size, seed)
        low = [r for r in find_text_regions(image) if r.contrast < 4.5]
        assert low == [], f"{make.__name__} seed {seed}: {low}"


def test_region_contrast_of_a_known_text_box():
    image, text_box = text_on_flat(512, 32, "#1A9E9E", "#167F7F")
    x0, y0, x1, y1 = text_box
    region = region_contrast(image, (x0 - 4, y0 - 4, x1 + 4, y1 + 4))
    assert region.foreground == hex_to_rgb("#1A9E9E")
    assert region.background == hex_to_rgb("#167F7F")
    assert region.contrast == pytest.approx(1.47, abs=0.01)
    assert region.box == (x0 - 4, y0 - 4, x1 + 4, y1 + 4)


def test_region_contrast_of_isoluminant_text_splits_on_hue():
    # red and green of almost the same luminance: the split follows the hue difference
    image, text_box = text_on_flat(512, 40, "#D04040", "#609A30")
    region = region_contrast(image, text_box)
    assert region.foreground == pytest.approx(hex_to_rgb("#D04040"), abs=6)
    assert region.contrast == pytest.approx(
        contrast_ratio(hex_to_rgb("#D04040"), hex_to_rgb("#609A30")), rel=0.05
    )


def test_region_contrast_of_a_flat_box_is_one_and_an_empty_box_is_an_error():
    image = np.full((64, 64, 3), 200, np.uint8)
    assert region_contrast(image, (5, 5, 40, 30)).contrast == 1.0
    with pytest.raises(ValueError, match="empty"):
        region_contrast(image, (70, 70, 90, 90))


def test_tiny_and_odd_images():
    assert find_text_regions(np.full((32, 32, 3), 128, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert find_text_regions(noise) == []
    assert find_text_regions(np.zeros((5, 3, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        find_text_regions(np.zeros((64, 64), np.uint8))
