"""The replica's engine without Ray: shared base, resident adapters, batching equivalence."""

from __future__ import annotations

import numpy as np
import pytest

from serving.generator import Engine, ImageJob, ModelNotFound, Rendered, adapter_name, group


def _job(model_id: str, seed: int, prompt: str = "acme banner", steps: int = 3) -> ImageJob:
    return ImageJob(model_id, prompt, "", seed, 32, 32, steps, 2.0)


def _pixels(rendered: Rendered) -> np.ndarray:
    assert rendered.pixels.dtype == np.uint8 and rendered.pixels.shape[2] == 3
    return rendered.pixels.astype(int)


def test_two_versions_share_one_base_and_switch_without_reloading(registry_env):
    engine = Engine()
    v1, v2 = f"{registry_env.name}/1", f"{registry_env.name}/2"
    h1 = engine.load_adapter(v1)
    h2 = engine.load_adapter(v2)
    (base,) = engine.resident().values()  # one base pipeline for both versions
    assert base == sorted([adapter_name(v1), adapter_name(v2)])
    pipe = next(iter(engine._bases.values())).pipe
    unet_id = id(pipe.unet)
    a = engine.render([_job(v1, 7)])[0]
    b = engine.render([_job(v2, 7)])[0]
    again = engine.render([_job(v1, 7)])[0]
    assert id(pipe.unet) == unet_id  # nothing was reloaded
    assert np.array_equal(_pixels(a), _pixels(again))  # deterministic per version
    assert not np.array_equal(_pixels(a), _pixels(b))  # and the adapters differ
    del h2  # Ray Serve calls __del__ when it evicts a version
    assert engine.resident() == {next(iter(engine.resident())): [adapter_name(v1)]}
    assert h1.model_id == v1


@pytest.mark.parametrize("steps", [3, 20])
def test_a_batch_gives_the_images_of_single_calls_with_the_same_seeds(registry_env, steps):
    engine = Engine()
    model = f"{registry_env.name}/1"
    handle = engine.load_adapter(model)  # resident while the handle lives (as in Ray's LRU)
    jobs = [
        _job(model, seed, prompt, steps=steps)
        for seed, prompt in [(1, "acme banner"), (2, "acme poster"), (3, "acme banner")]
    ]
    batched = engine.render(jobs)
    assert [r.batch_size for r in batched] == [3, 3, 3]
    for job, result in zip(jobs, batched, strict=True):
        single = engine.render([job])[0]
        diff = np.abs(_pixels(single) - _pixels(result)).max()
        # Same seeds, same latents; only float rounding of batched kernels differs (measured: 0
        # levels at 3 steps, at most 1 level on one image at 20 steps).
        assert diff <= 1, f"seed {job.seed}: batched differs from single by {diff} levels"
    assert handle.model_id == model


def test_jobs_are_grouped_by_model_and_settings():
    jobs = [_job("m/1", 1), _job("m/2", 2), _job("m/1", 3), _job("m/1", 4, steps=5)]
    assert group(jobs) == [[0, 2], [1], [3]]
    with pytest.raises(ValueError, match="one batch"):
        Engine().render([jobs[0], jobs[1]])


def test_an_unknown_version_is_model_not_found(registry_env):
    with pytest.raises(ModelNotFound, match="has no version 9"):
        Engine().load_adapter(f"{registry_env.name}/9")


def test_a_generator_replica_draws_with_one_thread_per_core_unless_told_otherwise():
    """Ray starts an actor that reserves no CPU with OMP_NUM_THREADS=1; the generator sets
    torch's threads itself."""
    import os

    import torch

    from serving.app import draw_threads

    before = torch.get_num_threads()
    try:
        assert draw_threads(1) == 1 and torch.get_num_threads() == 1
        assert draw_threads(0) == os.cpu_count() == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
