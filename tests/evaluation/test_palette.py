import numpy as np
import pytest

from evaluation.palette import (
    ciede2000,
    hex_to_rgb,
    palette_adherence,
    palette_report,
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
