import numpy as np
import pytest

from brandforge.wcag import contrast_ratio, relative_luminance
from evaluation.palette import hex_to_rgb


def test_relative_luminance_of_reference_colours():
    assert relative_luminance((0, 0, 0)) == 0.0
    assert relative_luminance((255, 255, 255)) == pytest.approx(1.0)
    assert relative_luminance((255, 0, 0)) == pytest.approx(0.2126)
    # below the 0.04045 threshold the curve is linear: 10/255 / 12.92
    assert relative_luminance((10, 10, 10)) == pytest.approx(10 / 255 / 12.92)
    many = relative_luminance(np.array([[0, 0, 0], [255, 255, 255]]))
    assert isinstance(many, np.ndarray)
    assert many.tolist() == pytest.approx([0.0, 1.0])


def test_contrast_ratio_matches_wcag_values():
    grey, white = hex_to_rgb("#777777"), hex_to_rgb("#FFFFFF")
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast_ratio(grey, white) == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio(white, grey) == contrast_ratio(grey, white)
    assert contrast_ratio(hex_to_rgb("#1A9E9E"), hex_to_rgb("#1A9E9E")) == 1.0
    assert contrast_ratio(hex_to_rgb("#BBBBBB"), white) == pytest.approx(1.92, abs=0.01)
