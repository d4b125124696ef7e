"""The step analysis of a canary rollout: is the canary as good as the champion? Pure.

`analyse` judges one step from both sides' requests of the same window (request_log rows or
mappings with the same fields); a `wait` or `fail` names the parameter that decided it. No
database, no registry: the controller (`serving.rollout.controller`) reads the rows and acts on
the decision. `RolloutOverrides` are the per-rollout settings a client may give (steps and the
minimums a step needs), bounded so that every step can end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from brandforge.params import RolloutParams

# Measured differences within this of a limit count as equal (float noise must not fail a step).
TOLERANCE = 1e-9
# Bounds of a rollout's own settings: more than this is a typo (or an attempt to stall a rollout
# forever), not a plan.
MAX_STEPS = 20
MAX_MIN_REQUESTS = 1_000_000
MAX_MIN_SECONDS = 30 * 24 * 3600.0


class StepDecision(StrEnum):
    """What the analysis of a step concluded."""

    WAIT = "wait"  # too little canary traffic or time to judge
    PASS = "pass"
    FAIL = "fail"


Step = Annotated[int, Field(strict=True, ge=1, le=100)]


class RolloutOverrides(BaseModel):
    """A rollout's own settings (`POST /v1/rollouts`, `brandforge rollout start`); each one left
    out (None) takes its value from params.yaml `rollout:`."""

    model_config = ConfigDict(extra="forbid")

    steps: list[Step] | None = Field(
        None,
        min_length=1,
        max_length=MAX_STEPS,
        description="canary traffic per step (%): strictly increasing, the last one 100",
    )
    min_requests: int | None = Field(
        None,
        strict=True,
        ge=1,
        le=MAX_MIN_REQUESTS,
        description="canary requests a step needs before it is judged",
    )
    min_seconds: float | None = Field(
        None,
        strict=True,
        ge=0,
        le=MAX_MIN_SECONDS,
        allow_inf_nan=False,
        description="how long a step lasts at least (s)",
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"steps must be strictly increasing percentages, not {value}")
        if value[-1] != 100:
            raise ValueError("the last step must be 100 (all traffic on the canary)")
        return value

    def settings(self, params: RolloutParams) -> RolloutParams:
        """`params` with these overrides applied."""
        given = self.model_dump(exclude_none=True)
        return params.model_copy(update=given)


@dataclass(frozen=True)
class Check:
    """One threshold of the step analysis: `measured` against `limit` (named after the
    `rollout:` parameter). `passed` is None when the check was skipped (`note` says why)."""

    name: str
    parameter: str
    measured: float | None
    limit: float
    passed: bool | None
    note: str = ""


@dataclass(frozen=True)
class StepAnalysis:
    """What `analyse` concluded about one step: `decision` is `wait` (too little canary traffic
    or time to judge), `pass` or `fail`; `reasons` say why (for `wait`: what is missing, for
    `fail`: each broken threshold with its measured value and limit); `measurements` are both
    sides' numbers and every check, JSON-ready (stored with the decision)."""

    decision: StepDecision
    reasons: list[str]
    measurements: dict[str, Any]
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    def summary(self) -> str:
        """One line for a decision row, a history tag or a log."""
        if self.reasons:
            return "; ".join(self.reasons)
        done = [c for c in self.checks if c.passed]
        skipped = [c for c in self.checks if c.passed is None]
        text = f"{len(done)} check(s) within limits"
        if skipped:
            text += " (skipped: " + "; ".join(f"{c.name}: {c.note}" for c in skipped) + ")"
        return text


def _field(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def _p95(values: list[float]) -> float | None:
    """The nearest-rank 95th percentile (a value that was measured), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def side_measurements(rows: Sequence[Any]) -> dict[str, Any]:
    """Requests, errors, error rate, p95 latency (successful requests), mean compliance
    (weighted by images) and failed-compliance rate of request_log-like rows (objects or
    mappings with `ok`, `latency_s`, `images`, `compliance_mean`, `compliance_failed`).
    A rate or mean without data is None, never 0: no data is not a good result."""
    requests = len(rows)
    ok_rows = [r for r in rows if _field(r, "ok")]
    errors = requests - len(ok_rows)
    images = sum(int(_field(r, "images") or 0) for r in ok_rows)
    failed = sum(int(_field(r, "compliance_failed") or 0) for r in ok_rows)
    weighted, scored = 0.0, 0
    for r in ok_rows:
        mean = _field(r, "compliance_mean")
        if mean is not None:
            weight = max(int(_field(r, "images") or 0), 1)
            weighted += float(mean) * weight
            scored += weight
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "ok_requests": len(ok_rows),
        "p95_latency_s": _p95([float(_field(r, "latency_s")) for r in ok_rows]),
        "images": images,
        "compliance_mean": weighted / scored if scored else None,
        "compliance_failed": failed,
        "failed_compliance_rate": failed / images if images else None,
    }


def _check(
    name: str, parameter: str, measured: float | None, limit: float, skip: str = ""
) -> Check:
    if measured is None or skip:
        return Check(name, parameter, None, limit, None, skip or "no data")
    return Check(name, parameter, measured, limit, measured <= limit + TOLERANCE)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _checks(champion: dict[str, Any], canary: dict[str, Any], params: RolloutParams) -> list[Check]:
    """The four comparisons of `analyse`, each skipped (with a note) without data to compare."""
    no_champion = "the champion has no requests in this window" if not champion["requests"] else ""
    if champion["p95_latency_s"] is None or not champion["p95_latency_s"] > 0:
        latency = _check(
            "p95 latency ratio",
            "max_p95_latency_ratio",
            None,
            params.max_p95_latency_ratio,
            "the champion has no successful requests in this window",
        )
    else:
        ratio = (
            None
            if canary["p95_latency_s"] is None
            else canary["p95_latency_s"] / champion["p95_latency_s"]
        )
        latency = _check(
            "p95 latency ratio", "max_p95_latency_ratio", ratio, params.max_p95_latency_ratio
        )
    return [
        _check(
            "error rate increase",
            "max_error_rate_increase",
            _diff(canary["error_rate"], champion["error_rate"]),
            params.max_error_rate_increase,
            no_champion,
        ),
        latency,
        _check(
            "compliance drop",
            "max_compliance_drop",
            _diff(champion["compliance_mean"], canary["compliance_mean"]),
            params.max_compliance_drop,
            no_champion,
        ),
        _check(
            "failed-compliance increase",
            "max_failed_compliance_increase",
            _diff(canary["failed_compliance_rate"], champion["failed_compliance_rate"]),
            params.max_failed_compliance_increase,
            no_champion,
        ),
    ]


def _failure(c: Check, champion: dict[str, Any], canary: dict[str, Any]) -> str:
    """Why a failed check failed: the measured value, both sides and the parameter's limit."""

    def side(key: str) -> str:
        return f"canary {canary[key]:.3f} vs champion {champion[key]:.3f}"

    assert c.measured is not None
    if c.parameter == "max_error_rate_increase":
        detail = f"error rate rose by {c.measured:.3f} ({side('error_rate')})"
    elif c.parameter == "max_p95_latency_ratio":
        detail = f"p95 latency is {c.measured:.2f}x the champion's ({side('p95_latency_s')} s)"
    elif c.parameter == "max_compliance_drop":
        detail = f"mean compliance dropped by {c.measured:.3f} ({side('compliance_mean')})"
    else:
        detail = (
            f"failed-compliance rate rose by {c.measured:.3f} ({side('failed_compliance_rate')})"
        )
    return f"{detail}; {c.parameter} is {c.limit:g}"


def analyse(
    champion_rows: Sequence[Any],
    canary_rows: Sequence[Any],
    params: RolloutParams,
    *,
    elapsed_s: float,
    min_requests: int,
    min_seconds: float,
) -> StepAnalysis:
    """Judge one step from the champion's and the canary's requests of the same window.

    `wait` while the canary has fewer than `min_requests` requests or the step has run less
    than `min_seconds`: a step with too little evidence neither passes nor fails. Otherwise
    `fail` when any threshold of `params` is broken, else `pass`:

    - canary error rate − champion error rate ≤ `max_error_rate_increase`;
    - canary p95 latency / champion p95 latency ≤ `max_p95_latency_ratio`;
    - champion mean compliance − canary mean compliance ≤ `max_compliance_drop`;
    - canary failed-compliance rate − champion's ≤ `max_failed_compliance_increase`.

    A comparison is skipped (and says so) when a side has nothing to compare: the champion
    has no requests in the window (a live step at 100 % sends it none), no successful ones
    (latency), or no scored images (compliance).
    """
    champion = side_measurements(champion_rows)
    canary = side_measurements(canary_rows)
    checks = _checks(champion, canary, params)
    measurements: dict[str, Any] = {
        "elapsed_s": round(float(elapsed_s), 3),
        "min_requests": min_requests,
        "min_seconds": min_seconds,
        "champion": champion,
        "canary": canary,
        "checks": [asdict(c) for c in checks],
    }
    waiting = []
    if canary["requests"] < min_requests:
        waiting.append(
            f"the canary has {canary['requests']} request(s) in this step; "
            f"min_requests is {min_requests}"
        )
    if elapsed_s < min_seconds:
        waiting.append(f"the step has run {elapsed_s:.0f} s; min_seconds is {min_seconds:g}")
    if waiting:
        return StepAnalysis(StepDecision.WAIT, waiting, measurements, checks)
    reasons = [_failure(c, champion, canary) for c in checks if c.passed is False]
    decision = StepDecision.FAIL if reasons else StepDecision.PASS
    return StepAnalysis(decision, reasons, measurements, checks)
