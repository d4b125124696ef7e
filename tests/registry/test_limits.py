"""Image sizes of a registered version: pure, no MLflow."""

import pytest

from registry.limits import (
    DEFAULT_MAX_COST,
    MAX_COST_TAG,
    MAX_SIZE_TAG,
    NATIVE_SIZE_TAG,
    SizeLimits,
    cost_tags,
    default_max_size,
    size_limits,
    size_tags,
)


@pytest.mark.parametrize(
    ("native", "limit"),
    [(32, 128), (256, 1024), (512, 2048), (768, 2048), (1024, 2048), (4096, 4096)],
)
def test_the_default_limit_is_four_times_native_capped_at_2048_never_below_native(native, limit):
    assert default_max_size(native) == limit
    assert size_tags(native) == {NATIVE_SIZE_TAG: str(native), MAX_SIZE_TAG: str(limit)}


def test_a_limit_given_at_registration_wins_and_must_reach_native():
    assert size_tags(512, max_size=768) == {NATIVE_SIZE_TAG: "512", MAX_SIZE_TAG: "768"}
    with pytest.raises(ValueError, match="below the version's native size 512"):
        size_tags(512, max_size=256)
    with pytest.raises(ValueError, match="positive"):
        size_tags(0)


def test_limits_are_read_back_from_the_tags_mlflow_stores():
    tags = size_tags(32) | {"brandforge.brand": "acme"}
    assert size_limits(tags) == SizeLimits(native=32, max=128)
    # the tags win over the base reference the caller may know
    assert size_limits(tags, base_resolution=512) == SizeLimits(native=32, max=128)


def test_versions_registered_before_the_tags_fall_back_to_their_base_else_512():
    assert size_limits({}, base_resolution=32) == SizeLimits(native=32, max=128)
    assert size_limits({"brandforge.brand": "acme"}) == SizeLimits(native=512, max=2048)
    assert size_limits(None) == SizeLimits(native=512, max=2048)
    assert size_limits({}, base_resolution=0) == SizeLimits(native=512, max=2048)


@pytest.mark.parametrize("bad", ["", "abc", "-32", "0", "3.5"])
def test_a_damaged_tag_is_ignored_not_an_error(bad, caplog):
    # a hand-edited tag must not take the version out of service: fall back as if absent
    assert size_limits({NATIVE_SIZE_TAG: bad}, base_resolution=64) == SizeLimits(64, 256)
    assert size_limits({NATIVE_SIZE_TAG: "64", MAX_SIZE_TAG: bad}) == SizeLimits(64, 256)
    assert size_limits({NATIVE_SIZE_TAG: "64", MAX_COST_TAG: bad}) == SizeLimits(64, 256, 2000)
    assert "not a positive number" in caplog.text


def test_a_limit_tag_below_native_is_raised_to_native():
    assert size_limits({NATIVE_SIZE_TAG: "512", MAX_SIZE_TAG: "256"}) == SizeLimits(512, 512)


def test_the_cost_limit_is_a_tag_read_back_with_the_sizes_and_defaults_without_it():
    tags = size_tags(32) | cost_tags(500)
    assert size_limits(tags) == SizeLimits(native=32, max=128, max_cost=500)
    assert size_limits(size_tags(32)).max_cost == DEFAULT_MAX_COST
    assert cost_tags() == {MAX_COST_TAG: str(DEFAULT_MAX_COST)}
    with pytest.raises(ValueError, match="register.max_cost 0: expected at least 1"):
        cost_tags(0)


def test_sampler_tags_round_trip_and_a_bad_tag_falls_back_to_the_server():
    from registry.sampler import GUIDANCE_TAG, STEPS_TAG, Sampler, sampler_of, sampler_tags

    assert sampler_tags(20, 1.5) == {STEPS_TAG: "20", GUIDANCE_TAG: "1.5"}
    assert sampler_of(sampler_tags(20, 1.5)) == Sampler(steps=20, guidance=1.5)
    assert sampler_of({}) == Sampler(steps=None, guidance=None)  # registered before the tags
    for steps, guidance in (("0", "nan"), ("201", "inf"), ("x", "-1"), ("2.5", "31")):
        assert sampler_of({STEPS_TAG: steps, GUIDANCE_TAG: guidance}) == Sampler(None, None)
    for bad in ((0, 1.0), (201, 1.0), (20, float("nan")), (20, -0.5), (20, 30.5)):
        with pytest.raises(ValueError, match="expected"):
            sampler_tags(*bad)
