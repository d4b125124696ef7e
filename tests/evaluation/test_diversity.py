import math

import numpy as np
import pytest

from evaluation.diversity import (
    DiversityReport,
    diversity_by_group,
    hamming,
    near_duplicate_rate,
    perceptual_hash,
)
from tests.evaluation.test_quality import LAYOUTS, generated_32, jpeg, marketing_image


def _composition(index: int, size: int = 256) -> np.ndarray:
    """A distinct marketing composition: each index is another layout, colours and placement."""
    layout = LAYOUTS[index % len(LAYOUTS)]
    return marketing_image(np.random.default_rng([index, 11]), size, size, layout)


def _brighter(image: np.ndarray, amount: int) -> np.ndarray:
    return np.clip(image.astype(np.int16) + amount, 0, 255).astype(np.uint8)


def test_hash_has_hash_size_squared_bits() -> None:
    image = _composition(0)
    assert perceptual_hash(image).shape == (64,)
    assert perceptual_hash(image).dtype == bool
    assert perceptual_hash(image, hash_size=16).shape == (256,)
    with pytest.raises(ValueError, match="hash_size"):
        perceptual_hash(image, hash_size=1)


def test_hash_works_on_32px_samples() -> None:
    sample = generated_32()
    bits = perceptual_hash(sample)
    assert bits.shape == (64,)
    assert 0 < bits.sum() < 64
    doubled = np.kron(sample, np.ones((2, 2, 1), dtype=np.uint8))
    assert hamming(bits, perceptual_hash(doubled)) <= 2
    assert perceptual_hash(sample, hash_size=16).shape == (256,)  # upsampled to 64x64


def test_hash_rejects_non_images() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        perceptual_hash(np.zeros((32, 32)))


def test_hamming_counts_differing_bits() -> None:
    a = np.array([True, False, True, True])
    assert hamming(a, a) == 0
    assert hamming(a, ~a) == 4
    assert hamming(a, np.array([True, True, True, False])) == 2
    with pytest.raises(ValueError, match="shape"):
        hamming(a, a[:3])


def test_identical_images_are_all_near_duplicates() -> None:
    image = _composition(3)
    report = near_duplicate_rate([image] * 4)
    assert report == DiversityReport(
        near_duplicate_rate=1.0, duplicate_pairs=6, pairs=6, mean_distance=0.0
    )


def test_re_encoded_or_brightened_copies_are_still_near_duplicates() -> None:
    original = _composition(1)
    images = [
        original,
        jpeg(original, 60),
        _brighter(original, 12),
        _brighter(original, -12),
        _composition(2),
        _composition(4),
    ]
    report = near_duplicate_rate(images)
    assert report.near_duplicate_rate == pytest.approx(4 / 6)
    assert report.duplicate_pairs == 6  # the four versions of `original`, pairwise
    assert report.pairs == 15


def test_different_compositions_have_no_near_duplicates() -> None:
    report = near_duplicate_rate([_composition(i) for i in range(8)])
    assert report.near_duplicate_rate == 0.0
    assert report.duplicate_pairs == 0
    assert report.pairs == 28
    assert report.mean_distance > 3 * 6


def test_a_collapsed_model_is_caught_across_seeds() -> None:
    # Mode collapse: every seed returns the same picture up to noise-level differences.
    base = _composition(5)
    rng = np.random.default_rng(0)
    seeds = [
        np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8) for _ in range(6)
    ]
    assert near_duplicate_rate(seeds).near_duplicate_rate == 1.0


def test_blank_frames_are_near_duplicates_of_each_other() -> None:
    frames = [np.full((64, 64, 3), colour, dtype=np.uint8) for colour in (0, 40, 128, 255)]
    assert near_duplicate_rate(frames).near_duplicate_rate == 1.0


def test_a_single_image_has_no_pairs() -> None:
    report = near_duplicate_rate([_composition(0)])
    assert report.near_duplicate_rate == 0.0
    assert report.duplicate_pairs == 0
    assert report.pairs == 0
    assert math.isnan(report.mean_distance)


def test_max_distance_is_inclusive_and_validated() -> None:
    original = _composition(6)
    pair = [original, _brighter(original, 40)]
    distance = hamming(perceptual_hash(pair[0]), perceptual_hash(pair[1]))
    assert near_duplicate_rate(pair, max_distance=distance).duplicate_pairs == 1
    if distance > 0:
        assert near_duplicate_rate(pair, max_distance=distance - 1).duplicate_pairs == 0
    with pytest.raises(ValueError, match="max_distance"):
        near_duplicate_rate(pair, max_distance=-1)
    with pytest.raises(ValueError, match="no images"):
        near_duplicate_rate([])


def test_groups_are_kept_apart() -> None:
    shared = _composition(0)
    images = [shared, _composition(1), shared, _composition(2), _composition(3), _composition(3)]
    groups = ["prompt a", "prompt a", "prompt b", "prompt b", "prompt c", "prompt c"]
    reports = diversity_by_group(images, groups)
    assert list(reports) == ["prompt a", "prompt b", "prompt c"]
    # `shared` appears in a and b, but images are only compared within their own group.
    assert reports["prompt a"].near_duplicate_rate == 0.0
    assert reports["prompt b"].near_duplicate_rate == 0.0
    assert reports["prompt c"].near_duplicate_rate == 1.0
    assert all(r.pairs == 1 for r in reports.values())


def test_a_group_of_one_has_rate_zero() -> None:
    reports = diversity_by_group([_composition(0), _composition(1)], ["solo", "other"])
    assert reports["solo"].near_duplicate_rate == 0.0
    assert reports["solo"].pairs == 0


def test_groups_need_one_label_per_image() -> None:
    with pytest.raises(ValueError, match="one per image"):
        diversity_by_group([_composition(0)], ["a", "b"])
