"""Canary rollouts (serving.rollout.controller): the sticky split, the step analysis, and the controller
against a real MLflow registry and the serving database, on SQLite and on PostgreSQL.

The controller tests own a brand (`brandforge-rollout`, registered once for this module on the
served registry's store): v1 champion, v2 and v3 passed their gates, v4 rejected. Each test
starts from v1 champion and no canary alias.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import mlflow
import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from brandforge.params import RolloutParams
from registry import core
from serving.db.models import AuditLog, RequestLog, Rollout, engine_for, init_db, session_factory, utcnow
from serving.rollout.controller import RolloutController, RolloutError, analyse, assign_variant
from tests.registry.test_registry import REJECTED, Project
from tests.serving.test_auth import pg_url  # noqa: F401  (fixture)

BRAND = "rollout"
NAME = f"brandforge-{BRAND}"
STEPS = [5, 25, 50, 100]
PARAMS = RolloutParams(min_requests=5, min_seconds=0)


# --------------------------------------------------------------------------------------------
# Traffic split
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Step analysis on constructed rows
# --------------------------------------------------------------------------------------------


def rows(
    n: int,
    *,
    errors: int = 0,
    latency: float = 0.2,
    score: float | None = 0.9,
    images: int = 4,
    failed: int = 0,
) -> list[dict[str, Any]]:
    """`n` requests, the first `errors` of them failed; each ok one with `images` images of
    mean compliance `score`, `failed` of which failed the brand kit."""
    return [
        {
            "ok": i >= errors,
            "latency_s": latency,
            "images": images if i >= errors else 0,
            "compliance_mean": score if i >= errors else None,
            "compliance_failed": failed if i >= errors else 0,
        }
        for i in range(n)
    ]


def judge(champion: list[dict], canary: list[dict], *, elapsed: float = 600, **limits: Any):
    return analyse(
        champion,
        canary,
        RolloutParams(**limits),
        elapsed_s=elapsed,
        min_requests=50,
        min_seconds=300,
    )


def test_analysis_waits_for_enough_requests_and_time() -> None:
    few = judge(rows(100), rows(49))
    assert few.decision == "wait" and "min_requests is 50" in few.reasons[0]
    # even a bad canary is not judged on too little traffic
    assert judge(rows(100), rows(49, errors=49)).decision == "wait"
    early = judge(rows(100), rows(100), elapsed=299)
    assert early.decision == "wait" and "min_seconds is 300" in early.reasons[0]
    assert judge(rows(100), rows(50), elapsed=300).decision == "pass"


def test_analysis_passes_equal_traffic_and_reports_measurements() -> None:
    result = judge(rows(200, errors=2, failed=1), rows(50, errors=0, failed=1))
    assert result.decision == "pass" and result.reasons == []
    m = result.measurements
    assert m["champion"]["requests"] == 200 and m["champion"]["error_rate"] == 0.01
    assert m["canary"]["p95_latency_s"] == 0.2 and m["canary"]["compliance_mean"] == pytest.approx(
        0.9
    )
    assert m["canary"]["failed_compliance_rate"] == 0.25
    assert [c["passed"] for c in m["checks"]] == [True, True, True, True]


@pytest.mark.parametrize(
    ("canary", "parameter", "words"),
    [
        (rows(50, errors=5), "max_error_rate_increase", "error rate rose by 0.100"),
        (rows(50, latency=0.5), "max_p95_latency_ratio", "p95 latency is 2.50x"),
        (rows(50, score=0.8), "max_compliance_drop", "mean compliance dropped by 0.100"),
        (rows(50, failed=1), "max_failed_compliance_increase", "failed-compliance rate rose"),
    ],
)
def test_analysis_fails_on_each_threshold(canary: list[dict], parameter: str, words: str) -> None:
    result = judge(rows(100), canary)
    assert result.decision == "fail"
    assert len(result.reasons) == 1 and words in result.reasons[0]
    assert parameter in result.reasons[0]
    assert [c.parameter for c in result.failed] == [parameter]


def test_analysis_skips_comparisons_without_champion_data() -> None:
    # a live step at 100 %: the champion gets no requests in the window
    result = judge([], rows(50))
    assert result.decision == "pass"
    assert all(c.passed is None for c in result.checks)
    # the champion failed everything: no latency to compare, the error rate still counts
    broken = judge(rows(60, errors=60), rows(50, latency=9.0))
    latency = next(c for c in broken.checks if c.parameter == "max_p95_latency_ratio")
    assert latency.passed is None and "no successful requests" in latency.note
    assert broken.decision == "pass"


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


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serving.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = engine_for(db_url)
    init_db(engine)
    yield session_factory(engine)
    engine.dispose()


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
    with pytest.raises(RolloutError, match="no rollout is running"):
        ctl.evaluate(BRAND)
    with pytest.raises(RolloutError, match="no rollout is running"):
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
    with pytest.raises(RolloutError, match="already the champion"):
        ctl.start(BRAND, "1", actor="rita")
    with pytest.raises(ValueError, match="failed its gates"):
        ctl.start(BRAND, "4", actor="rita")
    with pytest.raises(ValueError, match="has no version 9"):
        ctl.start(BRAND, "9", actor="rita")
    with pytest.raises(RolloutError, match="no champion"):
        ctl.start("nobody", "1", actor="rita")
    with pytest.raises(RolloutError, match="steps"):
        ctl.start(BRAND, "2", steps=[50, 25], actor="rita")
    with pytest.raises(RolloutError, match="mode"):
        ctl.start(BRAND, "2", mode="dark", actor="rita")
    assert ctl.current(BRAND) is None and ctl.get(BRAND)["state"] == "none"
    assert core.alias_version(registry, NAME, "canary") is None

    ctl.start(BRAND, "2", actor="rita")
    with pytest.raises(RolloutError, match="already running"):
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
