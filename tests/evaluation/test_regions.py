"""Region checks: a defect confined to about a tenth of the image is caught by its own region
rule, with a box on the defect, where the whole-image rules average it away; clean demo visuals
pass; below 128 px a side the checks are skipped and the report says so.

Images are the demo brand's own visuals (`draw_visual`) at 256 px against its kit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageFilter
from scipy import ndimage

from brandforge.brandkit import BrandKit, BrandKitError, load_brand_kit
from evaluation import regions
from evaluation.compliance import brand_limits, compliance_report
from evaluation.quality import luminance
from tests.evaluation.scenes import jpeg, overlaps
from training.demo_brand import demo_brand_kit, draw_visual

KIT = BrandKit.model_validate(demo_brand_kit("acme"))
SIZE = 256
PATCH = 81  # 81 x 81 px: 10 % of a 256 px image
PURPLE = (0x7B, 0x3F, 0xA0)
RED = (0xDC, 0x28, 0x28)  # the kit's forbidden colour


def visual(seed: int, size: int = SIZE) -> np.ndarray:
    image, _ = draw_visual(np.random.default_rng(seed), resolution=size, trigger="acme")
    return np.asarray(image).copy()


def busiest_box(image: np.ndarray, side: int = PATCH) -> tuple[int, int, int, int]:
    """The 8-aligned square of `side` px holding the most strong edges: where blur and
    compression damage show (over a flat area they change nothing visible)."""
    gray = luminance(image)
    edges = (ndimage.maximum_filter(gray, 3) - ndimage.minimum_filter(gray, 3)) > 40
    counts = ndimage.uniform_filter(edges.astype(float), side, mode="constant")
    half = side // 2
    inner = counts[half : gray.shape[0] - side + half, half : gray.shape[1] - side + half]
    y, x = np.unravel_index(int(np.argmax(inner[::8, ::8])), inner[::8, ::8].shape)
    return 8 * int(x), 8 * int(y), 8 * int(x) + side, 8 * int(y) + side


def paste(image: np.ndarray, box, patch: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    out = image.copy()
    out[y0:y1, x0:x1] = patch
    return out


def with_noise(image, box):
    x0, y0, x1, y1 = box
    noise = np.random.default_rng(0).normal(0, 30, (y1 - y0, x1 - x0, 3))
    return paste(image, box, np.clip(image[y0:y1, x0:x1] + noise, 0, 255).astype(np.uint8))


def with_colour(colour):
    return lambda image, box: paste(image, box, np.array(colour, dtype=np.uint8))


def with_blur(image, box):
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2)))
    x0, y0, x1, y1 = box
    return paste(image, box, blurred[y0:y1, x0:x1])


def with_blocks(image, box):
    """A soft shadow (40 levels across the patch) compressed at JPEG q5 on the image's own 8x8
    grid: the staircase of flat blocks heavy compression leaves on smooth shading."""
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0]
    shade = 40 * (xs + ys) / (xs + ys).max()
    shaded = np.clip(image[y0:y1, x0:x1] - shade[..., None], 0, 255).astype(np.uint8)
    return paste(image, box, jpeg(np.ascontiguousarray(shaded), 5))


def centre_box(side: int) -> tuple[int, int, int, int]:
    x0 = (SIZE - side) // 2 + 4
    return x0, x0, x0 + side, x0 + side


# (defect, region rule, the whole-image rule it would need, where the patch goes, seeds). Blur
# and blocks go where they show: on the shapes' edges, on the 8 px grid. The seeds are visuals
# whose other content dilutes the defect below the whole-image limit (on most flat ones the
# whole-image blockiness sees a 10 % block patch itself: there are few other boundaries to judge).
DEFECTS = {
    "noise": (with_noise, "region_noise", "noise", lambda img: centre_box(PATCH), [0, 1, 2]),
    "off-palette": (
        with_colour(PURPLE),
        "region_off_palette",
        "off_palette_color",
        lambda img: centre_box(PATCH),
        [0, 1, 2],
    ),
    "blur": (with_blur, "region_blur", "blur", busiest_box, [1, 2, 3]),
    "blocks": (
        with_blocks,
        "region_blockiness",
        "blockiness",
        lambda img: (88, 88, 88 + PATCH, 88 + PATCH),
        [4],
    ),
    # The whole-image limit is 0.5 % of the image, so a 10 % patch is its to catch; the region
    # rule is for what it lets through: 16 x 16 px (0.4 %) in one place, a visible badge.
    "forbidden": (
        with_colour(RED),
        "region_forbidden",
        "forbidden_color",
        lambda img: centre_box(16),
        [0, 1, 2],
    ),
}
CASES = [(defect, seed) for defect, spec in DEFECTS.items() for seed in spec[-1]]


@pytest.mark.parametrize(("defect", "seed"), CASES)
def test_a_local_defect_is_caught_by_its_region_rule_and_not_by_the_whole_image(defect, seed):
    make, rule, whole_rule, where, _ = DEFECTS[defect]
    clean = visual(seed)
    box = where(clean)
    report = compliance_report(make(clean, box), KIT)
    found = {v.rule: v for v in report.violations}
    assert rule in found, (report.metrics["regions"], report.metrics["quality"])
    assert found[rule].box is not None and overlaps(found[rule].box, box)
    assert report.metrics["regions"][rule.removeprefix("region_")]["box"] == list(found[rule].box)
    # The point: the whole-image rules alone let it through.
    assert whole_rule not in found
    assert all(v.rule.startswith("region_") for v in report.violations if v.severity == "error")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
@pytest.mark.parametrize("size", [128, 256, 512])
def test_clean_demo_visuals_pass_every_region_rule(size, fmt):
    """Whatever the whole-image rules say of them (at 512 px JPEG q85 the 1 px stripes of a few
    visuals read as one off-palette colour), the region rules add no failure."""
    for seed in range(6):
        image = visual(seed, size)
        if fmt == "jpeg":
            image = jpeg(image, 85)
        report = compliance_report(image, KIT)
        assert not [v for v in report.violations if v.rule.startswith("region_")], (
            seed,
            report.metrics["regions"],
        )


@pytest.mark.parametrize("size", [32, 64])
def test_below_the_minimum_side_region_checks_are_skipped_and_the_report_says_so(size):
    image = with_noise(visual(0, size), (0, 0, size // 2, size // 2))
    report = compliance_report(image, KIT)
    assert "skipped" in report.metrics["regions"]
    assert "128 px" in report.metrics["regions"]["skipped"]
    assert not [v for v in report.violations if v.rule.startswith("region_")]
    assert regions.tile_grid(size, size) is None
    assert regions.tile_grid(127, 400) is None


@pytest.mark.parametrize(
    ("height", "width", "grid"),
    [(128, 128, (6, 6)), (256, 256, (6, 6)), (512, 512, (6, 6)), (1080, 1920, (6, 10))],
)
def test_tiles_are_a_sixth_of_the_short_side_on_the_8_px_grid(height, width, grid):
    g = regions.tile_grid(height, width)
    assert g.shape == grid
    assert g.ys[0] == g.xs[0] == 0 and g.ys[-1] == height and g.xs[-1] == width
    assert all(b % 8 == 0 for b in g.ys[:-1] + g.xs[:-1])
    sides = np.diff(g.ys).tolist() + np.diff(g.xs).tolist()
    assert min(sides) >= regions.MIN_TILE


def test_tile_means_read_a_subsampled_map_per_tile():
    g = regions.tile_grid(128, 128)  # 6 x 6 tiles of 16..24 px
    mask = np.zeros((128, 128), dtype=bool)
    mask[: g.ys[1], : g.xs[1]] = True
    assert regions.tile_means(mask, g)[0, 0] == 1.0
    assert regions.tile_means(mask, g).sum() == 1.0
    assert regions.tile_means(mask[::2, ::2], g, step=2)[0, 0] == 1.0


def test_colour_noise_ignores_a_two_colour_dot_pattern_and_reads_white_noise():
    dots = np.zeros((48, 48, 3)) + (0x1A, 0x9E, 0x9E)
    dots[::3, ::3] = (0xF5, 0xF5, 0xF5)
    assert regions.colour_noise(dots.astype(np.uint8)) < 0.5
    noisy = 128 + np.random.default_rng(0).normal(0, 10, (48, 48, 3))
    assert regions.colour_noise(noisy) == pytest.approx(10, rel=0.15)


def test_the_report_stays_json_and_whole_image_violations_keep_their_keys():
    clean = visual(0)
    image = with_colour(RED)(with_colour(PURPLE)(clean, centre_box(PATCH)), (8, 8, 38, 38))
    d = compliance_report(image, KIT).to_dict()
    json.dumps(d)
    by_rule = {v["rule"]: v for v in d["violations"]}
    assert by_rule["region_off_palette"]["box"] == d["metrics"]["regions"]["off_palette"]["box"]
    assert by_rule["region_forbidden"]["box"] == [0, 0, 40, 40]  # the tile holding the badge
    whole = [v for v in d["violations"] if not v["rule"].startswith("region_")]
    assert "forbidden_color" in by_rule  # 1.4 % of the image: the whole-image rule reports too
    for v in whole:
        assert set(v) == {"rule", "value", "limit", "severity", "message"}


def test_quality_keys_override_the_region_defaults_and_a_wrong_one_is_named(tmp_path: Path):
    raw = demo_brand_kit("acme")
    raw["quality"] = {"max_region_noise": 50.0, "max_region_forbidden_share": 0.5}
    kit = BrandKit.model_validate(raw)
    assert brand_limits(kit).regions.max_region_noise == 50.0
    assert brand_limits(kit).regions.max_region_forbidden_share == 0.5
    image = with_noise(visual(0), centre_box(PATCH))
    assert "region_noise" not in {v.rule for v in compliance_report(image, kit).violations}

    raw["quality"] = {"max_region_nois": 50.0}
    path = tmp_path / "brand.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(BrandKitError, match=r"quality\.max_region_nois: unknown key"):
        load_brand_kit(path)


def test_the_ab_grid_outlines_the_failed_tile_and_leaves_the_rest_as_drawn():
    from evaluation.stage import ab_grid

    clean = visual(0)
    noisy = with_noise(clean, centre_box(PATCH))
    images = {"champion": [clean], "challenger": [noisy]}
    reports = {side: [compliance_report(imgs[0], KIT)] for side, imgs in images.items()}
    (failed,) = [v for v in reports["challenger"][0].violations if v.box is not None]
    assert not [v for v in reports["champion"][0].violations if v.box is not None]

    grid = np.asarray(ab_grid(images, reports, cols=2, resolution=SIZE))
    assert grid.shape == (SIZE, 2 * SIZE, 3)
    assert np.array_equal(grid[:, :SIZE], clean)  # the champion passed: unmarked
    right = grid[:, SIZE:]
    x0, y0, x1, y1 = failed.box
    line = SIZE // 128
    on_outline = np.zeros((SIZE, SIZE), bool)
    on_outline[y0:y1, x0:x1] = True
    on_outline[y0 + 2 * line : y1 - 2 * line, x0 + 2 * line : x1 - 2 * line] = False
    assert (right[y0 + line, x0 + line : x1 - line] == regions.OUTLINE_RGB).all()
    assert (right[y0, x0:x1] == 255).all()  # a white line around the magenta one
    assert np.array_equal(right[~on_outline], noisy[~on_outline])


def test_outlined_boxes_are_clipped_to_the_image():
    image = np.zeros((20, 30, 3), np.uint8)
    out = regions.outline_boxes(image, [(-5, 10, 40, 25), (3, 3, 3, 9)])  # the second is empty
    assert out.shape == image.shape and not image.any()  # a copy
    assert (out[10, :] == 255).all() and (out[19, :] == 255).all()  # white on the clipped edges
    assert (out[11, 1:29] == regions.OUTLINE_RGB).all()
    assert not out[:10].any()
