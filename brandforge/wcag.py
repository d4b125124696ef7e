"""WCAG 2.x colour contrast: shared by the brand kit's validation (a layout's fixed text colour on
its plate), the composer that picks text colours, and the evaluation package's text checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brandforge.colour import LUMA_709, srgb_to_linear


def relative_luminance(rgb: Sequence[float] | np.ndarray) -> float | np.ndarray:
    """WCAG 2.x relative luminance (0..1) of sRGB values in 0..255; last axis of size 3."""
    luminance = srgb_to_linear(rgb) @ LUMA_709
    return float(luminance) if np.ndim(luminance) == 0 else luminance


def contrast_ratio(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """WCAG contrast ratio (1..21) of two sRGB colours, in either order."""
    la = float(relative_luminance(a))
    lb = float(relative_luminance(b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)
