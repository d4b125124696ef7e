"""A rollout's rows: its states, modes and outcomes, opening it, claiming a change of it, its
decisions, and its JSON view (`GET /v1/rollouts/{brand}`, `brandforge rollout status`).

A change of a running rollout is claimed by a conditional UPDATE on its state and step
(`claim`), so two controllers that judge the same step cannot both act on it. Every decision
(start, each step's pass or fail with the measurements it was taken on, and the end) is a
`rollout_decisions` row, so the view shows why a rollout is where it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from brandforge.params import RolloutParams
from serving.db.models import Rollout, RolloutDecision, utcnow
from serving.errors import Conflict


class RolloutState(StrEnum):
    """A rollout's state (`rollouts.state`): running until it ends one of the other ways."""

    RUNNING = "running"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"


class RolloutMode(StrEnum):
    """`live`: the canary serves its share of the traffic; `shadow`: the champion serves
    everyone and the canary draws a copy of each request, only to be measured."""

    LIVE = "live"
    SHADOW = "shadow"


class Outcome(StrEnum):
    """What one evaluation of a running rollout did."""

    WAIT = "wait"  # nothing yet (or another controller acted first)
    PASS = "pass"  # the step passed, the next one started
    PROMOTE = "promote"  # the last step passed: the canary is the champion
    ROLLBACK = "rollback"  # a check failed: the canary alias is removed
    ABORT = "abort"  # stopped by a person, or the registry changed outside the rollout
    ERROR = "error"  # the evaluation failed (logged); tried again at the next check


def running_rollout(session: Session, brand: str) -> Rollout | None:
    """The brand's running rollout, or None."""
    return session.scalars(
        select(Rollout)
        .where(Rollout.brand == brand, Rollout.state == RolloutState.RUNNING)
        .order_by(Rollout.id.desc())
    ).first()


def latest(session: Session, brand: str) -> Rollout | None:
    """The brand's most recent rollout, running or not."""
    return session.scalars(
        select(Rollout).where(Rollout.brand == brand).order_by(Rollout.id.desc())
    ).first()


def open_rollout(
    session: Session,
    *,
    brand: str,
    name: str,
    version: str,
    champion_version: str,
    settings: RolloutParams,
    mode: RolloutMode,
) -> Rollout:
    """Add the running rollout row (flushed, so its id is known and the brand is claimed by
    the unique index on its running rollout); `Conflict` when another start won the race."""
    now = utcnow()
    rollout = Rollout(
        brand=brand,
        model_name=name,
        canary_version=version,
        champion_version=champion_version,
        steps=list(settings.steps),
        step_index=0,
        mode=mode,
        min_requests=settings.min_requests,
        min_seconds=settings.min_seconds,
        state=RolloutState.RUNNING,
        step_started_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(rollout)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a rollout is already running for {brand} (started concurrently)") from None
    return rollout


def already_running(rollout: Rollout) -> str:
    """Why another rollout of the brand cannot start now."""
    return (
        f"a rollout is already running for {rollout.brand}: #{rollout.id}, "
        f"v{rollout.canary_version} at step {rollout.step_index + 1}/{len(rollout.steps)} "
        f"({rollout.steps[rollout.step_index]} %); abort it first"
    )


def claim(session: Session, rollout: Rollout, now: datetime, **values: Any) -> bool:
    """Change the rollout only if it is still running at the step we judged (flushed, not
    committed); False, with the transaction rolled back, when another controller got
    there first."""
    result = cast(
        CursorResult[Any],
        session.execute(
            update(Rollout)
            .where(
                Rollout.id == rollout.id,
                Rollout.state == RolloutState.RUNNING,
                Rollout.step_index == rollout.step_index,
            )
            .values(updated_at=now, **values)
        ),
    )
    if result.rowcount != 1:
        session.rollback()
        return False
    return True


def decisions(session: Session, rollout_id: int) -> list[RolloutDecision]:
    """The rollout's decisions, oldest first."""
    return list(
        session.scalars(
            select(RolloutDecision)
            .where(RolloutDecision.rollout_id == rollout_id)
            .order_by(RolloutDecision.at, RolloutDecision.id)
        )
    )


def add_decision(
    session: Session,
    rollout: Rollout,
    decision: str,
    reason: str,
    measurements: dict[str, Any],
    *,
    at: datetime,
    step: int | None = None,
    weight: int | None = None,
) -> None:
    """Add (and flush) one decision row: at the rollout's current step and its weight unless
    `step` and `weight` say which step was judged."""
    step = rollout.step_index if step is None else step
    session.add(
        RolloutDecision(
            rollout_id=rollout.id,
            at=at,
            step_index=step,
            weight=int(rollout.steps[step]) if weight is None else weight,
            decision=decision,
            reason=reason,
            measurements=measurements,
        )
    )
    session.flush()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def rollout_view(
    rollout: Rollout, decided: Sequence[RolloutDecision], weight: int
) -> dict[str, Any]:
    """A rollout as a JSON-ready dict: state, reason, mode, step (1-based, of `step_count`;
    `step_index` 0-based), `weight` (the canary's share now), steps, versions, minimums, times
    and the decisions with their measurements, newest last."""
    return {
        "id": rollout.id,
        "brand": rollout.brand,
        "model_name": rollout.model_name,
        "state": rollout.state,
        "running": rollout.state == RolloutState.RUNNING,
        "reason": rollout.reason,
        "mode": rollout.mode,
        "step": rollout.step_index + 1,
        "step_count": len(rollout.steps),
        "step_index": rollout.step_index,
        "steps": list(rollout.steps),
        "weight": weight,
        "canary_version": rollout.canary_version,
        "champion_version": rollout.champion_version,
        "min_requests": rollout.min_requests,
        "min_seconds": rollout.min_seconds,
        "step_started_at": _iso(rollout.step_started_at),
        "created_at": _iso(rollout.created_at),
        "updated_at": _iso(rollout.updated_at),
        "decisions": [
            {
                "at": _iso(d.at),
                "step_index": d.step_index,
                "weight": d.weight,
                "decision": d.decision,
                "reason": d.reason,
                "measurements": d.measurements,
            }
            for d in decided
        ],
    }
