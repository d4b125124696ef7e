"""What one micro-batch draws: a pure function of its position, the ground of exact resume."""

import pytest
import torch

from training.train_lora import MicroBatch, batch_indices, sample_micro_batch

N = 10
MEAN = torch.arange(N * 4 * 2 * 2, dtype=torch.float32).reshape(N, 4, 2, 2) / 10
STD = torch.full((N, 4, 2, 2), 0.5)
FIXED = {"size": 4, "num_train_timesteps": 1000, "caption_dropout": 0.3, "shift": 0.1}


def draw(seed: int, step: int, micro: int = 0, process: int = 0) -> MicroBatch:
    return sample_micro_batch(
        MEAN, STD, seed=seed, step=step, micro=micro, process=process, scaling=0.18215, **FIXED
    )


def same(a: MicroBatch, b: MicroBatch) -> bool:
    return all(
        torch.equal(getattr(a, f), getattr(b, f))
        for f in ("index", "latents", "noise", "timesteps", "drop_caption")
    )


# Drawn by the trainer before `sample_micro_batch` was cut out of its loop: a change here
# changes every training run, and a resumed run would no longer match its checkpoints.
RECORDED = [
    (
        (42, 0, 0, 0),
        [4, 0, 5, 6],
        [377, 121, 363, 767],
        [False, True, True, False],
        77.0416,
        15.55497,
    ),
    (
        (42, 7, 1, 1),
        [1, 2, 9, 0],
        [81, 485, 327, 819],
        [False, False, False, False],
        62.92585,
        -3.7748,
    ),
    (
        (1, 5, 0, 0),
        [3, 5, 9, 8],
        [970, 172, 597, 722],
        [False, True, False, True],
        124.86044,
        -3.31306,
    ),
]


@pytest.mark.parametrize(("position", "index", "timesteps", "drop", "latents", "noise"), RECORDED)
def test_draws_are_the_ones_training_has_always_made(
    position, index, timesteps, drop, latents, noise
):
    batch = draw(*position)
    assert batch.index.tolist() == index
    assert batch.timesteps.tolist() == timesteps
    assert batch.drop_caption.tolist() == drop
    assert float(batch.latents.sum()) == pytest.approx(latents, abs=1e-4)
    assert float(batch.noise.sum()) == pytest.approx(noise, abs=1e-4)


def test_a_draw_depends_only_on_its_position():
    assert same(draw(42, 3), draw(42, 3))
    # whatever was drawn before (a resumed run has drawn nothing) does not matter
    torch.manual_seed(123)
    _ = [draw(42, s) for s in range(3)]
    assert same(draw(42, 3), draw(42, 3))
    for other in (draw(42, 4), draw(42, 3, micro=1), draw(42, 3, process=1), draw(7, 3)):
        assert not torch.equal(other.noise, draw(42, 3).noise)


def test_latents_are_sampled_from_each_examples_posterior_and_scaled():
    batch = draw(42, 0)
    mean, std = MEAN[batch.index], STD[batch.index]
    unscaled = batch.latents / 0.18215 + FIXED["shift"]
    # within 5 standard deviations of the example's own mean: the rows follow `index`
    assert ((unscaled - mean).abs() <= 5 * std).all()
    assert batch.latents.shape == batch.noise.shape == (4, 4, 2, 2)
    assert batch.timesteps.dtype == torch.int64


def test_caption_dropout_extremes():
    never = sample_micro_batch(
        MEAN,
        STD,
        seed=0,
        step=0,
        micro=0,
        process=0,
        scaling=1.0,
        **(FIXED | {"caption_dropout": 0.0}),
    )
    always = sample_micro_batch(
        MEAN,
        STD,
        seed=0,
        step=0,
        micro=0,
        process=0,
        scaling=1.0,
        **(FIXED | {"caption_dropout": 1.0}),
    )
    assert not never.drop_caption.any() and always.drop_caption.all()


def test_batch_indices_repeat_only_when_the_dataset_is_smaller_than_the_batch():
    assert batch_indices(seed=1, step=5, micro=0, process=0, n=3, size=5).tolist() == [
        2,
        1,
        1,
        2,
        2,
    ]
    assert len(set(batch_indices(seed=1, step=5, micro=0, process=0, n=10, size=10))) == 10
