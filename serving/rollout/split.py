"""The canary's traffic split: which variant a client gets, and the canary's share now. Pure.

The router (live generate requests) and the campaign queue (items pinned at submission) both
use `assign_variant` with `canary_weight`, so a campaign item and a client with the same key
would land on the same side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import StrEnum

# Clients are hashed into this many buckets: a weight is honoured to 0.01 %.
BUCKETS = 10_000


class Variant(StrEnum):
    """Which model served a request (`request_log.variant`, `assets.variant`)."""

    CHAMPION = "champion"
    CANARY = "canary"


def assign_variant(client_id: str, rollout_id: int, weight: int) -> Variant:
    """`canary` or `champion` for one client of a rollout, at the canary's `weight` (%).

    The client's bucket is `sha256("<rollout_id>:<client_id>") mod 10000` and it gets the canary
    iff the bucket is below `weight * 100`. So the split is sticky: a client keeps its variant
    while the weight does not drop, and as the weight grows clients only move from champion to
    canary, never back (a client sees one model, not both, during a step). The rollout id is in
    the hash so that each rollout's canary gets a different slice of the clients.
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"weight is a percentage in 0..100, not {weight!r}")
    digest = hashlib.sha256(f"{rollout_id}:{client_id}".encode()).hexdigest()
    return (
        Variant.CANARY
        if int(digest, 16) % BUCKETS < weight * (BUCKETS // 100)
        else (Variant.CHAMPION)
    )


def canary_weight(*, steps: Sequence[int], step_index: int, running: bool) -> int:
    """The canary's traffic share (%) now: the current step's while the rollout runs, else 0
    (a finished rollout has no canary: promoted, it is the champion; rolled back, it is out)."""
    return int(steps[step_index]) if running else 0
