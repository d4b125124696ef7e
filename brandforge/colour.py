"""sRGB and luma constants, in one place: the WCAG contrast, CIELAB palette scores, text and logo
detection, image quality and the invisible watermark all read colours through these.

Pure numpy; no I/O. sRGB values are 0..255 unless a name says otherwise.
"""

from __future__ import annotations

import numpy as np

# Rec. 709 / sRGB luminance weights of linear RGB: the ones WCAG's relative luminance uses (it
# rounds them to 4 digits; the XYZ matrix below carries them at full precision).
LUMA_709 = np.array([0.2126, 0.7152, 0.0722])
# BT.601 weights: the Y' that JPEG itself codes (on the gamma-encoded values), so its block
# artefacts, and a watermark that must survive them, are measured on what the codec sees.
LUMA_601 = np.array([0.299, 0.587, 0.114])

# The sRGB transfer function (IEC 61966-2-1): a linear toe below these points, a 2.4 power above.
_DECODE_KNEE = 0.04045  # encoded value (0..1)
_ENCODE_KNEE = 0.0031308  # linear value (0..1)
_TOE_SLOPE = 12.92
_GAMMA = 2.4

# Linear sRGB → CIE XYZ, and the D65 reference white (the illuminant of sRGB).
SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
for _constant in (LUMA_709, LUMA_601, SRGB_TO_XYZ, WHITE_D65):
    _constant.setflags(write=False)  # shared by every caller: an in-place edit would leak


def srgb_to_linear(rgb: np.ndarray | object) -> np.ndarray:
    """Linear-light values (0..1) of sRGB values in 0..255; any shape."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    return np.where(c <= _DECODE_KNEE, c / _TOE_SLOPE, ((c + 0.055) / 1.055) ** _GAMMA)


def linear_to_srgb(linear: np.ndarray | object) -> np.ndarray:
    """sRGB-encoded values (0..1) of linear-light values (0..1); any shape, not clipped."""
    v = np.asarray(linear, dtype=np.float64)
    return np.where(
        v <= _ENCODE_KNEE, _TOE_SLOPE * v, 1.055 * np.maximum(v, 0.0) ** (1 / _GAMMA) - 0.055
    )
