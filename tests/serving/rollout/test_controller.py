"""The rollout controller (serving.rollout.controller) against a real MLflow registry and the
serving database, on SQLite and on PostgreSQL.

The controller tests own a brand (`brandforge-rollout`, registered once for this module on the
served registry's store): v1 champion, v2 and v3 passed their gates, v4 rejected. Each test
starts from v1 champion and no canary alias.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import mlflow
import pytest
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from brandforge.params import RolloutParams
from registry import core
from serving.db.engine import engine_for, session_factory
from serving.db.models import (
    ROLLOUT_MODES,
    ROLLOUT_STATES,
    VARIANTS,
    AuditLog,
    RequestLog,
    Rollout,
    utcnow,
)
from serving.errors import Conflict, Invalid
from serving.rollout.controller import RolloutController
from serving.rollout.records import Outcome, RolloutMode, RolloutState
from serving.rollout.split import Variant
from tests.registry.test_registry import REJECTED, Project

BRAND = "rollout"
NAME = f"brandforge-{BRAND}"
STEPS = [5, 25, 50, 100]
PARAMS = RolloutParams(min_requests=5, min_seconds=0)


# --------------------------------------------------------------------------------------------
# The controller: fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rollout_brand(
    served_registry, tmp_path_factory, tiny_sd_dir, adapter_dir, other_adapter_dir
) -> str:
    """`brandforge-rollout` on the served registry's store: v1 (champion), v2, v3, v4
    (rejected)."""
    from brandforge.settings import get_settings

    with pytest.MonkeyPatch.context() as mp:
        for k, v in served_registry.env.items():
            mp.setenv(k, v)
        get_settings.cache_clear()
        mlflow.set_tracking_uri(served_registry.tracking_uri)
        project = Project(tmp_path_factory.mktemp("rollout"), BRAND, adapter_dir, tiny_sd_dir)
        for adapter in (adapter_dir, other_adapter_dir, adapter_dir):
            project.adapter = adapter
            project.train()
            project.register()
        project.train()
        project.evaluate(REJECTED, delta=-0.2)
        project.register()
        core.promote(core.client(), NAME, "champion", version="1", why="rollout tests")
        get_settings.cache_clear()
    return NAME


@pytest.fixture
def registry(registry_env, rollout_brand) -> Iterator[Any]:
    """The MLflow client, with v1 champion and no canary, before and after the test."""

    def reset() -> None:
        c.set_registered_model_alias(NAME, "champion", "1")
        if core.alias_version(c, NAME, "canary") is not None:
            c.delete_registered_model_alias(NAME, "canary")

    c = core.client()
    reset()
    yield c
    reset()


@pytest.fixture
def sessions(db_engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions on an empty serving database, SQLite and PostgreSQL (`db_engine`)."""
    yield session_factory(db_engine)


@pytest.fixture
def ctl(sessions: sessionmaker[Session], registry: Any) -> RolloutController:
    return RolloutController(sessions, PARAMS)


def traffic(
    ctl: RolloutController,
    rollout: Rollout,
    n: int = 5,
    *,
    canary_ok: bool = True,
    canary_score: float = 0.9,
) -> None:
    """`n` requests on each side; the canary's may fail or score lower."""
    for i in range(n):
        ctl.record_request(
            BRAND,
            rollout.champion_version,
            "champion",
            ok=True,
            latency_s=0.1,
            images=2,
            compliance_scores=[0.9, 0.9],
            compliance_passed=[True, True],
            rollout_id=rollout.id,
        )
        ok = canary_ok or i % 2 == 1
        ctl.record_request(
            BRAND,
            rollout.canary_version,
            "canary",
            ok=ok,
            latency_s=0.1,
            images=2 if ok else 0,
            compliance_scores=[canary_score, canary_score] if ok else [],
            compliance_passed=[canary_score >= 0.6] * 2 if ok else [],
            rollout_id=rollout.id,
        )


def history(c: Any, version: str) -> list[str]:
    return [event for _, event in core.get_version(c, NAME, version).history()]


def audit_actions(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as s:
        found = s.scalars(select(AuditLog).where(AuditLog.brand == BRAND).order_by(AuditLog.id))
        return [(a.actor, a.action) for a in found]


# --------------------------------------------------------------------------------------------
# The controller
# --------------------------------------------------------------------------------------------


def test_a_healthy_canary_is_promoted_through_every_step(ctl, registry, sessions) -> None:
    earlier = len(history(registry, "2"))  # the registry outlives the test's database
    rollout = ctl.start(BRAND, "2", steps=STEPS, actor="rita")
    assert core.alias_version(registry, NAME, "canary").version == "2"
    assert (rollout.step_index, ctl.weight(rollout), rollout.mode) == (0, 5, "live")
    assert ctl.evaluate(BRAND) == "wait"  # no traffic yet

    for weight in STEPS[1:]:
        traffic(ctl, rollout)
        assert ctl.evaluate(BRAND) == "pass"
        assert ctl.weight(ctl.current(BRAND)) == weight
    traffic(ctl, rollout)
    assert ctl.evaluate(BRAND) == "promote"

    assert core.alias_version(registry, NAME, "champion").version == "2"
    assert core.alias_version(registry, NAME, "canary") is None
    assert ctl.current(BRAND) is None
    state = ctl.get(BRAND)
    assert (state["state"], state["running"], state["weight"]) == ("promoted", False, 0)
    decisions = [d["decision"] for d in state["decisions"]]
    assert decisions == ["start", "pass", "pass", "pass", "pass", "promote"]
    assert [d["weight"] for d in state["decisions"]] == [5, 5, 25, 50, 100, 100]
    passed = state["decisions"][1]["measurements"]
    assert passed["canary"]["requests"] == 5 and passed["champion"][
        "compliance_mean"
    ] == pytest.approx(0.9)

    events = history(registry, "2")[earlier:]
    assert any(f"rollout #{rollout.id} started by rita" in e for e in events)
    assert sum("passed, canary at" in e for e in events) == 3
    assert any(f"rollout #{rollout.id} promoted to champion by system" in e for e in events)
    assert audit_actions(sessions) == [
        ("rita", "rollout.start"),
        ("system", "rollout.step"),
        ("system", "rollout.step"),
        ("system", "rollout.step"),
        ("system", "rollout.promote"),
    ]


def test_an_off_palette_canary_is_rolled_back_on_compliance(ctl, registry) -> None:
    earlier = len(history(registry, "2"))
    rollout = ctl.start(BRAND, "2", actor="rita")
    traffic(ctl, rollout, canary_score=0.5)
    assert ctl.evaluate(BRAND) == "rollback"

    assert core.alias_version(registry, NAME, "canary") is None
    assert core.alias_version(registry, NAME, "champion").version == "1"
    state = ctl.get(BRAND)
    assert state["state"] == "rolled_back" and "compliance" in state["reason"]
    assert "max_compliance_drop" in state["reason"]
    assert [d["decision"] for d in state["decisions"]] == ["start", "fail", "rollback"]
    assert state["decisions"][1]["measurements"]["canary"]["compliance_mean"] == 0.5
    events = history(registry, "2")[earlier:]
    assert any("rolled back (alias canary removed) by system" in e for e in events)


def test_the_last_step_compares_the_canary_with_the_champion_before_it(ctl, registry) -> None:
    # At 100 % the champion serves nobody: its requests of the step before are the baseline,
    # so a canary that degrades only once it has all the traffic is still caught.
    rollout = ctl.start(BRAND, "2", steps=[50, 100], actor="rita")
    traffic(ctl, rollout)
    assert ctl.evaluate(BRAND) == "pass"
    for _ in range(5):
        ctl.record_request(
            BRAND,
            rollout.canary_version,
            "canary",
            ok=True,
            latency_s=0.1,
            images=2,
            compliance_scores=[0.5, 0.5],
            compliance_passed=[False, False],
            rollout_id=rollout.id,
        )
    assert ctl.evaluate(BRAND) == "rollback"
    state = ctl.get(BRAND)
    assert "max_compliance_drop" in state["reason"]
    judged = state["decisions"][-2]["measurements"]
    assert judged["champion"]["requests"] == 5 and judged["champion"]["compliance_mean"] == 0.9
    assert "before this step" in judged["champion_baseline"]


def test_a_failing_canary_is_rolled_back_on_error_rate(ctl, registry) -> None:
    rollout = ctl.start(BRAND, "3", actor="rita")
    traffic(ctl, rollout, n=6, canary_ok=False)
    assert ctl.evaluate(BRAND) == "rollback"
    state = ctl.get(BRAND)
    assert state["state"] == "rolled_back" and "error rate" in state["reason"]
    assert core.alias_version(registry, NAME, "canary") is None
    assert core.alias_version(registry, NAME, "champion").version == "1"


def test_abort(ctl, registry, sessions) -> None:
    ctl.start(BRAND, "2", mode="shadow", actor="rita")
    aborted = ctl.abort(BRAND, actor="max", reason="campaign paused")
    assert aborted.state == "aborted" and aborted.reason == "aborted by max: campaign paused"
    assert core.alias_version(registry, NAME, "canary") is None
    assert core.alias_version(registry, NAME, "champion").version == "1"
    assert ("max", "rollout.abort") in audit_actions(sessions)
    assert ctl.get(BRAND)["mode"] == "shadow"
    with pytest.raises(Conflict, match="no rollout is running"):
        ctl.evaluate(BRAND)
    with pytest.raises(Conflict, match="no rollout is running"):
        ctl.abort(BRAND, actor="max", reason="again")


def test_a_new_controller_resumes_a_running_rollout(ctl, registry, db_url) -> None:
    rollout = ctl.start(BRAND, "2", steps=[50, 100], actor="rita")
    traffic(ctl, rollout)
    assert ctl.evaluate(BRAND) == "pass"

    engine = engine_for(db_url)  # as a restarted server would
    try:
        again = RolloutController(session_factory(engine), PARAMS)
        resumed = again.current(BRAND)
        assert (resumed.id, resumed.step_index, again.weight(resumed)) == (rollout.id, 1, 100)
        traffic(again, resumed)
        assert again.evaluate_all() == {BRAND: "promote"}
        assert again.evaluate_all() == {}
    finally:
        engine.dispose()
    assert core.alias_version(registry, NAME, "champion").version == "2"


def test_the_step_window_starts_when_the_step_does(ctl, registry, sessions) -> None:
    rollout = ctl.start(BRAND, "2", steps=[50, 100], min_seconds=60, actor="rita")
    traffic(ctl, rollout)
    assert ctl.evaluate(BRAND) == "wait"  # too early
    later = utcnow() + timedelta(seconds=61)
    assert ctl.evaluate(BRAND, now=later) == "pass"
    # the first step's requests are not the second step's evidence
    assert ctl.evaluate(BRAND, now=later + timedelta(seconds=61)) == "wait"
    with sessions() as s:
        assert s.query(RequestLog).filter_by(rollout_id=rollout.id).count() == 10


def test_start_refusals(ctl, registry) -> None:
    with pytest.raises(Conflict, match="already the champion"):
        ctl.start(BRAND, "1", actor="rita")
    with pytest.raises(Conflict, match="failed its gates"):
        ctl.start(BRAND, "4", actor="rita")
    with pytest.raises(Conflict, match="has no version 9"):
        ctl.start(BRAND, "9", actor="rita")
    with pytest.raises(Conflict, match="no champion"):
        ctl.start("nobody", "1", actor="rita")
    # settings out of bounds are invalid requests, not conflicts (they were a 409)
    with pytest.raises(Invalid, match="steps"):
        ctl.start(BRAND, "2", steps=[50, 25], actor="rita")
    with pytest.raises(Invalid, match="min_requests"):
        ctl.start(BRAND, "2", min_requests=10**24, actor="rita")
    with pytest.raises(Invalid, match="min_seconds"):
        ctl.start(BRAND, "2", min_seconds=float("inf"), actor="rita")
    with pytest.raises(Invalid, match="mode"):
        ctl.start(BRAND, "2", mode="dark", actor="rita")
    assert ctl.current(BRAND) is None and ctl.get(BRAND)["state"] == "none"
    assert core.alias_version(registry, NAME, "canary") is None

    ctl.start(BRAND, "2", actor="rita")
    with pytest.raises(Conflict, match="already running"):
        ctl.start(BRAND, "3", actor="rita")
    assert core.alias_version(registry, NAME, "canary").version == "2"


def test_aliases_moved_outside_the_rollout_abort_it(ctl, registry) -> None:
    ctl.start(BRAND, "2", actor="rita")
    registry.set_registered_model_alias(NAME, "canary", "3")
    assert ctl.evaluate(BRAND) == "abort"
    state = ctl.get(BRAND)
    assert state["state"] == "aborted" and "moved to v3 outside" in state["reason"]
    assert core.alias_version(registry, NAME, "canary").version == "3"  # not ours to remove


def test_a_registry_error_is_reported_and_retried(ctl, registry, sessions) -> None:
    rollout = ctl.start(BRAND, "2", steps=[50, 100], actor="rita")
    traffic(ctl, rollout)

    def unreachable() -> Any:
        raise ConnectionError("registry down")

    broken = RolloutController(sessions, PARAMS, client_factory=unreachable)
    assert broken.evaluate_all() == {BRAND: "error"}
    assert ctl.current(BRAND).step_index == 0  # nothing half-done
    assert ctl.evaluate_all() == {BRAND: "pass"}


def test_the_database_holds_one_running_rollout_per_brand(sessions) -> None:
    now = utcnow()

    def row(state: str = "running") -> Rollout:
        return Rollout(
            brand="b",
            model_name="brandforge-b",
            canary_version="2",
            champion_version="1",
            steps=[100],
            mode="live",
            min_requests=1,
            min_seconds=0,
            state=state,
            step_started_at=now,
            created_at=now,
            updated_at=now,
        )

    with sessions() as s:
        s.add_all([row("rolled_back"), row("aborted"), row()])
        s.commit()
        s.add(row())
        with pytest.raises(IntegrityError):
            s.commit()


def test_states_modes_and_variants_are_the_database_values() -> None:
    assert tuple(RolloutState) == ROLLOUT_STATES
    assert tuple(RolloutMode) == ROLLOUT_MODES
    assert tuple(Variant) == VARIANTS
    assert Outcome.PROMOTE == "promote"


def test_tables_and_request_log(sessions) -> None:
    insp = inspect(sessions.kw["bind"])
    assert {c["name"] for c in insp.get_columns("rollouts")} == {
        "id", "brand", "model_name", "canary_version", "champion_version", "steps",
        "step_index", "mode", "min_requests", "min_seconds", "state", "reason",
        "step_started_at", "created_at", "updated_at",
    }  # fmt: skip
    assert {c["name"] for c in insp.get_columns("rollout_decisions")} == {
        "id", "rollout_id", "at", "step_index", "weight", "decision", "reason", "measurements",
    }  # fmt: skip
    assert {c["name"] for c in insp.get_columns("request_log")} == {
        "id", "at", "brand", "model_version", "variant", "rollout_id", "ok", "latency_s",
        "images", "compliance_mean", "compliance_failed",
    }  # fmt: skip
    indexes = {tuple(ix["column_names"]) for ix in insp.get_indexes("request_log")}
    assert {("at",), ("brand", "at")} <= indexes

    ctl = RolloutController(sessions, PARAMS, client_factory=lambda: None)
    ctl.record_request(
        BRAND,
        3,
        "canary",
        ok=True,
        latency_s=0.25,
        images=3,
        compliance_scores=[0.8, None, 0.6],
        compliance_passed=[True, None, False],
        rollout_id=None,
    )
    with sessions() as s:
        row = s.scalars(select(RequestLog)).one()
    assert (row.model_version, row.ok, row.images, row.compliance_failed) == ("3", True, 3, 1)
    assert row.compliance_mean == pytest.approx(0.7) and row.at.tzinfo is not None
    with pytest.raises(ValueError, match="variant"):
        ctl.record_request(
            BRAND, 3, "shadow", ok=True, latency_s=0, images=0, compliance_scores=[],
            compliance_passed=[], rollout_id=None,
        )  # fmt: skip
