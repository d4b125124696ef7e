"""Paired comparison statistics for A/B evaluation on the same prompts and seeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedComparison:
    mean_a: float
    mean_b: float
    delta: float  # mean of (b - a)
    ci95: tuple[float, float]  # bootstrap percentile interval of delta
    win_rate: float  # share of pairs where b > a (ties count half)
    n: int


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, rng: np.random.Generator, resamples: int = 5000
) -> PairedComparison:
    """Mean difference b − a with a percentile bootstrap 95 % interval over the pairs."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"need two equal-length non-empty 1-D samples, got {a.shape} and {b.shape}"
        )
    diffs = b - a
    picks = rng.integers(0, diffs.size, size=(resamples, diffs.size))
    means = diffs[picks].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    wins = float(((diffs > 0) + 0.5 * (diffs == 0)).mean())
    return PairedComparison(
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        delta=float(diffs.mean()),
        ci95=(float(lo), float(hi)),
        win_rate=wins,
        n=int(diffs.size),
    )
