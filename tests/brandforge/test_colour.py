import numpy as np
import pytest

from brandforge.colour import LUMA_601, LUMA_709, SRGB_TO_XYZ, linear_to_srgb, srgb_to_linear


def test_srgb_transfer_function_reference_values_and_round_trip():
    assert srgb_to_linear(0).item() == 0.0
    assert srgb_to_linear(255).item() == pytest.approx(1.0)
    # below the 0.04045 knee the curve is linear: 10/255 / 12.92
    assert srgb_to_linear(10).item() == pytest.approx(10 / 255 / 12.92)
    assert srgb_to_linear(128).item() == pytest.approx(0.21586, abs=1e-5)
    levels = np.arange(256)
    assert linear_to_srgb(srgb_to_linear(levels)) * 255 == pytest.approx(levels, abs=1e-9)


def test_luma_weights_sum_to_one_and_match_the_xyz_matrix():
    assert LUMA_709.sum() == pytest.approx(1.0)
    assert LUMA_601.sum() == pytest.approx(1.0)
    # the Y row of sRGB → XYZ is the Rec. 709 luma at full precision
    assert SRGB_TO_XYZ[1] == pytest.approx(LUMA_709, abs=1e-4)
    # white maps to the D65 white point, whose Y is 1
    assert (SRGB_TO_XYZ @ np.ones(3))[1] == pytest.approx(1.0, abs=1e-6)


def test_shared_constants_cannot_be_changed_in_place():
    with pytest.raises(ValueError, match="read-only"):
        LUMA_601[0] = 1.0
