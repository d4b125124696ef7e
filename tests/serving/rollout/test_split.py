"""The canary's traffic split (serving.rollout.split): sticky, proportional, per rollout. Pure."""

from __future__ import annotations

import uuid

import pytest

from serving.rollout.split import Variant, assign_variant, canary_weight


@pytest.mark.parametrize("weight", [5, 25, 50])
def test_split_follows_the_weight(weight: int) -> None:
    clients = [f"client-{i}" for i in range(1000)]
    share = sum(assign_variant(c, 42, weight) == "canary" for c in clients) / 10
    assert abs(share - weight) <= 3, share


def test_split_is_sticky_as_the_weight_grows() -> None:
    clients = [uuid.UUID(int=i).hex for i in range(1000)]
    previous: set[str] = set()
    for weight in (0, 1, 5, 25, 50, 99, 100):
        canary = {c for c in clients if assign_variant(c, 7, weight) == "canary"}
        assert previous <= canary  # nobody moves back to the champion
        assert canary == {c for c in clients if assign_variant(c, 7, weight) == "canary"}
        previous = canary
    assert previous == set(clients)
    assert not any(assign_variant(c, 7, 0) == "canary" for c in clients)
    # each rollout draws its own slice of the clients
    other = {c for c in clients if assign_variant(c, 8, 25) == "canary"}
    assert other != {c for c in clients if assign_variant(c, 7, 25) == "canary"}
    with pytest.raises(ValueError, match="0..100"):
        assign_variant("x", 1, 101)


def test_the_canary_weight_is_the_current_steps_while_running() -> None:
    assert canary_weight(steps=[5, 25, 100], step_index=1, running=True) == 25
    assert canary_weight(steps=[5, 25, 100], step_index=2, running=False) == 0
    assert assign_variant("x", 1, 100) is Variant.CANARY and Variant.CANARY == "canary"
