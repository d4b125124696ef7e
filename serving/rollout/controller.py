"""Canary rollouts: the controller that starts, judges, promotes and rolls back (DESIGN.md, 5).

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

The pure parts live beside it: the traffic split (`serving.rollout.split`, which the router
uses with `RolloutController.weight`), the step analysis and the bounds of a rollout's settings
(`serving.rollout.analysis`), and the request log (`serving.rollout.request_log`). Ray is not
imported here: the controller runs anywhere. Refusals are domain errors (`serving.errors`):
`Invalid` for settings that break a rule, `Conflict` for an action the rollout's or the
registry's state does not allow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from brandforge.params import RolloutParams, format_validation_errors
from brandforge.tracking import registered_model_name
from registry.core import RegistryError, alias_version, client, promote, record
from serving.auth import audit
from serving.db.models import RequestLog, Rollout, utcnow
from serving.errors import Conflict, Invalid
from serving.rollout.analysis import RolloutOverrides, StepAnalysis, StepDecision, analyse
from serving.rollout.records import (
    Outcome,
    RolloutMode,
    RolloutState,
    add_decision,
    already_running,
    claim,
    decisions,
    latest,
    open_rollout,
    rollout_view,
    running_rollout,
)
from serving.rollout.request_log import champion_baseline, request_row, step_window
from serving.rollout.split import Variant, canary_weight

log = logging.getLogger(__name__)

# The audit actor (and registry history author) of the controller's own decisions.
SYSTEM = "system"
NO_REASON = "(no reason given)"


_ENDED = {
    Outcome.PROMOTE: RolloutState.PROMOTED,
    Outcome.ROLLBACK: RolloutState.ROLLED_BACK,
    Outcome.ABORT: RolloutState.ABORTED,
}


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

    def current(self, brand: str) -> Rollout | None:
        """The brand's running rollout (detached, readable), or None."""
        with self.sessions() as session:
            return running_rollout(session, brand)

    @staticmethod
    def weight(rollout: Rollout) -> int:
        """The canary's traffic share (%) now (`serving.rollout.split.canary_weight`)."""
        return canary_weight(
            steps=rollout.steps,
            step_index=rollout.step_index,
            running=rollout.state == RolloutState.RUNNING,
        )

    def get(self, brand: str) -> dict[str, Any]:
        """The brand's running rollout, else its last finished one, with its decisions, as a
        JSON-ready dict (`serving.rollout.history.rollout_view`)."""
        with self.sessions() as session:
            rollout = running_rollout(session, brand) or latest(session, brand)
            if rollout is None:
                return {"brand": brand, "state": "none", "running": False, "decisions": []}
            return rollout_view(rollout, decisions(session, rollout.id), self.weight(rollout))

    # -- writing ------------------------------------------------------------------------------

    def _settings(
        self, steps: list[int] | None, min_requests: int | None, min_seconds: float | None
    ) -> RolloutParams:
        """params.yaml's rollout settings with the rollout's own (bounded) overrides."""
        given = {"steps": steps, "min_requests": min_requests, "min_seconds": min_seconds}
        try:
            overrides = RolloutOverrides.model_validate(
                {k: v for k, v in given.items() if v is not None}
            )
        except ValidationError as err:
            raise Invalid(format_validation_errors(err, "rollout settings")) from None
        return overrides.settings(self.params)

    def start(
        self,
        brand: str,
        version: str | int,
        *,
        steps: list[int] | None = None,
        min_requests: int | None = None,
        min_seconds: float | None = None,
        mode: str = RolloutMode.LIVE,
        actor: str,
    ) -> Rollout:
        """Start rolling `version` of the brand's model out as the canary; returns the rollout.

        `steps`, `min_requests` and `min_seconds` default to `params` and are bounded
        (`RolloutOverrides`). Raises `Invalid` for an unknown mode or settings out of bounds,
        `Conflict` when a rollout already runs for the brand, the brand has no champion, the
        version is the champion, or the registry refuses the `canary` alias (missing, rejected
        or archived version, missing artifacts: the registry's own message).
        """
        version = str(version).strip()
        if mode not in tuple(RolloutMode):
            raise Invalid(f"unknown mode {mode!r}; use one of {', '.join(RolloutMode)}")
        settings = self._settings(steps, min_requests, min_seconds)
        name = registered_model_name(brand)
        with self.sessions() as session:
            running = running_rollout(session, brand)
            if running is not None:
                raise Conflict(already_running(running))
            c = self._registry()
            champion = self._champion_under(c, name, version)
            rollout = open_rollout(
                session,
                brand=brand,
                name=name,
                version=version,
                champion_version=champion,
                settings=settings,
                mode=RolloutMode(mode),
            )
            reason = (
                f"rollout #{rollout.id} started by {actor}: v{version} over champion "
                f"v{champion}, steps {'/'.join(map(str, settings.steps))} %, mode {mode}"
            )
            holder = alias_version(c, name, "canary")
            if holder is None or holder.version != version:
                try:
                    promote(c, name, "canary", version=version, why=reason)
                except RegistryError as err:
                    raise Conflict(str(err)) from None
            record(c, name, version, f"rollout #{rollout.id} started", why=reason, who=actor)
            add_decision(
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
                at=rollout.created_at,
            )
            audit(
                session,
                actor,
                "rollout.start",
                brand,
                rollout_id=rollout.id,
                version=version,
                champion_version=champion,
                steps=list(settings.steps),
                mode=mode,
            )
            session.commit()
        log.info("%s", reason)
        return rollout

    @staticmethod
    def _champion_under(c: Any, name: str, version: str) -> str:
        """The champion's version, which `version` is to be compared with; `Conflict` when
        there is none or `version` is it."""
        champion = alias_version(c, name, "champion")
        if champion is None:
            raise Conflict(
                f"{name} has no champion to compare a canary with; promote one first "
                f"(`brandforge registry promote {name} --to champion --version N`)"
            )
        if champion.version == version:
            raise Conflict(f"{name} v{version} is already the champion")
        return str(champion.version)

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
        """Log one served request (committed; `serving.rollout.request_log.request_row`)."""
        row = request_row(
            brand,
            version,
            variant,
            ok=ok,
            latency_s=latency_s,
            images=images,
            compliance_scores=compliance_scores,
            compliance_passed=compliance_passed,
            rollout_id=rollout_id,
            at=at,
        )
        with self.sessions() as session:
            session.add(row)
            session.commit()
        return row

    def evaluate(self, brand: str, *, now: datetime | None = None) -> Outcome:
        """Judge the brand's running rollout's current step and act on it; returns what was
        done (`Outcome`: wait, pass, promote, rollback or abort). Raises `Conflict` when no
        rollout runs for the brand."""
        running = self.current(brand)
        outcome = None if running is None else self._evaluate(running.id, now)
        if outcome is None:
            raise Conflict(f"no rollout is running for {brand}")
        return outcome

    def evaluate_all(self, now: datetime | None = None) -> dict[str, Outcome]:
        """`evaluate` every running rollout (the server calls this every `check_every_s`);
        returns brand → outcome. One brand's error (e.g. the registry unreachable) is logged and
        reported as `error`, and does not stop the others: they are tried again next time."""
        with self.sessions() as session:
            running = session.execute(
                select(Rollout.id, Rollout.brand).where(Rollout.state == RolloutState.RUNNING)
            ).all()
        outcomes = {}
        for rollout_id, brand in running:
            try:
                outcome = self._evaluate(rollout_id, now)
            except Exception:
                log.exception("rollout #%s (%s): evaluation failed", rollout_id, brand)
                outcome = Outcome.ERROR
            if outcome is not None:
                outcomes[brand] = outcome
        return outcomes

    def abort(self, brand: str, *, actor: str, reason: str) -> Rollout:
        """Stop the brand's running rollout now: the canary alias is removed, the champion keeps
        all traffic, state `aborted`. Raises `Conflict` when none is running."""
        reason = reason.strip() or NO_REASON
        with self.sessions() as session:
            rollout = running_rollout(session, brand)
            if rollout is None:
                raise Conflict(f"no rollout is running for {brand}")
            c = self._registry()
            ended = self._end(
                session,
                c,
                rollout,
                Outcome.ABORT,
                f"aborted by {actor}: {reason}",
                actor=actor,
                now=utcnow(),
            )
            if not ended:
                raise Conflict(f"rollout #{rollout.id} of {brand} ended meanwhile")
        return rollout

    # -- internals ----------------------------------------------------------------------------

    def _evaluate(self, rollout_id: int, now: datetime | None) -> Outcome | None:
        now = now or utcnow()
        with self.sessions() as session:
            rollout = session.get(Rollout, rollout_id)
            if rollout is None or rollout.state != RolloutState.RUNNING:
                return None
            c = self._registry()
            drift = self._drift(c, rollout)
            if drift is not None:
                ended = self._end(session, c, rollout, Outcome.ABORT, drift, actor=SYSTEM, now=now)
                return Outcome.ABORT if ended else Outcome.WAIT
            analysis = self._analyse(session, rollout, now)
            if analysis.decision == StepDecision.WAIT:
                return Outcome.WAIT
            where = self._where(rollout)
            if analysis.decision == StepDecision.FAIL:
                reason = f"{where} failed: {analysis.summary()}"
                ended = self._end(
                    session,
                    c,
                    rollout,
                    Outcome.ROLLBACK,
                    reason,
                    actor=SYSTEM,
                    now=now,
                    judged=analysis,
                )
                return Outcome.ROLLBACK if ended else Outcome.WAIT
            if rollout.step_index + 1 < len(rollout.steps):
                return self._next_step(session, c, rollout, analysis, now)
            return self._promote(session, c, rollout, analysis, now)

    def _analyse(self, session: Session, rollout: Rollout, now: datetime) -> StepAnalysis:
        """The analysis of the rollout's current step on its window of the request log."""
        champion_rows = step_window(session, rollout, Variant.CHAMPION, now)
        canary_rows = step_window(session, rollout, Variant.CANARY, now)
        baseline = None
        if not champion_rows:
            # A live step at 100 % sends the champion nothing: compare the canary with the
            # champion's latest requests before this step instead of skipping the checks.
            champion_rows = champion_baseline(session, rollout)
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
        if baseline is not None and analysis.decision != StepDecision.WAIT:
            analysis.measurements["champion_baseline"] = baseline
        return analysis

    def _where(self, rollout: Rollout) -> str:
        step = rollout.step_index
        return f"step {step + 1}/{len(rollout.steps)} ({self.weight(rollout)} %)"

    def _next_step(
        self, session: Session, c: Any, rollout: Rollout, analysis: StepAnalysis, now: datetime
    ) -> Outcome:
        """The step passed and is not the last: start the next one (if still ours to start)."""
        step, weight, where = rollout.step_index, self.weight(rollout), self._where(rollout)
        summary = analysis.summary()
        # Claim before writing anything else: the first write takes SQLite's lock.
        if not claim(session, rollout, now, step_index=step + 1, step_started_at=now):
            return Outcome.WAIT
        add_decision(
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
        log.info("rollout #%s (%s): %s passed, now %s %%", rollout.id, rollout.brand, where, nxt)
        return Outcome.PASS

    def _promote(
        self, session: Session, c: Any, rollout: Rollout, analysis: StepAnalysis, now: datetime
    ) -> Outcome:
        """The last step passed: make the canary the champion; if the registry refuses the
        promotion, abort the rollout with its reason instead."""
        rollout_id = rollout.id
        reason = f"all {len(rollout.steps)} steps passed; last: {analysis.summary()}"
        try:
            ended = self._end(
                session,
                c,
                rollout,
                Outcome.PROMOTE,
                reason,
                actor=SYSTEM,
                now=now,
                judged=analysis,
            )
        except RegistryError as err:
            session.rollback()
            again = session.get(Rollout, rollout_id)
            if again is None or again.state != RolloutState.RUNNING:
                return Outcome.WAIT
            why = f"promotion refused by the registry: {err}"
            ended = self._end(session, c, again, Outcome.ABORT, why, actor=SYSTEM, now=now)
            return Outcome.ABORT if ended else Outcome.WAIT
        return Outcome.PROMOTE if ended else Outcome.WAIT

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

    def _end(
        self,
        session: Session,
        c: Any,
        rollout: Rollout,
        decision: Outcome,
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
        state = _ENDED[decision]
        step, weight = rollout.step_index, self.weight(rollout)
        if not claim(session, rollout, now, state=state, reason=reason):
            return False
        if judged is not None:
            add_decision(
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
        if decision == Outcome.PROMOTE:
            promote(c, name, "champion", version=version, why=reason)
            event = f"rollout #{rollout.id} promoted to champion"
        else:
            event = (
                f"rollout #{rollout.id} "
                f"{'rolled back' if decision == Outcome.ROLLBACK else 'aborted'}"
            )
            holder = alias_version(c, name, "canary")
            if holder is not None and holder.version == version:
                c.delete_registered_model_alias(name, "canary")
                event += " (alias canary removed)"
        record(c, name, version, event, why=reason, who=actor)
        add_decision(session, rollout, decision, reason, {}, at=now, step=step, weight=weight)
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
