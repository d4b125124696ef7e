"""Colour science for brand compliance: sRGB → CIELAB, CIEDE2000, palette adherence.

Pure functions on numpy arrays; no I/O. Images are `uint8` arrays of shape (H, W, 3) in sRGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brandforge.colour import SRGB_TO_XYZ, WHITE_D65, linear_to_srgb, srgb_to_linear

RGB = tuple[int, int, int]


def hex_to_rgb(value: str) -> RGB:
    value = value.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


# Linear light of every 8-bit sRGB value: images are uint8, so a table lookup replaces the
# transfer function's power per pixel (the same numbers: the table is that function's output).
_LINEAR_OF_BYTE = srgb_to_linear(np.arange(256))
_LINEAR_OF_BYTE.setflags(write=False)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in 0..255; any leading shape, last axis of size 3."""
    rgb = np.asarray(rgb)
    linear = _LINEAR_OF_BYTE[rgb] if rgb.dtype == np.uint8 else srgb_to_linear(rgb)
    xyz = linear @ SRGB_TO_XYZ.T / WHITE_D65
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


@dataclass(frozen=True)
class PaletteDistances:
    """The pixels of one (sub)sampled image in CIELAB with their CIEDE2000 distance to the
    nearest palette colour and that colour's index, each of shape (h, w). Computed once by
    `palette_distances` and read by every palette rule of a compliance report, so the
    costliest step (a distance per pixel and brand colour) is not repeated per rule. `step`
    is the subsampling step that produced them from the full image (1: every pixel)."""

    rgb: np.ndarray  # uint8 (h, w, 3)
    lab: np.ndarray  # (h, w, 3)
    distance: np.ndarray
    nearest: np.ndarray
    step: int = 1

    def every(self, k: int) -> PaletteDistances:
        """The same values at every k-th row and column (a coarser subsample of the image)."""
        if k == 1:
            return self
        cut = (slice(None, None, k), slice(None, None, k))
        return PaletteDistances(
            self.rgb[cut], self.lab[cut], self.distance[cut], self.nearest[cut], self.step * k
        )


def palette_distances(image: np.ndarray, palette: Sequence[RGB], step: int = 1) -> PaletteDistances:
    """Lab values and nearest-palette distances of every pixel of `image` (already subsampled
    by `step`, which is recorded for `sample_of`)."""
    if len(palette) == 0:
        raise ValueError("palette is empty")
    rgb = np.asarray(image)[..., :3]
    lab = srgb_to_lab(rgb)
    refs = srgb_to_lab(np.asarray(palette, dtype=np.float64))
    dist = ciede2000(lab[..., None, :], refs)  # (h, w, colours)
    return PaletteDistances(rgb, lab, dist.min(axis=-1), dist.argmin(axis=-1), step)


def nearest_palette_distance(
    image: np.ndarray, palette: Sequence[RGB]
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: CIEDE2000 distance to the nearest palette colour, and that colour's index."""
    found = palette_distances(image, palette)
    return found.distance, found.nearest


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


def palette_report(
    image: np.ndarray,
    palette: Sequence[RGB],
    tolerance: float,
    *,
    distances: PaletteDistances | None = None,
) -> PaletteReport:
    """Adherence plus the distance distribution and the per-colour shares; `distances`, when
    given, are `palette_distances(image, palette)` already computed."""
    found = distances if distances is not None else palette_distances(image, palette)
    dist, nearest = found.distance, found.nearest
    within = dist <= tolerance
    shares = tuple(float((within & (nearest == i)).mean()) for i in range(len(palette)))
    return PaletteReport(
        adherence=float(within.mean()),
        mean_distance=float(dist.mean()),
        p50_distance=float(np.percentile(dist, 50)),
        p90_distance=float(np.percentile(dist, 90)),
        shares=shares,
    )


def subsample_step(shape: Sequence[int], max_pixels: int) -> int:
    """The row and column step `subsample` takes for an image of `shape` (h, w, ...)."""
    h, w = shape[0], shape[1]
    return max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))


def subsample(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """Every k-th row and column so at most ~max_pixels remain; never invents blended colours."""
    arr = np.asarray(image)[..., :3]
    step = subsample_step(arr.shape, max_pixels)
    return arr[::step, ::step]


def sample_of(
    image: np.ndarray, palette: Sequence[RGB], max_pixels: int, known: PaletteDistances | None
) -> PaletteDistances:
    """`palette_distances` of `subsample(image, max_pixels)`, read from `known` (distances of a
    finer subsample of the same image) when that sample contains this one, else computed."""
    step = subsample_step(np.asarray(image).shape, max_pixels)
    if known is not None and step % known.step == 0:
        return known.every(step // known.step)
    return palette_distances(subsample(image, max_pixels), palette, step)


def _sample_pixels(image: np.ndarray, max_pixels: int) -> np.ndarray:
    return subsample(image, max_pixels).reshape(-1, 3)


def color_area(
    image: np.ndarray,
    colors: Sequence[RGB],
    tolerance: float,
    *,
    max_pixels: int = 262_144,
    lab: np.ndarray | None = None,
) -> float:
    """Share of pixels within `tolerance` (CIEDE2000) of any of `colors` (e.g. forbidden ones).
    `lab`, when given, is the CIELAB of `subsample(image, max_pixels)` already computed."""
    if len(colors) == 0:
        return 0.0
    pixels = srgb_to_lab(_sample_pixels(image, max_pixels)) if lab is None else lab.reshape(-1, 3)
    return float(near_colors(pixels, colors, tolerance).mean())


def near_colors(lab: np.ndarray, colors: Sequence[RGB], tolerance: float) -> np.ndarray:
    """Per pixel of `lab` (any leading shape, last axis 3): within `tolerance` (CIEDE2000) of
    any of `colors`. The map `color_area` averages; region checks average it per tile."""
    if len(colors) == 0:
        return np.zeros(lab.shape[:-1], dtype=bool)
    refs = srgb_to_lab(np.asarray(colors, dtype=np.float64))
    return ciede2000(lab[..., None, :], refs).min(axis=-1) <= tolerance


def off_palette_mask(
    found: PaletteDistances, palette: Sequence[RGB], tolerance: float
) -> np.ndarray:
    """Per sampled pixel (h, w): farther than `tolerance` from every brand colour and not a blend
    of two of them (the pixels `largest_off_palette_color` groups into colours)."""
    off = found.distance > tolerance
    if len(palette) > 1 and off.any():
        rgb = found.rgb[off].astype(np.float64)
        off[off] = _blend_distance(rgb, palette) > _BLEND_RADIUS
    return off


def expected_shares(shares: Sequence[float | None]) -> np.ndarray | None:
    """The brand's intended colour distribution; colours without a share split what is left.

    None when no colour states a share (the brand has no intended balance).
    """
    if all(s is None for s in shares):
        return None
    stated = sum(s for s in shares if s is not None)
    unstated = [s is None for s in shares]
    rest = max(0.0, 1.0 - stated) / max(1, sum(unstated))
    expected = np.array([rest if s is None else s for s in shares], dtype=np.float64)
    total = expected.sum()
    return expected / total if total > 0 else None


def palette_balance_distance(observed: Sequence[float], expected: np.ndarray) -> float | None:
    """Earth mover's distance between the image's and the brand's palette shares, in [0, 1].

    The observed shares are those of the on-palette pixels, renormalised, so off-palette area
    (measured by adherence) is not counted twice. With a 0/1 ground distance between palette
    colours the EMD is the total variation distance: the share of on-palette pixels that would
    have to change colour to match the brand's intended balance. None when no pixel is on-palette.
    """
    obs = np.asarray(observed, dtype=np.float64)
    if obs.sum() <= 0:
        return None
    obs = obs / obs.sum()
    return float(0.5 * np.abs(obs - expected).sum())


@dataclass(frozen=True)
class OffPaletteColor:
    share: float  # share of the image within tolerance of this colour, all of it off-palette
    rgb: RGB


def _blend_distance(rgb: np.ndarray, palette: Sequence[RGB]) -> np.ndarray:
    """Per pixel: sRGB distance to the nearest straight blend between two palette colours."""
    refs = np.asarray(palette, dtype=np.float64)
    best = np.full(rgb.shape[0], np.inf)
    for i in range(len(refs)):
        for j in range(i + 1, len(refs)):
            a, b = refs[i], refs[j]
            ab = b - a
            t = np.clip((rgb - a) @ ab / max(float(ab @ ab), 1e-9), 0.0, 1.0)
            best = np.minimum(best, np.linalg.norm(rgb - (a + t[:, None] * ab), axis=1))
    return best


def largest_off_palette_color(
    image: np.ndarray,
    palette: Sequence[RGB],
    tolerance: float,
    *,
    max_pixels: int = 65_536,
    distances: PaletteDistances | None = None,
) -> OffPaletteColor | None:
    """The most prominent colour that is not the brand's, and how much of the image it covers.

    Catches a swapped brand colour (purple where teal belongs) that still leaves adherence high
    enough. Blends between two brand colours (gradients, anti-aliased edges, transparency) are
    not counted: they are the brand's colours mixed, not a new one. `distances` of a finer
    sample of the image (the palette report's) are reused when they cover this one's pixels.
    """
    sample = sample_of(image, palette, max_pixels, distances)
    rgb = sample.rgb.reshape(-1, 3).astype(np.float64)
    pixels = sample.lab.reshape(-1, 3)
    off_mask = sample.distance.reshape(-1) > tolerance
    if len(palette) > 1 and off_mask.any():
        off_idx = np.flatnonzero(off_mask)
        blends = _blend_distance(rgb[off_idx], palette) <= _BLEND_RADIUS
        off_mask[off_idx[blends]] = False
    off = pixels[off_mask]
    if off.shape[0] == 0:
        return None
    # The densest coarse Lab bin seeds the colour; then count everything within tolerance of
    # its mean, so a colour sitting on a bin boundary is not split in two.
    seed = off[_densest_bin(np.floor(off / 6.0).astype(np.int64))].mean(axis=0)
    share = float((ciede2000(off, seed[None, :]) <= tolerance).sum() / pixels.shape[0])
    return OffPaletteColor(share=share, rgb=lab_to_srgb(seed))


def _densest_bin(bins: np.ndarray) -> np.ndarray:
    """Which rows of `bins` (n x 3 integers) fall in the most populated bin; a tie goes to the
    smallest bin in lexicographic order. Each bin is one mixed-radix integer, which keeps that
    order, so a 1-D `np.unique` does what `np.unique(bins, axis=0)` did at a fraction of the
    cost (it sorts n numbers instead of n rows)."""
    low = bins.min(axis=0)
    span = bins.max(axis=0) - low + 1
    shifted = bins - low
    keys = (shifted[:, 0] * span[1] + shifted[:, 1]) * span[2] + shifted[:, 2]
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return np.asarray(inverse.reshape(-1) == counts.argmax())


# sRGB units (0..255) from the straight line between two brand colours that still count as a
# blend of them; JPEG and resampling move blended pixels a few units off the line.
_BLEND_RADIUS = 10.0


def lab_to_srgb(lab: np.ndarray) -> RGB:
    """The sRGB colour (0..255, clipped to the gamut) of one CIELAB (D65) value."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[0] + 16) / 116
    f = np.array([fy + lab[1] / 500, fy, fy - lab[2] / 200])
    eps, kappa = 216 / 24389, 24389 / 27
    xyz = np.where(f**3 > eps, f**3, (116 * f - 16) / kappa) * WHITE_D65
    linear = np.clip(np.linalg.solve(SRGB_TO_XYZ, xyz), 0, 1)
    c = linear_to_srgb(linear)
    r, g, b = (int(round(v)) for v in np.clip(c * 255, 0, 255))
    return (r, g, b)


def rgb_to_hex(rgb: RGB) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)
