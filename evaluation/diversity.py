"""Diversity across seeds: near-duplicate rate from perceptual hashes (mode-collapse detection).

Pure functions on numpy arrays; no I/O. Images are `uint8` arrays of shape (H, W, 3) in sRGB. A
model that has collapsed returns (nearly) the same picture for every seed of a prompt, so the
share of images with a near-duplicate among their group's other images rises towards 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import fft

from evaluation.quality import luminance


@dataclass(frozen=True)
class DiversityReport:
    near_duplicate_rate: float  # share of images with a near-duplicate among the group's others
    duplicate_pairs: int  # pairs within max_distance
    pairs: int
    mean_distance: float  # mean pairwise Hamming distance; nan when there are no pairs


def perceptual_hash(image: np.ndarray, *, hash_size: int = 8) -> np.ndarray:
    """DCT perceptual hash: `hash_size`² bits of the image's coarse layout (bool array).

    Luminance is area-averaged to (4 hash_size)² pixels (32x32 for the usual 8x8 hash; smaller
    images are upsampled), transformed with a 2-D DCT, and each of the hash_size x hash_size
    lowest-frequency coefficients becomes a bit: above the median of the AC coefficients or not.
    The DC coefficient (mean brightness) stays out of the median so a brightness change does not
    shift every bit; its own bit is set for any image that is not black.
    """
    if hash_size < 2:
        raise ValueError(f"hash_size must be at least 2, got {hash_size}")
    side = 4 * hash_size
    gray = luminance(image).astype(np.float32)
    small = Image.fromarray(gray).resize((side, side), Image.Resampling.BOX)
    coefficients = fft.dctn(np.asarray(small, dtype=np.float64), norm="ortho")
    # Rounded so that the floating-point dust of a flat image does not decide its bits.
    low = np.round(coefficients[:hash_size, :hash_size].ravel(), 6)
    return low > np.median(low[1:])


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    """Number of differing bits between two hashes of the same size."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"hashes differ in shape: {a.shape} vs {b.shape}")
    return int(np.count_nonzero(a != b))


def _pairwise_distances(hashes: np.ndarray) -> np.ndarray:
    # For 0/1 vectors, |a xor b| = |a| + |b| - 2 a.b: one integer matrix product for all pairs.
    bits = hashes.astype(np.int64)
    ones = bits.sum(axis=1)
    return np.asarray(ones[:, None] + ones[None, :] - 2 * (bits @ bits.T))


def _report(hashes: np.ndarray, max_distance: int) -> DiversityReport:
    n = len(hashes)
    if n < 2:
        return DiversityReport(
            near_duplicate_rate=0.0, duplicate_pairs=0, pairs=0, mean_distance=math.nan
        )
    distances = _pairwise_distances(hashes)
    upper = distances[np.triu_indices(n, k=1)]
    close = distances <= max_distance
    np.fill_diagonal(close, False)
    return DiversityReport(
        near_duplicate_rate=float(close.any(axis=1).mean()),
        duplicate_pairs=int(np.count_nonzero(upper <= max_distance)),
        pairs=int(upper.size),
        mean_distance=float(upper.mean()),
    )


def _check_max_distance(max_distance: int) -> None:
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")


def near_duplicate_rate(images: Sequence[np.ndarray], *, max_distance: int = 6) -> DiversityReport:
    """Near duplicates among `images` (e.g. the seeds of one prompt): pHash distance <= max."""
    _check_max_distance(max_distance)
    if len(images) == 0:
        raise ValueError("no images to compare")
    return _report(np.array([perceptual_hash(im) for im in images]), max_distance)


def diversity_by_group(
    images: Sequence[np.ndarray], groups: Sequence[str], *, max_distance: int = 6
) -> dict[str, DiversityReport]:
    """`near_duplicate_rate` within each group (e.g. per prompt); images of different groups are
    never compared, since different prompts should look different anyway."""
    _check_max_distance(max_distance)
    if len(images) != len(groups):
        raise ValueError(f"{len(images)} images but {len(groups)} group labels; need one per image")
    hashes = np.array([perceptual_hash(im) for im in images])
    labels = np.asarray(groups, dtype=object)
    return {
        group: _report(hashes[labels == group], max_distance) for group in dict.fromkeys(groups)
    }
