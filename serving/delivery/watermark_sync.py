"""Where the watermark's tiles lie in an image that may have been cropped or resized.

The watermark (`serving.delivery.watermark`) is one square tile of `TILE_CHIPS` x `TILE_CHIPS`
pseudo-random +-1 chips, `CHIP_PX` pixels each when embedded, repeated over the whole image
from its top-left corner. Each chip belongs to one of the 64 payload bits, whose value flips
the sign of all of that bit's chips. A crop moves the tiles by an unknown offset and a resize
changes their period; this module finds both, blindly:

1. `whiten`: the luminance minus its local mean (the image's own content is mostly smooth, the
   mark is not), minus its mean per 8x8 phase (the blocking of JPEG would otherwise look like
   a period of 8), divided down where texture is strong, clipped at edges.
2. `period_candidates`: a repeated tile makes the residual's autocorrelation peak at every
   multiple of the tile's period, whatever the payload, so the period (the scale) is the
   strongest peak between half and twice the embedded period, refined to a fraction of a
   pixel on its far multiples. One FFT; crops do not move the peaks.
3. `fold`: the residual summed modulo the period into one tile of 2 bins per chip, which adds
   up every repetition of the mark while the image's content averages out.
4. `align`: the folded tile correlated with each bit's chips at every cyclic offset (FFT);
   the offset where the squared correlations of all 64 bits add up highest is where the tile
   starts, whatever the bits are. The signs of the correlations there are the bits.
5. `refine` and `scan`: the period near a candidate where the bits correlate best; and, when
   the autocorrelation finds nothing (a few tiles only: 256 px halved), every period from
   0.47x to 2.15x in steps fine enough for the centre 320 px, about 140 folds.

Everything here is numpy/scipy on float arrays; the caller decides what a reading means.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import cache

import numpy as np

TILE_CHIPS = 32  # chips per tile side: 1024 chips, 16 per payload bit
CHIP_PX = 2  # chip side in pixels when embedded
TILE_PX = TILE_CHIPS * CHIP_PX  # embedded tile period, 64 pixels
BITS = 64
SYNC_KEY = b"brandforge/watermark/v2"  # seeds chip signs and bit layout; changing it unmarks all
BINS = 2 * TILE_CHIPS  # folded tile resolution: 2 bins per chip
# Searched scales (observed period / embedded period); a little beyond 0.5x-2x for rounding.
MIN_SCALE, MAX_SCALE = 0.47, 2.15
# Analysis window: the centre of larger images only, which bounds the reading time and still
# holds 8 periods at 2x.
MAX_WINDOW = 1024
# Pixels a side searched period by period when the autocorrelation fails: 2 periods at 2.15x.
SCAN_WINDOW = 320
WHITEN_SIGMA = 2.0  # pixels: the local mean removed from the luminance before anything else
# Residuals are clipped here (luminance levels): edges would otherwise outweigh the mark. A
# fixed limit, so that the embedder (on the unmarked image) and the reader clip alike.
WHITEN_CLIP = 6.0
WHITEN_FLOOR = 3.0  # local residual strength (levels) below which nothing is weighed down


@cache
def tile_layout() -> tuple[np.ndarray, np.ndarray]:
    """The chips of one tile (TILE_CHIPS, TILE_CHIPS): the payload bit each carries, and its
    keyed sign (+-1). Every bit gets the same number of chips, scattered over the tile."""
    seed = int.from_bytes(hashlib.sha256(SYNC_KEY).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    bits = (rng.permutation(TILE_CHIPS * TILE_CHIPS) % BITS).reshape(TILE_CHIPS, TILE_CHIPS)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(TILE_CHIPS, TILE_CHIPS))
    bits.flags.writeable = signs.flags.writeable = False
    return bits, signs


def chip_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel of an embedded image: the payload bit of its chip, the chip's keyed sign
    and the tile it lies in (row-major index), all (height, width)."""
    bits, signs = tile_layout()
    ys = (np.arange(height) // CHIP_PX) % TILE_CHIPS
    xs = (np.arange(width) // CHIP_PX) % TILE_CHIPS
    tiles_x = -(-width // TILE_PX)
    tile = (np.arange(height) // TILE_PX)[:, None] * tiles_x + (np.arange(width) // TILE_PX)
    return bits[np.ix_(ys, xs)], signs[np.ix_(ys, xs)], tile


def whiten(luma: np.ndarray) -> np.ndarray:
    """The part of the luminance that carries the mark: minus its local mean and its mean per
    8x8 phase, clipped at WHITEN_CLIP so that edges do not dominate."""
    from scipy.ndimage import gaussian_filter

    residual = luma - gaussian_filter(luma, WHITEN_SIGMA, mode="reflect")
    h8, w8 = residual.shape[0] // 8 * 8, residual.shape[1] // 8 * 8
    if h8 and w8:
        phase = residual[:h8, :w8].reshape(h8 // 8, 8, w8 // 8, 8).mean(axis=(0, 2))
        residual = (
            residual
            - np.tile(phase, (-(-residual.shape[0] // 8), -(-residual.shape[1] // 8)))[
                : residual.shape[0], : residual.shape[1]
            ]
        )
    # Texture (noise, foliage) is weighed down by its local strength rather than clipped: a
    # clipped pixel would not show the mark at all.
    local = np.sqrt(gaussian_filter(residual**2, 2 * WHITEN_SIGMA, mode="reflect"))
    return np.clip(residual / (1 + local / WHITEN_FLOOR), -WHITEN_CLIP, WHITEN_CLIP)


def centre_window(array: np.ndarray) -> np.ndarray:
    """The centre of `array`, at most MAX_WINDOW pixels a side."""
    h, w = array.shape
    top, left = max(0, (h - MAX_WINDOW) // 2), max(0, (w - MAX_WINDOW) // 2)
    return array[top : top + MAX_WINDOW, left : left + MAX_WINDOW]


def period_candidates(residual: np.ndarray, *, count: int = 5) -> list[tuple[float, float]]:
    """Up to `count` likely tile periods (vertical, horizontal) in pixels, best first, from the
    peaks of the residual's autocorrelation between MIN_SCALE and MAX_SCALE times TILE_PX."""
    h, w = residual.shape
    spectrum = np.fft.rfft2(residual - residual.mean())
    auto = np.fft.irfft2(np.abs(spectrum) ** 2, s=(h, w))
    auto /= auto[0, 0] + 1e-12
    low = int(np.floor(MIN_SCALE * TILE_PX))
    high = min(int(np.ceil(MAX_SCALE * TILE_PX)), h // 2 - 1, w // 2 - 1)
    if high <= low:
        return []
    # Lattice points of a tile repeated at period L: (0, L), (L, 0), (L, L), (L, -L).
    every = np.arange(1, min(int(2.4 * high) + 2, h // 2, w // 2))
    raw = auto[0, every] + auto[every, 0] + auto[every, every] + auto[-every, every]
    peak = np.zeros(len(raw) + 1)  # peak[L]: raw at lag L above its surroundings
    for lag in range(low, len(raw) + 1):
        peak[lag] = raw[lag - 1] - _background(raw, lag)
    lags = np.arange(low, high + 1)
    # A period also peaks at its double, which a double does not: count both, so that the
    # period outranks its multiples.
    doubled = np.array([peak[2 * lag] if 2 * lag < len(peak) else 0.0 for lag in lags])
    score = peak[lags] + doubled
    order = np.argsort(score)[::-1]
    chosen: list[int] = []
    for index in order:
        lag = int(lags[index])
        if all(abs(lag - c) > 2 for c in chosen):
            chosen.append(lag)
        if len(chosen) == count:
            break
    return [(_refine(auto[:, 0], lag), _refine(auto[0, :], lag)) for lag in chosen]


def _background(raw: np.ndarray, lag: int) -> float:
    """What the image's own content gives around `lag` (raw[i] is lag i + 1): the median at
    10-20 % shorter and longer lags. Smooth (upscaled) images correlate far at short lags."""
    near = [i for i in range(int(0.8 * lag), int(0.9 * lag) + 1)]
    near += [i for i in range(int(np.ceil(1.1 * lag)), int(1.2 * lag) + 1) if i <= len(raw)]
    return float(np.median(raw[np.array(near) - 1]))


def _refine(line: np.ndarray, lag: int) -> float:
    """The period near `lag`, to a fraction of a pixel: the peaks of `line` (autocorrelation
    along one axis) at the far multiples of the period are located and divided back."""
    period = float(lag)
    limit = len(line) // 2 - 2
    multiple = 1
    while multiple * period < limit:
        centre = int(round(multiple * period))
        if centre + 2 >= limit:
            break
        around = line[centre - 2 : centre + 3]
        peak = centre - 2 + int(np.argmax(around))
        left, mid, right = line[peak - 1], line[peak], line[peak + 1]
        curvature = left - 2 * mid + right
        offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
        period = (peak + float(np.clip(offset, -0.5, 0.5))) / multiple
        multiple *= 2
    return period


def fold(residual: np.ndarray, period: tuple[float, float]) -> np.ndarray:
    """The residual summed modulo `period` (vertical, horizontal) into (BINS, BINS): the mean
    of the pixels that fall in each bin (0 where none does)."""
    h, w = residual.shape
    rows = (np.floor((np.arange(h) + 0.5) * BINS / period[0]).astype(np.int64)) % BINS
    cols = (np.floor((np.arange(w) + 0.5) * BINS / period[1]).astype(np.int64)) % BINS
    index = (rows[:, None] * BINS + cols[None, :]).ravel()
    sums = np.bincount(index, weights=residual.ravel(), minlength=BINS * BINS)
    counts = np.bincount(index, minlength=BINS * BINS)
    return (sums / np.maximum(counts, 1)).reshape(BINS, BINS)


@cache
def _templates_spectrum() -> np.ndarray:
    """Conjugate FFT of each bit's chips at fold resolution (BITS, BINS, BINS)."""
    bits, signs = tile_layout()
    up = BINS // TILE_CHIPS
    bit_map = np.kron(bits, np.ones((up, up), dtype=np.int64))
    sign_map = np.kron(signs, np.ones((up, up)))
    templates = np.stack([np.where(bit_map == b, sign_map, 0.0) for b in range(BITS)])
    return np.conj(np.fft.fft2(templates))


@dataclass(frozen=True)
class Alignment:
    """The best tile offset in a folded tile and what the bits read there."""

    offset: tuple[int, int]  # (row, column) bins where the tile starts
    correlations: np.ndarray  # (BITS,) bit correlations there, in noise standard deviations
    agreement: float  # share of the bins whose sign agrees with their decoded bit
    # how far the summed squared correlations at `offset` stand above those at the other
    # offsets, in their robust standard deviations: up to about 8 without a mark (the best of
    # 4096 offsets), tens to hundreds with one
    signal: float
    period: tuple[float, float] = (0.0, 0.0)  # the period folded, pixels (vertical, horizontal)


def align(folded: np.ndarray, *, at_origin: bool = False) -> Alignment:
    """The cyclic offset of the tile in `folded` and the bit correlations there; with
    `at_origin`, the correlations where an uncropped image's tile starts (offset 0, 0)."""
    corr = np.real(np.fft.ifft2(np.fft.fft2(folded)[None] * _templates_spectrum()))
    # corr[b, dy, dx] = sum_u folded[u + d] * template_b[u]; noise from the spread over offsets
    # (0.455 is the median of a chi-square with one degree of freedom)
    noise = np.sqrt(np.median(corr.reshape(BITS, -1) ** 2, axis=1) / 0.455) + 1e-12
    z = corr / noise[:, None, None]
    energy = (z**2).sum(axis=0)
    dy, dx = (0, 0) if at_origin else np.unravel_index(int(np.argmax(energy)), energy.shape)
    # Relative to the other offsets rather than to chi-square(64): periodic content (stripes,
    # dot screens) lifts the energy at every offset, a mark at one only.
    middle = float(np.median(energy))
    spread = 1.4826 * float(np.median(np.abs(energy - middle))) + 1e-9
    signal = (float(energy[dy, dx]) - middle) / spread
    correlations = z[:, dy, dx]
    bits, signs = tile_layout()
    up = BINS // TILE_CHIPS
    shifted = np.roll(folded, (-int(dy), -int(dx)), axis=(0, 1))
    expected = np.kron(signs * np.where(correlations[bits] >= 0, 1.0, -1.0), np.ones((up, up)))
    filled = shifted != 0  # bins no pixel fell in (a period under BINS pixels) do not vote
    agreement = (
        float(np.mean(np.sign(shifted[filled]) == expected[filled])) if filled.any() else 0.0
    )
    return Alignment(
        offset=(int(dy), int(dx)), correlations=correlations, agreement=agreement, signal=signal
    )


def _aligned(residual: np.ndarray, period: tuple[float, float]) -> Alignment:
    return dataclasses.replace(align(fold(residual, period)), period=period)


def refine(residual: np.ndarray, period: tuple[float, float]) -> Alignment:
    """The alignment at the period near `period` where the bits correlate best: the
    autocorrelation locates a period to a few tenths of a pixel, and folding many tiles with
    even that error blurs the far ones. Coarse to fine, 3 x 5 folds."""
    best = _aligned(residual, period)
    step = 0.004  # relative
    for _ in range(3):
        centre = best.period
        for factor in (1 - 2 * step, 1 - step, 1 + step, 1 + 2 * step):
            alignment = _aligned(residual, (centre[0] * factor, centre[1] * factor))
            if alignment.signal > best.signal:
                best = alignment
        step /= 2.5
    return best


def scan(residual: np.ndarray) -> Alignment:
    """The best alignment over every period from MIN_SCALE to MAX_SCALE times TILE_PX, on
    the centre SCAN_WINDOW pixels, refined on the whole residual: for when the
    autocorrelation finds no period (an image of a few tiles: 256 px halved). Bounded: about
    140 folds of at most 320 x 320 pixels."""
    h, w = residual.shape
    top, left = max(0, (h - SCAN_WINDOW) // 2), max(0, (w - SCAN_WINDOW) // 2)
    centre = residual[top : top + SCAN_WINDOW, left : left + SCAN_WINDOW]
    longest = min(MAX_SCALE * TILE_PX, centre.shape[0] / 2, centre.shape[1] / 2)
    side = max(centre.shape)
    best: Alignment | None = None
    period = MIN_SCALE * TILE_PX
    while period <= longest:
        alignment = _aligned(centre, (period, period))
        if best is None or alignment.signal > best.signal:
            best = alignment
        # A relative period error e drifts the edge tiles by e * side / 2 pixels: steps of
        # 2e keep that within one bin (period / BINS), about 140 steps at 320 px.
        period *= 1 + 4 * period / (BINS * side)
    if best is None:
        return _aligned(residual, (float(TILE_PX), float(TILE_PX)))
    return refine(residual, best.period)
