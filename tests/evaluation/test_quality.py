"""Quality metrics on constructed images, and the default floors on generated marketing images.

The generator below draws marketing-like images (flat and gradient backgrounds, shapes, rendered
text, a smooth photo-like area with a shaded sphere) at several sizes and aspect ratios, then
applies the defects the floors must catch and the variants they must let through.

`python -m tests.evaluation.test_quality` prints the calibration table behind
DEFAULT_QUALITY_FLOORS: every layout at every size and three seeds (a few minutes).
"""

from __future__ import annotations

import functools
import io
import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from evaluation.quality import (
    BLANK_MAX_LUMINANCE_STD,
    DEFAULT_QUALITY_FLOORS,
    QualityFloors,
    QualityMetrics,
    analysis_view,
    blockiness,
    blur_score,
    clipped_share,
    dominant_share,
    edge_width,
    laplacian_variance,
    luminance,
    noise_sigma,
    quality_metrics,
    quality_violations,
)

RGB = tuple[int, int, int]
BRAND: tuple[RGB, ...] = ((0x1A, 0x9E, 0x9E), (0xF5, 0xF5, 0xF5), (0xF5, 0x8C, 0x1E))
OFF_PALETTE: tuple[RGB, ...] = ((0x8A, 0x2B, 0xE2), (0x39, 0xFF, 0x14), (0xFF, 0x14, 0x93))
LAYOUTS = ("banner", "product", "gradient", "dark", "off_palette", "low_contrast", "hero")
SIZES = ((256, 256), (512, 512), (1024, 1024), (512, 640), (1024, 576))  # 1:1, 4:5, 16:9

# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


def _photo(rng: np.random.Generator, width: int, height: int, sphere: RGB) -> np.ndarray:
    """A smooth photo-like patch: two octaves of low-pass noise on a colour ramp, and a sphere."""
    coarse = ndimage.gaussian_filter(rng.normal(size=(height, width)), max(width, height) / 12)
    fine = ndimage.gaussian_filter(rng.normal(size=(height, width)), max(width, height) / 60)
    t = coarse / (coarse.std() + 1e-9) + 0.35 * fine / (fine.std() + 1e-9)
    t = np.clip(0.5 + t / 4, 0, 1)[..., None]
    ramp = np.array(BRAND[0], float) * (1 - t) + np.array((240, 230, 210), float) * t

    ys, xs = np.mgrid[0:height, 0:width]
    radius = min(width, height) / 2 * 0.9
    dx, dy = (xs + 0.5 - width / 2) / radius, (ys + 0.5 - height / 2) / radius
    r = np.sqrt(dx**2 + dy**2)
    z = np.sqrt(np.clip(1 - r**2, 0, 1))
    shade = np.clip(0.25 + 0.75 * (-0.4 * dx - 0.5 * dy + 0.77 * z), 0.15, 1.0)[..., None]
    ball = np.clip(np.array(sphere, float) * shade + 40 * shade**8, 0, 255)
    cover = np.clip((1 - r) * radius + 0.5, 0, 1)[..., None]  # a 1 px anti-aliased rim
    return ramp * (1 - cover) + ball * cover


def marketing_image(
    rng: np.random.Generator, width: int, height: int, layout: str, *, supersample: int = 2
) -> np.ndarray:
    """A marketing-like visual: background, shapes, headline, body copy, button and photo area."""
    palette = OFF_PALETTE if layout == "off_palette" else BRAND
    s = supersample
    big_w, big_h = width * s, height * s
    background: RGB
    if layout == "dark":
        background = (18, 22, 28)
    elif layout in ("product", "low_contrast"):
        background = (255, 255, 255)
    else:
        background = palette[int(rng.integers(len(palette)))]
    canvas = Image.new("RGB", (big_w, big_h), background)
    if layout in ("gradient", "hero"):
        other = np.array(palette[int(rng.integers(len(palette)))], float) * 0.6 + 40
        t = np.linspace(0, 1, big_h)[:, None, None]
        ramp = np.array(background, float) * (1 - t) + other * t
        canvas = Image.fromarray(np.broadcast_to(ramp, (big_h, big_w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 5))):
        choices = [c for c in palette if c != background]
        colour = choices[int(rng.integers(len(choices)))]
        x0, y0 = rng.uniform(0, 0.7) * big_w, rng.uniform(0, 0.7) * big_h
        w, h = rng.uniform(0.15, 0.35) * big_w, rng.uniform(0.15, 0.35) * big_h
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse((x0, y0, x0 + w, y0 + w), fill=colour)
        elif kind == 1:
            draw.rounded_rectangle((x0, y0, x0 + w, y0 + h), radius=w / 8, fill=colour)
        else:
            draw.polygon([(x0, y0 + h), (x0 + w, y0 + h), (x0 + w / 2, y0)], fill=colour)
    ink = {"dark": (250, 250, 250), "low_contrast": (214, 214, 214)}.get(layout, (20, 24, 30))
    headline = ImageFont.load_default(size=max(12, big_h // 11))
    body = ImageFont.load_default(size=max(10, big_h // 34))
    draw.text((0.06 * big_w, 0.06 * big_h), "Summer Sale 40%", font=headline, fill=ink)
    for i in range(3):
        draw.text(
            (0.06 * big_w, 0.72 * big_h + i * big_h / 26),
            "Fresh looks for every day - shop the new collection",
            font=body,
            fill=ink,
        )
    bx, by = 0.06 * big_w, 0.88 * big_h
    draw.rounded_rectangle(
        (bx, by, bx + 0.3 * big_w, by + 0.08 * big_h), radius=0.02 * big_h, fill=palette[2]
    )
    draw.text((bx + 0.03 * big_w, by + 0.015 * big_h), "Shop now", font=body, fill=(255, 255, 255))
    image = np.asarray(canvas.reduce(s) if s > 1 else canvas).astype(np.float64)

    if layout == "hero":
        x0, y0, pw, ph = 0, int(0.2 * height), width, int(0.45 * height)
    else:
        pw, ph = int(0.4 * width), int(0.4 * height)
        x0, y0 = int(rng.uniform(0.5, 0.58) * width), int(rng.uniform(0.2, 0.35) * height)
    sphere = palette[int(rng.integers(len(palette)))]
    image[y0 : y0 + ph, x0 : x0 + pw] = _photo(rng, pw, ph, sphere)
    return np.round(image).astype(np.uint8)


def minimal_image(width: int, height: int) -> np.ndarray:
    """A flat-colour banner with one curved shape: almost no edges, all of them sharp."""
    canvas = Image.new("RGB", (2 * width, 2 * height), BRAND[1])
    ImageDraw.Draw(canvas).ellipse(
        (0.6 * width, 0.5 * height, 1.4 * width, 1.3 * height), fill=BRAND[0]
    )
    return np.asarray(canvas.reduce(2))


def grid8_image(width: int, height: int) -> np.ndarray:
    """A UI-style layout on an 8 px grid: cards, header and buttons with edges on multiples of 8."""
    canvas = Image.new("RGB", (width, height), (240, 240, 240))
    draw = ImageDraw.Draw(canvas)

    def snap(v: float) -> int:
        return int(round(v / 8)) * 8

    draw.rectangle((0, 0, width - 1, snap(0.12 * height) - 1), fill=BRAND[0])
    font = ImageFont.load_default(size=max(9, height // 40))
    for i in range(3):
        x0 = snap(0.04 * width + i * 0.32 * width)
        x1, y0, y1 = snap(x0 + 0.28 * width), snap(0.2 * height), snap(0.85 * height)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(255, 255, 255))
        draw.rectangle((x0, y0, x1 - 1, snap(y0 + 0.25 * height) - 1), fill=(228, 236, 236))
        for j in range(4):
            y = snap(y0 + 0.28 * height) + j * height / 30
            draw.text((x0 + 6, y), "Card text item", font=font, fill=(40, 40, 40))
        button_w = snap(0.15 * width)
        draw.rectangle(
            (x0 + 8, y1 - snap(0.08 * height), x0 + 8 + button_w - 1, y1 - 9), fill=BRAND[2]
        )
    return np.asarray(canvas)


def text_only_image(width: int, height: int) -> np.ndarray:
    """Black copy on pure white: nearly every pixel clipped, legitimately."""
    canvas = Image.new("RGB", (2 * width, 2 * height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text(
        (0.1 * width, 0.3 * height),
        "We're hiring",
        font=ImageFont.load_default(size=height // 5),
        fill=(0, 0, 0),
    )
    draw.text(
        (0.1 * width, 1.2 * height),
        "Join the team - apply today",
        fill=(0, 0, 0),
        font=ImageFont.load_default(size=height // 14),
    )
    return np.asarray(canvas.reduce(2))


def checkerboard(width: int, height: int, cell: int = 8) -> np.ndarray:
    """Two brand colours in cell x cell squares: every step lies on a JPEG block boundary."""
    ys, xs = np.mgrid[0:height, 0:width]
    on = ((ys // cell + xs // cell) % 2).astype(bool)
    out = np.empty((height, width, 3), np.uint8)
    out[~on], out[on] = BRAND[0], BRAND[2]
    return out


def generated_32() -> np.ndarray:
    """A typical 32 px sample of the demo model: flat 4x4 px cells, a white blob on teal."""
    cells = np.zeros((8, 8), dtype=bool)
    cells[2:5, 3:6] = True
    cells[3, 2] = cells[5, 4] = True
    image = np.where(np.kron(cells, np.ones((4, 4), dtype=bool))[..., None], BRAND[1], BRAND[0])
    return image.astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def png(image: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def gaussian_blur(image: np.ndarray, radius_at_512: float) -> np.ndarray:
    """Gaussian blur whose radius scales with the image: `radius_at_512` px on a 512 px square."""
    h, w = image.shape[:2]
    radius = float(radius_at_512 * math.sqrt(h * w) / 512)
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def add_noise(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8)


def resize(image: np.ndarray, factor: float, resample: Image.Resampling) -> np.ndarray:
    h, w = image.shape[:2]
    size = (round(w * factor), round(h * factor))
    return np.asarray(Image.fromarray(image).resize(size, resample))


Variant = Callable[[np.ndarray], np.ndarray]

LEGITIMATE: dict[str, Variant] = {
    "clean": lambda im: im,
    "png": png,
    "jpeg95": lambda im: jpeg(im, 95),
    "jpeg85": lambda im: jpeg(im, 85),
    "down0.8": lambda im: resize(im, 0.8, Image.Resampling.LANCZOS),
    "up1.25": lambda im: resize(im, 1.25, Image.Resampling.BICUBIC),
}

# Defect -> (the rule that must flag it, how to make it).
DEFECTS: dict[str, tuple[str, Variant]] = {
    "blur2": ("blur", lambda im: gaussian_blur(im, 2)),
    "blur3": ("blur", lambda im: gaussian_blur(im, 3)),
    "blur5": ("blur", lambda im: gaussian_blur(im, 5)),
    "noise8": ("noise", lambda im: add_noise(im, 8)),
    "noise15": ("noise", lambda im: add_noise(im, 15)),
    "noise25": ("noise", lambda im: add_noise(im, 25)),
    "jpeg5": ("blockiness", lambda im: jpeg(im, 5)),
    "jpeg10": ("blockiness", lambda im: jpeg(im, 10)),
    "jpeg15": ("blockiness", lambda im: jpeg(im, 15)),
}

BLANKS: dict[str, RGB] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "grey": (128, 128, 128),
    "brand": BRAND[0],
}

# Every size, and every layout at least once, kept small enough to run in seconds.
CASES = [
    ((256, 256), "banner"),
    ((256, 256), "dark"),
    ((512, 512), "product"),
    ((512, 512), "low_contrast"),
    ((512, 640), "off_palette"),
    ((512, 640), "hero"),
    ((1024, 576), "gradient"),
    ((1024, 1024), "hero"),
]


def _case_id(case: tuple[tuple[int, int], str]) -> str:
    (w, h), layout = case
    return f"{w}x{h}-{layout}"


@functools.cache
def _base(width: int, height: int, layout: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([width, height, seed, LAYOUTS.index(layout)])
    image = marketing_image(rng, width, height, layout)
    image.setflags(write=False)  # shared by every test through the cache
    return image


def _rules(image: np.ndarray) -> list[str]:
    violations = quality_violations(quality_metrics(image), DEFAULT_QUALITY_FLOORS)
    return [rule for rule, _, _ in violations]


# ---------------------------------------------------------------------------------------------
# Metrics on constructed images
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((32, 32, 3), dtype=np.float64), "uint8 RGB"),
        (np.zeros((32, 32), dtype=np.uint8), "uint8 RGB"),
        (np.zeros((32, 32, 4), dtype=np.uint8), "uint8 RGB"),
        (np.zeros((8, 32, 3), dtype=np.uint8), "at least 16"),
    ],
)
def test_wrong_images_are_rejected(image: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        quality_metrics(image)
    with pytest.raises(ValueError, match=match):
        luminance(image)


def test_planes_must_be_two_dimensional() -> None:
    with pytest.raises(ValueError, match="2-D"):
        blur_score(np.zeros((32, 32, 3)))
    with pytest.raises(ValueError, match="at least 16"):
        blockiness(np.zeros((32, 8)))


def test_luminance_uses_bt601_weights() -> None:
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    image[:, :8] = (255, 255, 255)
    image[:, 8:] = (0, 255, 0)
    gray = luminance(image)
    assert gray[0, 0] == pytest.approx(255.0)
    assert gray[0, 8] == pytest.approx(0.587 * 255)


def test_constant_image_is_blank_and_has_no_detail() -> None:
    image = np.full((64, 64, 3), (26, 158, 158), dtype=np.uint8)
    m = quality_metrics(image)
    assert m.sharpness == 0.0
    assert m.blur == 1.0  # no edges at all: the limit of blurring
    assert m.noise == 0.0
    assert m.blockiness == 0.0  # flat: both boundary and in-block differences are 0
    assert m.luminance_std == pytest.approx(0.0, abs=1e-9)
    assert m.dominant_share == 1.0
    assert m.clipped_share == 0.0
    assert m.blank


def test_all_black_frame_is_blank_and_clipped() -> None:
    m = quality_metrics(np.zeros((64, 64, 3), dtype=np.uint8))
    assert m.blank
    assert m.clipped_share == 1.0
    rules = [r for r, _, _ in quality_violations(m, DEFAULT_QUALITY_FLOORS)]
    assert rules[0] == "blank"


def test_laplacian_variance_of_a_pixel_checkerboard() -> None:
    # Every interior Laplacian is ±4·255, so the variance is (4·255)².
    gray = (np.indices((32, 32)).sum(axis=0) % 2) * 255.0
    assert laplacian_variance(gray) == pytest.approx((4 * 255) ** 2)
    assert laplacian_variance(np.full((32, 32), 77.0)) == 0.0


def test_edge_width_of_a_sharp_and_a_blurred_step() -> None:
    gray = np.zeros((64, 64))
    gray[:, 32:] = 200.0
    assert edge_width(gray) == pytest.approx(1.0)
    assert blur_score(gray) == pytest.approx(0.0)
    # A Gaussian of std 1 px spreads a step over about 2.5 px (sqrt(2 pi) sigma).
    assert edge_width(ndimage.gaussian_filter1d(gray, 1.0, axis=1)) == pytest.approx(2.5, rel=0.1)


def test_blur_grows_monotonically_with_the_blur_radius() -> None:
    image = _base(512, 512, "banner")
    scores = [quality_metrics(gaussian_blur(image, r)).blur for r in (0, 0.5, 1, 1.5, 2, 3)]
    assert all(a < b for a, b in itertools.pairwise(scores))
    # Beyond the 5 px window the width saturates (about 0.75) but stays far above the floor.
    for radius in (5, 8, 12):
        assert quality_metrics(gaussian_blur(image, radius)).blur > scores[-1] - 0.01


def test_blur_does_not_depend_on_how_much_content_there_is() -> None:
    # One curved shape on a flat banner: a tiny Laplacian variance, yet perfectly sharp.
    sparse = quality_metrics(minimal_image(1024, 1024))
    blurred_busy = quality_metrics(gaussian_blur(_base(1024, 1024, "hero"), 0.5))  # 1 px
    assert sparse.sharpness < blurred_busy.sharpness  # why there is no sharpness floor
    assert sparse.blur < DEFAULT_QUALITY_FLOORS.max_blur < blurred_busy.blur
    assert "blur" in _rules(gaussian_blur(minimal_image(512, 512), 2))


@pytest.mark.parametrize("channels", ["independent", "grey"])
def test_noise_on_a_flat_image_reads_its_sigma(channels: str) -> None:
    rng = np.random.default_rng(1)
    shape = (256, 256, 3) if channels == "independent" else (256, 256, 1)
    noisy = np.clip(np.round(128 + rng.normal(0, 10, shape)), 0, 255)
    image = np.broadcast_to(noisy, (256, 256, 3)).astype(np.uint8)
    assert noise_sigma(image) == pytest.approx(10, rel=0.2)


def test_noise_ignores_edges_and_text_but_not_noise_on_them() -> None:
    graphic = grid8_image(512, 512)
    assert noise_sigma(graphic) < 0.5
    assert noise_sigma(text_only_image(256, 256)) < 0.5
    noisy = add_noise(checkerboard(256, 256, cell=5), 10)
    assert noise_sigma(noisy) == pytest.approx(10, rel=0.2)


def test_noise_reads_a_plane_and_skips_clipped_pixels() -> None:
    plane = np.full((64, 64), 255.0)  # a clipped white frame hides any noise
    assert noise_sigma(plane) == 0.0
    rng = np.random.default_rng(2)
    assert noise_sigma(100 + rng.normal(0, 5, (128, 128))) == pytest.approx(5, rel=0.1)


def test_blockiness_separates_jpeg_damage_from_block_aligned_graphics() -> None:
    board = checkerboard(512, 512)  # steps only on block boundaries
    photo = _base(512, 512, "product")
    assert blockiness(luminance(board)) == 0.0
    assert blockiness(luminance(grid8_image(512, 512))) < DEFAULT_QUALITY_FLOORS.max_blockiness
    assert blockiness(luminance(photo)) < 0.05
    damaged = [blockiness(luminance(jpeg(photo, q))) for q in (5, 10, 15)]
    assert min(damaged) > DEFAULT_QUALITY_FLOORS.max_blockiness
    assert blockiness(luminance(jpeg(photo, 85))) < min(damaged) / 2


def test_blockiness_reads_the_decoder_grid() -> None:
    # Cropping 4 px off a JPEG moves its blocks off the grid the metric reads.
    damaged = jpeg(_base(512, 512, "product"), 10)
    assert blockiness(luminance(damaged)) > DEFAULT_QUALITY_FLOORS.max_blockiness
    assert blockiness(luminance(damaged[4:, 4:])) < DEFAULT_QUALITY_FLOORS.max_blockiness


def test_clipped_share_counts_pure_black_and_white_pixels() -> None:
    image = np.full((20, 20, 3), 128, dtype=np.uint8)
    image[:10] = 255
    image[10:15] = 0
    image[15, :] = (255, 255, 0)  # pure yellow: saturated, not clipped to black or white
    image[16, :] = 254  # a JPEG round trip of white
    assert clipped_share(image) == pytest.approx(0.80)


def test_dominant_share_is_robust_to_bin_edges() -> None:
    image = np.full((50, 50, 3), BRAND[2], dtype=np.uint8)
    image[:, 35:] = BRAND[0]
    assert dominant_share(image) == pytest.approx(0.7)
    # 128 is a bin edge on every channel; a JPEG-like ±1 jitter must stay one colour.
    jitter = np.random.default_rng(3).integers(-1, 2, (50, 50, 3))
    assert dominant_share((128 + jitter).astype(np.uint8)) == 1.0


def test_analysis_view_box_averages_large_images() -> None:
    gray = np.arange(4000 * 3000, dtype=np.float64).reshape(3000, 4000)
    view = analysis_view(gray)
    assert view.shape == (750, 1000)
    assert view[0, 0] == pytest.approx(gray[:4, :4].mean())
    assert analysis_view(np.zeros((512, 640))).shape == (512, 640)


def test_a_generated_32px_sample_passes() -> None:
    image = generated_32()
    m = quality_metrics(image)
    assert not m.blank
    assert m.noise < DEFAULT_QUALITY_FLOORS.max_noise
    assert quality_violations(m, DEFAULT_QUALITY_FLOORS) == []


def test_violations_report_rule_value_and_limit() -> None:
    m = QualityMetrics(
        sharpness=3.0,
        blur=0.9,
        noise=12.0,
        blockiness=0.4,
        clipped_share=1.0,
        luminance_std=0.5,
        dominant_share=1.0,
        blank=True,
    )
    floors = QualityFloors(
        max_blur=0.5, max_noise=4, max_blockiness=0.2, max_clipped_share=0.9, min_sharpness=10
    )
    assert quality_violations(m, floors) == [
        ("blank", 0.5, BLANK_MAX_LUMINANCE_STD),
        ("blur", 0.9, 0.5),
        ("noise", 12.0, 4),
        ("blockiness", 0.4, 0.2),
        ("clipped_exposure", 1.0, 0.9),
        ("sharpness", 3.0, 10),
    ]
    assert [r for r, _, _ in quality_violations(m, DEFAULT_QUALITY_FLOORS)] == [
        "blank",
        "blur",
        "noise",
        "blockiness",
    ]


# ---------------------------------------------------------------------------------------------
# Default floors on generated marketing images
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(LEGITIMATE))
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_legitimate_images_pass(case: tuple[tuple[int, int], str], variant: str) -> None:
    (w, h), layout = case
    assert _rules(LEGITIMATE[variant](_base(w, h, layout))) == []


@pytest.mark.parametrize("defect", list(DEFECTS))
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_defects_are_flagged_by_their_rule(case: tuple[tuple[int, int], str], defect: str) -> None:
    (w, h), layout = case
    rule, make = DEFECTS[defect]
    rules = _rules(make(_base(w, h, layout)))
    assert rule in rules
    assert "blank" not in rules


@pytest.mark.parametrize("colour", list(BLANKS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_blank_frames_are_flagged(size: tuple[int, int], colour: str) -> None:
    w, h = size
    frame = np.full((h, w, 3), BLANKS[colour], dtype=np.uint8)
    assert "blank" in _rules(frame)


@pytest.mark.parametrize("colour", list(BLANKS))
def test_blank_frames_stay_blank_through_jpeg(colour: str) -> None:
    frame = np.full((512, 512, 3), BLANKS[colour], dtype=np.uint8)
    frame[::37, ::41] = BLANKS["grey"]  # a few stray pixels, as a broken sampler leaves them
    assert "blank" in _rules(jpeg(frame, 85))


@pytest.mark.parametrize(
    "make",
    [minimal_image, grid8_image, text_only_image, checkerboard],
    ids=["minimal", "grid8", "text_only", "checkerboard"],
)
@pytest.mark.parametrize("variant", ["clean", "jpeg95", "jpeg85"])
def test_sparse_graphics_pass(make: Callable[[int, int], np.ndarray], variant: str) -> None:
    assert _rules(LEGITIMATE[variant](make(512, 512))) == []


def test_large_images_are_judged_like_small_ones() -> None:
    rng = np.random.default_rng(7)
    image = marketing_image(rng, 1600, 1200, "product", supersample=1)
    assert _rules(image) == []
    assert "blur" in _rules(gaussian_blur(image, 2))
    assert "noise" in _rules(add_noise(image, 8))
    assert "blockiness" in _rules(jpeg(image, 15))


# ---------------------------------------------------------------------------------------------
# Calibration report: python -m tests.evaluation.test_quality
# ---------------------------------------------------------------------------------------------

SPARSE: dict[str, Callable[[int, int], np.ndarray]] = {
    "minimal": minimal_image,
    "grid8": grid8_image,
    "text_only": text_only_image,
    "checkerboard": checkerboard,
}


def calibration_rows(seeds: int = 3) -> list[tuple[str, str, QualityMetrics]]:
    """(image id, variant, metrics) for every layout, size and seed, and the sparse graphics."""
    variants: dict[str, Variant] = {**LEGITIMATE, **{k: v[1] for k, v in DEFECTS.items()}}
    rows = []
    for (w, h), layout, seed in itertools.product(SIZES, LAYOUTS, range(seeds)):
        base = _base(w, h, layout, seed)
        for name, make in variants.items():
            rows.append((f"{w}x{h} {layout} s{seed}", name, quality_metrics(make(base))))
    for (w, h), (kind, draw) in itertools.product(SIZES, SPARSE.items()):
        for name, make in LEGITIMATE.items():
            rows.append((f"{w}x{h} {kind}", name, quality_metrics(make(draw(w, h)))))
    for (w, h), (colour, rgb) in itertools.product(SIZES, BLANKS.items()):
        frame = np.full((h, w, 3), rgb, dtype=np.uint8)
        for name, make in (("clean", LEGITIMATE["clean"]), ("jpeg85", LEGITIMATE["jpeg85"])):
            rows.append((f"{w}x{h} {colour}", f"blank-{name}", quality_metrics(make(frame))))
    return rows


def _print_calibration() -> None:
    rows = calibration_rows()

    def extreme(metric: str, variants: list[str], worst: Callable) -> tuple[float, str]:
        values = [(float(getattr(m, metric)), f"{v}, {i}") for i, v, m in rows if v in variants]
        return worst(values)  # type: ignore[no-any-return]

    legit = list(LEGITIMATE)
    checks = [
        ("blur", max, ["blur2", "blur3", "blur5"], min),
        ("noise", max, ["noise8", "noise15", "noise25"], min),
        ("blockiness", max, ["jpeg5", "jpeg10", "jpeg15"], min),
        ("sharpness", min, ["blur2", "blur3", "blur5"], max),
        ("clipped_share", max, ["blank-clean", "blank-jpeg85"], min),
        ("luminance_std", min, ["blank-clean", "blank-jpeg85"], max),
        ("dominant_share", max, ["blank-clean", "blank-jpeg85"], min),
    ]
    print(f"{len(rows)} images")
    for metric, clean_worst, defects, defect_worst in checks:
        c, d = extreme(metric, legit, clean_worst), extreme(metric, defects, defect_worst)
        print(f"{metric:15s} clean {c[0]:9.3f} ({c[1]})\n{'':15s} defect {d[0]:8.3f} ({d[1]})")
    for name in [*DEFECTS, "blank-clean", "blank-jpeg85"]:
        fired: dict[str, int] = {}
        count = 0
        for _, v, m in rows:
            if v == name:
                count += 1
                for rule, _, _ in quality_violations(m, DEFAULT_QUALITY_FLOORS):
                    fired[rule] = fired.get(rule, 0) + 1
        print(f"{name:13s} rules fired over {count} images: {fired}")
    false_alarms = [
        (i, v, quality_violations(m, DEFAULT_QUALITY_FLOORS))
        for i, v, m in rows
        if v in legit and quality_violations(m, DEFAULT_QUALITY_FLOORS)
    ]
    print(f"legitimate images flagged: {false_alarms}")


if __name__ == "__main__":
    _print_calibration()
