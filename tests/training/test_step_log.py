"""Loss logging in windows (`train.log_every`) and the loop's runtime params, without training.

That a real run logs every step's loss, the last included, is asserted on the tracked run of
`test_train_lora.test_training_is_tracked_and_the_adapter_changes_the_model`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from brandforge.params import ParamsError, load_params, parse_params
from training.checkpoints import checkpoint_key
from training.outputs import step_metrics
from training.train_lora import StepLog, flush_due


@pytest.mark.parametrize("bad", [0, -3, 10_001, 2.5, "10", True, None])
def test_a_bad_log_every_is_an_error_naming_the_file_and_the_key(tmp_path: Path, bad):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"log_every": bad}}))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    message = str(err.value)
    assert message.startswith(f"{path}: 1 invalid setting(s)")
    assert "train.log_every" in message


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_compile_must_be_a_yaml_boolean(bad):
    with pytest.raises(ParamsError, match=r"train\.compile"):
        parse_params({"train": {"compile": bad}})
    assert parse_params({"train": {"compile": True}}).train.compile is True


def _due(max_steps: int, **train) -> list[int]:
    tp = parse_params({"train": {"max_steps": max_steps, **train}}).train
    return [s for s in range(1, max_steps + 1) if flush_due(s, tp, first=1, last=max_steps)]


def test_losses_are_read_every_log_every_steps_and_at_the_first_and_last_step():
    assert _due(25, log_every=10, validation_every=100, checkpoint_every=100) == [1, 10, 20, 25]
    # before a validation grid or a checkpoint (which saves the history) too
    assert _due(12, log_every=10, validation_every=4, checkpoint_every=6) == [1, 4, 6, 8, 10, 12]
    assert _due(3, log_every=1) == [1, 2, 3]


def test_a_resumed_or_stopped_call_reads_its_own_first_and_last_step():
    tp = parse_params({"train": {"max_steps": 600, "log_every": 10}}).train
    due = [s for s in range(5, 38) if flush_due(s, tp, first=5, last=37)]
    assert due == [5, 10, 20, 30, 37]


def test_a_window_gives_back_every_step_once_at_its_own_step():
    log = StepLog(images_per_step=16)
    for step, loss in [(1, 0.5), (2, 0.25), (3, 0.125)]:
        log.add(step, torch.tensor(loss), lr=1e-3)
    rows, times, speed = log.flush()
    assert rows == [
        {"step": 1, "loss": 0.5, "lr": 1e-3},
        {"step": 2, "loss": 0.25, "lr": 1e-3},
        {"step": 3, "loss": 0.125, "lr": 1e-3},
    ]
    assert len(times) == 3 and times == sorted(times) and speed > 0
    assert log.flush() == ([], [], 0.0)  # nothing twice

    metrics = step_metrics(rows, times, images_per_second=speed)
    losses = [(m.step, m.value) for m in metrics if m.key == "train_loss"]
    assert losses == [(1, 0.5), (2, 0.25), (3, 0.125)]
    assert [(m.key, m.step) for m in metrics if m.key != "train_loss"] == [
        ("learning_rate", 1),
        ("learning_rate", 2),
        ("learning_rate", 3),
        ("images_per_second", 3),
    ]


def test_runtime_params_do_not_change_which_checkpoints_resume():
    def key(**train) -> str:
        return checkpoint_key(parse_params({"train": train}).train, "data", "base")

    assert key() == key(log_every=1) == key(log_every=50, compile=True)
    assert key() != key(rank=8)


def test_a_failed_compilation_names_the_setting_and_how_to_turn_it_off():
    import torch._dynamo.exc

    from training.train_lora import compile_failed, is_compile_error

    err = torch._dynamo.exc.TorchDynamoException("C++ compiler not found\nlong trace")
    assert is_compile_error(err) and not is_compile_error(RuntimeError("out of memory"))
    message = str(compile_failed(err))
    assert message.startswith("train.compile: torch.compile of the UNet failed")
    assert "C++ compiler not found" in message and "long trace" not in message
    assert "train.compile: false in params.yaml" in message
