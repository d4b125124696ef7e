"""Canary rollouts: the sticky traffic split, the step analysis and the controller (DESIGN.md, 5).

A rollout moves a brand's model version from `canary` to `champion` in steps of traffic
(`rollout.steps` in params.yaml, e.g. 5 % → 25 % → 50 % → 100 %). At each step the canary's
requests are compared with the champion's over the same window (since the step started): error
rate, p95 latency, mean brand-compliance score and the share of images that failed the brand
kit. A live step at 100 % sends the champion nothing, so it is compared with the champion's
latest requests before that step. A step that holds for long enough (`min_seconds`) and on
enough canary requests (`min_requests`) passes and the next one starts; after the last step the
canary becomes the champion in the registry. A step that breaks a threshold rolls the canary
back: its alias is removed and the champion (never changed during the rollout) keeps serving
everyone.

    router ──record_request──► request_log ──evaluate (every check_every_s)──► rollouts
                                                   │ pass / fail            rollout_decisions
                                                   ▼
                                 registry aliases (canary, champion) + version history tags

Everything is in the serving database (`rollouts`, `rollout_decisions`, `request_log`), so a
restarted server, or another replica, resumes a running rollout where it was. Every change
writes an audit row (`serving.auth.audit`) and a history tag on the canary version
(`registry.core.record`); every decision keeps the measurements it was taken on.

State changes are claimed in the database first (a conditional UPDATE on the rollout's state
and step), then the registry is changed, then the transaction commits: two controllers that
look at the same rollout at once cannot both advance it, and a registry error leaves the
rollout as it was, to be tried again at the next check.

`analyse` and `assign_variant` are pure functions; the router uses `assign_variant` with
`RolloutController.weight`. Ray is not imported here: the controller runs anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from brandforge.params import RolloutParams, format_validation_errors
from brandforge.tracking import registered_model_name
from registry.core import RegistryError, alias_version, client, promote, record
from serving.auth import audit
from serving.db.models import (
    ROLLOUT_MODES,
    VARIANTS,
    RequestLog,
    Rollout,
    RolloutDecision,
    utcnow,
)

log = logging.getLogger(__name__)

# The audit actor (and registry history author) of the controller's own decisions.
SYSTEM = "system"
# Clients are hashed into this many buckets: a weight is honoured to 0.01 %.
BUCKETS = 10_000
# Measured differences within this of a limit count as equal (float noise must not fail a step).
TOLERANCE = 1e-9
NO_REASON = "(no reason given)"
# What the step analysis reads of each request_log row.
_MEASURED = (
    RequestLog.ok,
    RequestLog.latency_s,
    RequestLog.images,
    RequestLog.compliance_mean,
    RequestLog.compliance_failed,
)
# A live step at 100 % is judged against at least this many of the champion's latest requests.
BASELINE_REQUESTS = 50


class RolloutError(ValueError):
    """A rollout action that cannot happen; the message says why (and what to do instead)."""


# ---------------------------------------------------------------------------------------------
# Traffic split


def assign_variant(client_id: str, rollout_id: int, weight: int) -> str:
    """`"canary"` or `"champion"` for one client of a rollout, at the canary's `weight` (%).

    The client's bucket is `sha256("<rollout_id>:<client_id>") mod 10000` and it gets the canary
    iff the bucket is below `weight * 100`. So the split is sticky: a client keeps its variant
    while the weight does not drop, and as the weight grows clients only move from champion to
    canary, never back (a client sees one model, not both, during a step). The rollout id is in
    the hash so that each rollout's canary gets a different slice of the clients.
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"weight is a percentage in 0..100, not {weight!r}")
    digest = hashlib.sha256(f"{rollout_id}:{client_id}".encode()).hexdigest()
    return "canary" if int(digest, 16) % BUCKETS < weight * (BUCKETS // 100) else "champion"


# ---------------------------------------------------------------------------------------------
# Step analysis (pure)


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

    decision: str
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
    no_champion = "the champion has no requests in this window" if not champion["requests"] else ""

    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

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
    checks = [
        _check(
            "error rate increase",
            "max_error_rate_increase",
            diff(canary["error_rate"], champion["error_rate"]),
            params.max_error_rate_increase,
            no_champion,
        ),
        latency,
        _check(
            "compliance drop",
            "max_compliance_drop",
            diff(champion["compliance_mean"], canary["compliance_mean"]),
            params.max_compliance_drop,
            no_champion,
        ),
        _check(
            "failed-compliance increase",
            "max_failed_compliance_increase",
            diff(canary["failed_compliance_rate"], champion["failed_compliance_rate"]),
            params.max_failed_compliance_increase,
            no_champion,
        ),
    ]
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
        return StepAnalysis("wait", waiting, measurements, checks)

    def side(key: str) -> str:
        return f"canary {canary[key]:.3f} vs champion {champion[key]:.3f}"

    reasons = []
    for c in checks:
        if c.passed is not False:
            continue
        assert c.measured is not None
        if c.parameter == "max_error_rate_increase":
            detail = f"error rate rose by {c.measured:.3f} ({side('error_rate')})"
        elif c.parameter == "max_p95_latency_ratio":
            detail = f"p95 latency is {c.measured:.2f}x the champion's ({side('p95_latency_s')} s)"
        elif c.parameter == "max_compliance_drop":
            detail = f"mean compliance dropped by {c.measured:.3f} ({side('compliance_mean')})"
        else:
            detail = (
                f"failed-compliance rate rose by {c.measured:.3f} "
                f"({side('failed_compliance_rate')})"
            )
        reasons.append(f"{detail}; {c.parameter} is {c.limit:g}")
    return StepAnalysis("fail" if reasons else "pass", reasons, measurements, checks)


# ---------------------------------------------------------------------------------------------
# The controller


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class RolloutController:
    """Starts, judges, promotes, rolls back and aborts canary rollouts; all state in the
    serving database (`sessions`), so any controller on the same database continues a running
    rollout. `params` gives the defaults (steps, minimums) and the thresholds. `client_factory`
    makes the MLflow client (default `registry.core.client`, which follows the settings)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        params: RolloutParams,
        *,
        client_factory: Callable[[], Any] = client,
    ) -> None:
        self.sessions = sessions
        self.params = params
        self._registry = client_factory

    # -- reading ------------------------------------------------------------------------------

    @staticmethod
    def _running(session: Session, brand: str) -> Rollout | None:
        return session.scalars(
            select(Rollout)
            .where(Rollout.brand == brand, Rollout.state == "running")
            .order_by(Rollout.id.desc())
        ).first()

    def current(self, brand: str) -> Rollout | None:
        """The brand's running rollout (detached, readable), or None."""
        with self.sessions() as session:
            return self._running(session, brand)

    @staticmethod
    def weight(rollout: Rollout) -> int:
        """The canary's traffic share (%) now: the current step's while running, else 0 (a
        finished rollout has no canary: promoted, it is the champion; rolled back, it is out)."""
        return int(rollout.steps[rollout.step_index]) if rollout.state == "running" else 0

    def get(self, brand: str) -> dict[str, Any]:
        """The brand's running rollout, else its last finished one, as a JSON-ready dict: state,
        reason, mode, step (1-based, of `step_count`; `step_index` 0-based), weight, steps,
        versions, minimums, times and the decisions with their measurements, newest last.
        `{"brand": ..., "state": "none", ...}` when the brand never had one."""
        with self.sessions() as session:
            rollout = (
                self._running(session, brand)
                or session.scalars(
                    select(Rollout).where(Rollout.brand == brand).order_by(Rollout.id.desc())
                ).first()
            )
            if rollout is None:
                return {"brand": brand, "state": "none", "running": False, "decisions": []}
            decisions = session.scalars(
                select(RolloutDecision)
                .where(RolloutDecision.rollout_id == rollout.id)
                .order_by(RolloutDecision.at, RolloutDecision.id)
            ).all()
        return {
            "id": rollout.id,
            "brand": rollout.brand,
            "model_name": rollout.model_name,
            "state": rollout.state,
            "running": rollout.state == "running",
            "reason": rollout.reason,
            "mode": rollout.mode,
            "step": rollout.step_index + 1,
            "step_count": len(rollout.steps),
            "step_index": rollout.step_index,
            "steps": list(rollout.steps),
            "weight": self.weight(rollout),
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
                for d in decisions
            ],
        }

    # -- writing ------------------------------------------------------------------------------

    def _settings(
        self, steps: list[int] | None, min_requests: int | None, min_seconds: float | None
    ) -> RolloutParams:
        given = {"steps": steps, "min_requests": min_requests, "min_seconds": min_seconds}
        updates = {k: v for k, v in given.items() if v is not None}
        try:
            return RolloutParams.model_validate({**self.params.model_dump(), **updates})
        except ValidationError as err:
            raise RolloutError(format_validation_errors(err, "rollout settings")) from None

    def start(
        self,
        brand: str,
        version: str | int,
        *,
        steps: list[int] | None = None,
        min_requests: int | None = None,
        min_seconds: float | None = None,
        mode: str = "live",
        actor: str,
    ) -> Rollout:
        """Start rolling `version` of the brand's model out as the canary; returns the rollout.

        `steps`, `min_requests` and `min_seconds` default to `params`. Raises `RolloutError` (a
        `ValueError`) when a rollout already runs for the brand, the brand has no champion, the
        version is the champion, or the registry refuses the `canary` alias (missing, rejected
        or archived version, missing artifacts: the registry's own message).
        """
        version = str(version).strip()
        if mode not in ROLLOUT_MODES:
            raise RolloutError(f"unknown mode {mode!r}; use one of {', '.join(ROLLOUT_MODES)}")
        settings = self._settings(steps, min_requests, min_seconds)
        name = registered_model_name(brand)
        with self.sessions() as session:
            running = self._running(session, brand)
            if running is not None:
                raise RolloutError(self._already_running(running))
            c = self._registry()
            champion = alias_version(c, name, "champion")
            if champion is None:
                raise RolloutError(
                    f"{name} has no champion to compare a canary with; promote one first "
                    f"(`brandforge registry promote {name} --to champion --version N`)"
                )
            if champion.version == version:
                raise RolloutError(f"{name} v{version} is already the champion")
            now = utcnow()
            rollout = Rollout(
                brand=brand,
                model_name=name,
                canary_version=version,
                champion_version=champion.version,
                steps=list(settings.steps),
                step_index=0,
                mode=mode,
                min_requests=settings.min_requests,
                min_seconds=settings.min_seconds,
                state="running",
                step_started_at=now,
                created_at=now,
                updated_at=now,
            )
            session.add(rollout)
            try:
                session.flush()  # claims the brand (unique index on its running rollout)
            except IntegrityError:
                session.rollback()
                raise RolloutError(
                    f"a rollout is already running for {brand} (started concurrently)"
                ) from None
            reason = (
                f"rollout #{rollout.id} started by {actor}: v{version} over champion "
                f"v{champion.version}, steps {'/'.join(map(str, settings.steps))} %, "
                f"mode {mode}"
            )
            holder = alias_version(c, name, "canary")
            if holder is None or holder.version != version:
                try:
                    promote(c, name, "canary", version=version, why=reason)
                except RegistryError as err:
                    raise RolloutError(str(err)) from None
            record(c, name, version, f"rollout #{rollout.id} started", why=reason, who=actor)
            self._decide(
                session,
                rollout,
                "start",
                reason,
                {
                    "steps": list(settings.steps),
                    "min_requests": settings.min_requests,
                    "min_seconds": settings.min_seconds,
                    "mode": mode,
                },
                at=now,
            )
            audit(
                session,
                actor,
                "rollout.start",
                brand,
                rollout_id=rollout.id,
                version=version,
                champion_version=champion.version,
                steps=list(settings.steps),
                mode=mode,
            )
            session.commit()
        log.info("%s", reason)
        return rollout

    @staticmethod
    def _already_running(rollout: Rollout) -> str:
        return (
            f"a rollout is already running for {rollout.brand}: #{rollout.id}, "
            f"v{rollout.canary_version} at step {rollout.step_index + 1}/{len(rollout.steps)} "
            f"({rollout.steps[rollout.step_index]} %); abort it first"
        )

    def record_request(
        self,
        brand: str,
        version: str | int,
        variant: str,
        *,
        ok: bool,
        latency_s: float,
        images: int,
        compliance_scores: Sequence[float | None],
        compliance_passed: Sequence[bool | None],
        rollout_id: int | None,
        at: datetime | None = None,
    ) -> RequestLog:
        """Log one served request (committed): its version and variant, success, latency, image
        count, the mean of its images' compliance scores (None when none was scored) and how
        many images failed the brand kit. Unscored images (None) count in neither."""
        if variant not in VARIANTS:
            raise ValueError(f"variant is one of {', '.join(VARIANTS)}, not {variant!r}")
        if latency_s < 0 or images < 0:
            raise ValueError("latency_s and images cannot be negative")
        scores = [float(s) for s in compliance_scores if s is not None]
        row = RequestLog(
            at=at or utcnow(),
            brand=brand,
            model_version=str(version),
            variant=variant,
            rollout_id=rollout_id,
            ok=bool(ok),
            latency_s=float(latency_s),
            images=int(images),
            compliance_mean=sum(scores) / len(scores) if scores else None,
            compliance_failed=sum(1 for p in compliance_passed if p is False),
        )
        with self.sessions() as session:
            session.add(row)
            session.commit()
        return row

    def evaluate(self, brand: str, *, now: datetime | None = None) -> str:
        """Judge the brand's running rollout's current step and act on it; returns what was
        done: `wait` (nothing yet), `pass` (the next step started), `promote` (the last step
        passed: the canary is the champion), `rollback` (a check failed: the canary alias is
        removed) or `abort` (the registry's aliases changed outside the rollout, or the
        promotion was refused). Raises `RolloutError` when no rollout runs for the brand."""
        running = self.current(brand)
        outcome = None if running is None else self._evaluate(running.id, now)
        if outcome is None:
            raise RolloutError(f"no rollout is running for {brand}")
        return outcome

    def evaluate_all(self, now: datetime | None = None) -> dict[str, str]:
        """`evaluate` every running rollout (the server calls this every `check_every_s`);
        returns brand → outcome. One brand's error (e.g. the registry unreachable) is logged and
        reported as `error`, and does not stop the others: they are tried again next time."""
        with self.sessions() as session:
            running = session.execute(
                select(Rollout.id, Rollout.brand).where(Rollout.state == "running")
            ).all()
        outcomes = {}
        for rollout_id, brand in running:
            try:
                outcome = self._evaluate(rollout_id, now)
            except Exception:
                log.exception("rollout #%s (%s): evaluation failed", rollout_id, brand)
                outcome = "error"
            if outcome is not None:
                outcomes[brand] = outcome
        return outcomes

    def abort(self, brand: str, *, actor: str, reason: str) -> Rollout:
        """Stop the brand's running rollout now: the canary alias is removed, the champion keeps
        all traffic, state `aborted`. Raises `RolloutError` when none is running."""
        reason = reason.strip() or NO_REASON
        with self.sessions() as session:
            rollout = self._running(session, brand)
            if rollout is None:
                raise RolloutError(f"no rollout is running for {brand}")
            c = self._registry()
            if not self._end(
                session,
                c,
                rollout,
                "abort",
                f"aborted by {actor}: {reason}",
                actor=actor,
                now=utcnow(),
            ):
                raise RolloutError(f"rollout #{rollout.id} of {brand} ended meanwhile")
        return rollout

    # -- internals ----------------------------------------------------------------------------

    def _evaluate(self, rollout_id: int, now: datetime | None) -> str | None:
        now = now or utcnow()
        with self.sessions() as session:
            rollout = session.get(Rollout, rollout_id)
            if rollout is None or rollout.state != "running":
                return None
            c = self._registry()
            drift = self._drift(c, rollout)
            if drift is not None:
                ended = self._end(session, c, rollout, "abort", drift, actor=SYSTEM, now=now)
                return "abort" if ended else "wait"

            champion_rows = self._window(session, rollout, "champion", now)
            canary_rows = self._window(session, rollout, "canary", now)
            baseline = None
            if not champion_rows:
                # A live step at 100 % sends the champion nothing: compare the canary with the
                # champion's latest requests before this step instead of skipping the checks.
                champion_rows = self._baseline(session, rollout)
                baseline = (
                    f"the champion's last {len(champion_rows)} request(s) before this step "
                    "(it has none in this step)"
                )
            analysis = analyse(
                champion_rows,
                canary_rows,
                self.params,
                elapsed_s=max(0.0, (now - rollout.step_started_at).total_seconds()),
                min_requests=rollout.min_requests,
                min_seconds=rollout.min_seconds,
            )
            if analysis.decision == "wait":
                return "wait"
            if baseline is not None:
                analysis.measurements["champion_baseline"] = baseline
            step, weight = rollout.step_index, self.weight(rollout)
            where = f"step {step + 1}/{len(rollout.steps)} ({weight} %)"
            summary = analysis.summary()

            if analysis.decision == "fail":
                reason = f"{where} failed: {summary}"
                ended = self._end(
                    session, c, rollout, "rollback", reason, actor=SYSTEM, now=now, judged=analysis
                )
                return "rollback" if ended else "wait"

            if step + 1 < len(rollout.steps):
                # Claim before writing anything else: the first write takes SQLite's lock.
                if not self._claim(session, rollout, now, step_index=step + 1, step_started_at=now):
                    return "wait"
                self._decide(
                    session,
                    rollout,
                    "pass",
                    summary,
                    analysis.measurements,
                    at=now,
                    step=step,
                    weight=weight,
                )
                nxt = rollout.steps[step + 1]
                record(
                    c,
                    rollout.model_name,
                    rollout.canary_version,
                    f"rollout #{rollout.id}: {where} passed, canary at {nxt} %",
                    why=summary,
                    who=SYSTEM,
                )
                audit(
                    session,
                    SYSTEM,
                    "rollout.step",
                    rollout.brand,
                    rollout_id=rollout.id,
                    version=rollout.canary_version,
                    passed_step=step,
                    weight=nxt,
                    reason=summary,
                )
                session.commit()
                log.info(
                    "rollout #%s (%s): %s passed, now %s %%", rollout.id, rollout.brand, where, nxt
                )
                return "pass"

            reason = f"all {len(rollout.steps)} steps passed; last: {summary}"
            try:
                ended = self._end(
                    session, c, rollout, "promote", reason, actor=SYSTEM, now=now, judged=analysis
                )
            except RegistryError as err:
                session.rollback()
                rollout = session.get(Rollout, rollout_id)
                if rollout is None or rollout.state != "running":
                    return "wait"
                why = f"promotion refused by the registry: {err}"
                ended = self._end(session, c, rollout, "abort", why, actor=SYSTEM, now=now)
                return "abort" if ended else "wait"
            return "promote" if ended else "wait"

    @staticmethod
    def _window(session: Session, rollout: Rollout, variant: str, now: datetime) -> list[Any]:
        """The variant's request_log rows of the current step (same window for both sides; in
        shadow mode the canary rows are the shadow copies)."""
        version = rollout.canary_version if variant == "canary" else rollout.champion_version
        return list(
            session.execute(
                select(*_MEASURED).where(
                    RequestLog.brand == rollout.brand,
                    RequestLog.at >= rollout.step_started_at,
                    RequestLog.at <= now,
                    RequestLog.variant == variant,
                    RequestLog.model_version == version,
                )
            ).all()
        )

    @staticmethod
    def _baseline(session: Session, rollout: Rollout) -> list[Any]:
        """The champion's latest requests before the current step (at most
        `max(min_requests, BASELINE_REQUESTS)`), newest first."""
        return list(
            session.execute(
                select(*_MEASURED)
                .where(
                    RequestLog.brand == rollout.brand,
                    RequestLog.at < rollout.step_started_at,
                    RequestLog.variant == "champion",
                    RequestLog.model_version == rollout.champion_version,
                )
                .order_by(RequestLog.at.desc(), RequestLog.id.desc())
                .limit(max(rollout.min_requests, BASELINE_REQUESTS))
            ).all()
        )

    @staticmethod
    def _drift(c: Any, rollout: Rollout) -> str | None:
        """Why the rollout cannot go on because its aliases were changed outside it, or None."""
        canary = alias_version(c, rollout.model_name, "canary")
        if canary is None or canary.version != rollout.canary_version:
            moved = "removed" if canary is None else f"moved to v{canary.version}"
            return f"the canary alias was {moved} outside the rollout"
        champion = alias_version(c, rollout.model_name, "champion")
        if champion is None or champion.version != rollout.champion_version:
            moved = "removed" if champion is None else f"moved to v{champion.version}"
            return f"the champion alias was {moved} outside the rollout"
        return None

    @staticmethod
    def _claim(session: Session, rollout: Rollout, now: datetime, **values: Any) -> bool:
        """Change the rollout only if it is still running at the step we judged (flushed, not
        committed); False, with the transaction rolled back, when another controller got
        there first."""
        result = cast(
            CursorResult[Any],
            session.execute(
                update(Rollout)
                .where(
                    Rollout.id == rollout.id,
                    Rollout.state == "running",
                    Rollout.step_index == rollout.step_index,
                )
                .values(updated_at=now, **values)
            ),
        )
        if result.rowcount != 1:
            session.rollback()
            return False
        return True

    def _end(
        self,
        session: Session,
        c: Any,
        rollout: Rollout,
        decision: str,
        reason: str,
        *,
        actor: str,
        now: datetime,
        judged: StepAnalysis | None = None,
    ) -> bool:
        """Finish the rollout with `decision` (`promote`, `rollback` or `abort`): claim it, change
        the registry, record the history tag, the decisions (first the step's `pass` or `fail`
        with its measurements when `judged`) and the audit row, commit. False when it had
        already ended. A `RegistryError` of the promotion propagates (uncommitted)."""
        state = {"promote": "promoted", "rollback": "rolled_back", "abort": "aborted"}[decision]
        step, weight = rollout.step_index, self.weight(rollout)
        if not self._claim(session, rollout, now, state=state, reason=reason):
            return False
        if judged is not None:
            self._decide(
                session,
                rollout,
                judged.decision,
                judged.summary(),
                judged.measurements,
                at=now,
                step=step,
                weight=weight,
            )
        name, version = rollout.model_name, rollout.canary_version
        if decision == "promote":
            promote(c, name, "champion", version=version, why=reason)
            event = f"rollout #{rollout.id} promoted to champion"
        else:
            event = (
                f"rollout #{rollout.id} {'rolled back' if decision == 'rollback' else 'aborted'}"
            )
            holder = alias_version(c, name, "canary")
            if holder is not None and holder.version == version:
                c.delete_registered_model_alias(name, "canary")
                event += " (alias canary removed)"
        record(c, name, version, event, why=reason, who=actor)
        self._decide(session, rollout, decision, reason, {}, at=now, step=step, weight=weight)
        audit(
            session,
            actor,
            f"rollout.{decision}",
            rollout.brand,
            rollout_id=rollout.id,
            version=version,
            champion_version=rollout.champion_version,
            step=step,
            reason=reason,
        )
        session.commit()
        log.info("rollout #%s (%s): %s: %s", rollout.id, rollout.brand, state, reason)
        return True

    def _decide(
        self,
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
