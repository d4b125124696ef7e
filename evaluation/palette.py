"""Colour science for brand compliance: sRGB → CIELAB, CIEDE2000, palette adherence.

Pure functions on numpy arrays; no I/O. Images are `uint8` arrays of shape (H, W, 3) in sRGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

# D65 reference white, the illuminant of sRGB.
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)


def hex_to_rgb(value: str) -> RGB:
    value = value.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in 0..255; any leading shape, last axis of size 3."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _WHITE_D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1), broadcasting over leading axes."""
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]

    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360

    dLp = L2 - L1
    dCp = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, dh)
    dh = np.where(dh < -180, dh + 360, dh)
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dHp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)

    L_bar = (L1 + L2) / 2
    c_bar_p = (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(
        np.abs(h1p - h2p) > 180,
        np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2),
        h_sum / 2,
    )
    h_bar = np.where(c1p * c2p == 0, h_sum, h_bar)

    t = (
        1
        - 0.17 * np.cos(np.radians(h_bar - 30))
        + 0.24 * np.cos(np.radians(2 * h_bar))
        + 0.32 * np.cos(np.radians(3 * h_bar + 6))
        - 0.20 * np.cos(np.radians(4 * h_bar - 63))
    )
    d_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(c_bar_p**7 / (c_bar_p**7 + 25.0**7))
    s_l = 1 + 0.015 * (L_bar - 50) ** 2 / np.sqrt(20 + (L_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c

    return np.sqrt(
        (dLp / s_l) ** 2 + (dCp / s_c) ** 2 + (dHp / s_h) ** 2 + r_t * (dCp / s_c) * (dHp / s_h)
    )


def nearest_palette_distance(
    image: np.ndarray, palette: Sequence[RGB]
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: CIEDE2000 distance to the nearest palette colour, and that colour's index."""
    if len(palette) == 0:
        raise ValueError("palette is empty")
    pixels = srgb_to_lab(np.asarray(image)[..., :3].reshape(-1, 3))
    refs = srgb_to_lab(np.asarray(palette, dtype=np.float64))
    dist = ciede2000(pixels[:, None, :], refs[None, :, :])  # (pixels, colours)
    shape = np.asarray(image).shape[:2]
    return dist.min(axis=1).reshape(shape), dist.argmin(axis=1).reshape(shape)


def palette_adherence(image: np.ndarray, palette: Sequence[RGB], tolerance: float) -> float:
    """Share of pixels within `tolerance` (CIEDE2000) of some brand palette colour."""
    dist, _ = nearest_palette_distance(image, palette)
    return float((dist <= tolerance).mean())


@dataclass(frozen=True)
class PaletteReport:
    adherence: float  # share of pixels within tolerance
    mean_distance: float
    p50_distance: float
    p90_distance: float
    shares: tuple[float, ...]  # per palette colour, share of pixels within tolerance of it


def palette_report(image: np.ndarray, palette: Sequence[RGB], tolerance: float) -> PaletteReport:
    """Adherence plus the distance distribution and the per-colour shares."""
    dist, nearest = nearest_palette_distance(image, palette)
    within = dist <= tolerance
    shares = tuple(float((within & (nearest == i)).mean()) for i in range(len(palette)))
    return PaletteReport(
        adherence=float(within.mean()),
        mean_distance=float(dist.mean()),
        p50_distance=float(np.percentile(dist, 50)),
        p90_distance=float(np.percentile(dist, 90)),
        shares=shares,
    )
