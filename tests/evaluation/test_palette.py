import numpy as np
import pytest

from evaluation.palette import (
    ciede2000,
    color_area,
    expected_shares,
    hex_to_rgb,
    lab_to_srgb,
    largest_off_palette_color,
    palette_adherence,
    palette_balance_distance,
    palette_report,
    rgb_to_hex,
    srgb_to_lab,
)

# Sharma, Wu & Dalal (2005) CIEDE2000 test data: (Lab1, Lab2, expected ΔE00).
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
]


@pytest.mark.parametrize(("lab1", "lab2", "expected"), SHARMA)
def test_ciede2000_matches_published_values(lab1, lab2, expected):
    assert ciede2000(np.array(lab1), np.array(lab2)) == pytest.approx(expected, abs=1e-4)
    # symmetric
    assert ciede2000(np.array(lab2), np.array(lab1)) == pytest.approx(expected, abs=1e-4)


def test_srgb_to_lab_reference_points():
    lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]]))
    assert lab[0] == pytest.approx([100.0, 0.0, 0.0], abs=0.01)
    assert lab[1] == pytest.approx([0.0, 0.0, 0.0], abs=0.01)
    assert lab[2] == pytest.approx([53.24, 80.09, 67.20], abs=0.05)


PALETTE = [hex_to_rgb("#1A9E9E"), hex_to_rgb("#F5F5F5"), hex_to_rgb("#F58C1E")]


def test_adherence_is_the_share_of_on_palette_pixels():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image[:, :7] = PALETTE[0]  # 70 % teal
    image[:, 7:] = (220, 40, 40)  # 30 % red: far from every brand colour
    assert palette_adherence(image, PALETTE, tolerance=12) == pytest.approx(0.7)


def test_adherence_tolerates_small_shifts_but_not_large_ones():
    near = np.full((4, 4, 3), (28, 160, 156), dtype=np.uint8)  # teal, slightly off
    far = np.full((4, 4, 3), (30, 60, 200), dtype=np.uint8)  # blue
    assert palette_adherence(near, PALETTE, tolerance=12) == 1.0
    assert palette_adherence(far, PALETTE, tolerance=12) == 0.0


def test_white_is_not_confused_with_yellow():
    yellow = np.full((2, 2, 3), (245, 235, 120), dtype=np.uint8)
    assert palette_adherence(yellow, [hex_to_rgb("#F5F5F5")], tolerance=12) == 0.0


def test_report_shares_split_by_colour():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:2] = PALETTE[1]
    image[2:] = PALETTE[2]
    report = palette_report(image, PALETTE, tolerance=12)
    assert report.shares == pytest.approx((0.0, 0.5, 0.5))
    assert report.adherence == pytest.approx(1.0)
    assert report.p90_distance == pytest.approx(0.0, abs=1e-6)


def test_empty_palette_is_an_error():
    with pytest.raises(ValueError, match="palette is empty"):
        palette_adherence(np.zeros((2, 2, 3), dtype=np.uint8), [], tolerance=12)


TEAL, WHITE, ORANGE, RED = (26, 158, 158), (245, 245, 245), (245, 140, 30), (220, 40, 40)


def _blocks(*parts: tuple[tuple[int, int, int], int], width: int = 100) -> np.ndarray:
    """Horizontal bands: (colour, number of rows) each; 100 rows make shares exact percents."""
    return np.concatenate(
        [np.tile(np.array(c, np.uint8), (rows, width, 1)) for c, rows in parts], axis=0
    )


def test_color_area_measures_the_share_within_tolerance():
    image = _blocks((TEAL, 97), (RED, 3))
    assert color_area(image, [RED], 12) == pytest.approx(0.03)
    # a colour 5 units away is within tolerance; the brand teal is not red
    assert color_area(_blocks(((215, 45, 40), 100)), [RED], 12) == 1.0
    assert color_area(image, [], 12) == 0.0


def test_large_images_are_sampled_without_changing_the_share():
    image = np.tile(_blocks((TEAL, 80), (RED, 20)), (20, 20, 1))  # 2000 x 2000
    assert color_area(image, [RED], 12) == pytest.approx(0.2, abs=0.01)


def test_expected_shares_fill_in_unstated_colours():
    assert expected_shares([0.4, 0.4, 0.2]) == pytest.approx([0.4, 0.4, 0.2])
    assert expected_shares([0.5, None, None]) == pytest.approx([0.5, 0.25, 0.25])
    assert expected_shares([None, None]) is None
    # shares that do not add up to one are a proportion
    assert expected_shares([0.2, 0.2]) == pytest.approx([0.5, 0.5])


def test_palette_balance_distance_is_the_total_variation_of_on_palette_shares():
    expected = np.array([0.4, 0.4, 0.2])
    assert palette_balance_distance([0.4, 0.4, 0.2], expected) == pytest.approx(0.0)
    # off-palette pixels are not counted twice: half the image on-palette, right proportions
    assert palette_balance_distance([0.2, 0.2, 0.1], expected) == pytest.approx(0.0)
    # all teal: 60 % of the pixels would need another brand colour
    assert palette_balance_distance([0.7, 0.0, 0.0], expected) == pytest.approx(0.6)
    assert palette_balance_distance([0.0, 0.0, 0.0], expected) is None


def test_largest_off_palette_color_finds_a_swapped_brand_colour():
    purple = (128, 40, 160)
    image = _blocks((WHITE, 60), (purple, 30), (ORANGE, 10))
    off = largest_off_palette_color(image, [TEAL, WHITE, ORANGE], 12)
    assert off is not None
    assert off.share == pytest.approx(0.3, abs=0.01)
    assert max(abs(a - b) for a, b in zip(off.rgb, purple, strict=True)) <= 2
    assert largest_off_palette_color(_blocks((TEAL, 100)), [TEAL, WHITE], 12) is None


@pytest.mark.parametrize(("start", "end"), [(TEAL, WHITE), (TEAL, ORANGE), (WHITE, ORANGE)])
def test_a_gradient_between_brand_colours_is_not_an_off_palette_colour(start, end):
    t = np.linspace(0, 1, 256)[None, :, None]
    ramp = np.array(start) * (1 - t) + np.array(end) * t
    image = np.broadcast_to(ramp.round().astype(np.uint8), (64, 256, 3))
    assert largest_off_palette_color(image, [TEAL, WHITE, ORANGE], 12) is None
    # a gradient through colours that are not the brand's is
    grey = np.broadcast_to((255 * t).round().astype(np.uint8), (64, 256, 3))
    off = largest_off_palette_color(grey, [TEAL, WHITE, ORANGE], 12)
    assert off is not None and off.share > 0.15


def test_lab_to_srgb_inverts_srgb_to_lab():
    for rgb in (TEAL, WHITE, ORANGE, RED, (0, 0, 0), (255, 255, 255)):
        assert lab_to_srgb(srgb_to_lab(np.array(rgb, dtype=np.float64))) == rgb
    assert rgb_to_hex(TEAL) == "#1A9E9E"
