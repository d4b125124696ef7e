import numpy as np
import pytest

from evaluation.stats import paired_bootstrap


def test_clear_improvement_has_an_interval_above_zero():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.0, 0.2, size=40)
    b = a + 0.5 + rng.normal(0, 0.05, size=40)
    result = paired_bootstrap(a, b, rng=np.random.default_rng(1))
    assert result.delta == pytest.approx(0.5, abs=0.03)
    assert 0.4 < result.ci95[0] < result.delta < result.ci95[1] < 0.6
    assert result.win_rate == 1.0
    assert result.n == 40


def test_no_difference_has_an_interval_around_zero():
    rng = np.random.default_rng(2)
    a = rng.uniform(size=200)
    b = a + rng.normal(0, 0.1, size=200)
    result = paired_bootstrap(a, b, rng=np.random.default_rng(3))
    assert result.ci95[0] < 0 < result.ci95[1]


def test_ties_count_half_and_mismatched_samples_are_rejected():
    result = paired_bootstrap(
        np.array([1.0, 1.0]), np.array([1.0, 2.0]), rng=np.random.default_rng(0)
    )
    assert result.win_rate == 0.75
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(np.array([1.0]), np.array([1.0, 2.0]), rng=np.random.default_rng(0))
