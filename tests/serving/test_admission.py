"""Admission (serving.admission): the cost model and the window decisions as pure functions,
then the counting in the serving database on SQLite and PostgreSQL: atomic under racing
threads, shared by two "replicas" (engines) over one database, refused additions rolled back,
ended windows purged."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from brandforge.settings import BrandLimits, Settings
from serving.admission import (
    Limit,
    Policy,
    add_usage,
    admit,
    admit_request,
    check_cost,
    never_fits,
    purge,
    refusal,
    request_cost,
    retry_after_s,
    window_start,
)
from serving.auth import Principal
from serving.db.engine import engine_for, session_factory
from serving.db.models import UsageWindow
from serving.errors import Invalid, RateLimited

NOW = datetime(2026, 12, 4, 16, 41, 15, 250_000, tzinfo=UTC)


def _key(name: str = "app", **limits: int) -> Principal:
    return Principal(name, frozenset({"generate"}), frozenset({"acme"}), **limits)


# -- cost ------------------------------------------------------------------------------------


def test_one_unit_is_one_native_image_at_one_step():
    assert request_cost(width=32, height=32, steps=1, images=1, native=32) == 1
    assert request_cost(width=64, height=32, steps=20, images=3, native=32) == 2 * 20 * 3
    # issue 12's stalling request: 512 px on the 32 px base at 20 steps
    assert request_cost(width=512, height=512, steps=20, images=1, native=32) == 5120


def test_a_request_over_its_cost_limit_names_its_fields_numbers_and_limit():
    policy = Policy()
    common = {"brand": "acme", "model": "brandforge-acme/1", "native": 32, "version_limit": 2000}
    check_cost(policy, **common, size=(128, 128), steps=20, images=6)  # 1,920 units: fine
    with pytest.raises(Invalid) as refused:
        check_cost(policy, **common, size=(128, 128), steps=20, images=8)
    assert refused.value.message == (
        "steps x width x height x n = 20 x 128 x 128 x 8 costs 2,560 units (one unit: one "
        "32x32 image at one step), above the limit of 2,000 units of brandforge-acme/1; "
        "lower steps, n or width and height"
    )


def test_the_cost_limit_is_the_brands_setting_else_the_global_one_else_the_versions():
    assert Policy().max_cost("acme", 2000) == 2000
    assert Policy(max_request_cost=500).max_cost("acme", 2000) == 500
    brands = {"acme": BrandLimits(max_cost=50), "*": BrandLimits(max_cost=70)}
    policy = Policy(max_request_cost=500, brand_limits=brands)
    assert policy.max_cost("acme", 2000) == 50
    assert policy.max_cost("initech", 2000) == 70


# -- limits and windows ----------------------------------------------------------------------


def test_a_keys_own_limits_replace_the_defaults_and_brand_limits_add_to_them():
    policy = Policy(rate_per_minute=120, daily_images=1000)
    assert policy.limits(_key(), "acme") == [
        Limit("key", "app", "images", 1000),
        Limit("key", "app", "requests", 120),
    ]
    own = policy.limits(_key(rate_per_minute=5, daily_images=9), "acme")
    assert [(x.metric, x.limit) for x in own] == [("images", 9), ("requests", 5)]
    brands = {"*": BrandLimits(rate_per_minute=600), "acme": BrandLimits(daily_images=50)}
    both = Policy(rate_per_minute=0, daily_images=0, brand_limits=brands)
    assert both.limits(_key(), "acme") == [Limit("brand", "acme", "images", 50)]
    assert both.limits(_key(), "initech") == [Limit("brand", "initech", "requests", 600)]


def test_windows_are_the_utc_minute_and_the_utc_day():
    assert window_start("requests", NOW) == datetime(2026, 12, 4, 16, 41, tzinfo=UTC)
    assert window_start("images", NOW) == datetime(2026, 12, 4, tzinfo=UTC)
    assert retry_after_s("requests", NOW) == 45  # 44.75 s left, rounded up
    assert retry_after_s("images", NOW) == 7 * 3600 + 18 * 60 + 45
    assert retry_after_s("requests", NOW.replace(second=59, microsecond=999_999)) == 1


def test_a_refusal_says_which_limit_and_when_to_retry():
    limit = Limit("key", "app", "requests", 3)
    assert refusal(limit, used=3, now=NOW) is None
    refused = refusal(limit, used=4, now=NOW)
    assert isinstance(refused, RateLimited)
    assert refused.retry_after_s == 45
    assert refused.limit == {
        "scope": "key",
        "name": "app",
        "metric": "requests",
        "limit": 3,
        "window": "minute",
        "retry_after_s": 45,
    }
    assert "API key 'app' is over its limit of 3 requests per minute" in refused.message
    too_big = never_fits(Limit("brand", "acme", "images", 100), 101)
    assert isinstance(too_big, Invalid) and "brand 'acme' may use in a whole day (100)" in str(
        too_big
    )


def test_limits_come_from_the_settings_and_a_bad_brand_limit_is_refused(monkeypatch):
    monkeypatch.setenv("BRANDFORGE_RATE_PER_MINUTE", "7")
    monkeypatch.setenv("BRANDFORGE_BRAND_LIMITS", '{"acme": {"daily_images": 40}}')
    policy = Policy.from_settings(Settings())
    assert policy.rate_per_minute == 7 and policy.daily_images == 10_000
    assert policy.brand_limits["acme"].daily_images == 40
    monkeypatch.setenv("BRANDFORGE_BRAND_LIMITS", '{"acme": {"daily_image": 40}}')
    with pytest.raises(ValueError, match="daily_image"):
        Settings()
    monkeypatch.setenv("BRANDFORGE_BRAND_LIMITS", '{"acme": {"rate_per_minute": 0}}')
    with pytest.raises(ValueError, match="rate_per_minute"):
        Settings()


# -- counting in the database ----------------------------------------------------------------


def _count(engine: Engine, scope: str, metric: str) -> int:
    with session_factory(engine)() as s:
        query = select(func.sum(UsageWindow.count)).where(
            UsageWindow.scope == scope, UsageWindow.metric == metric
        )
        return int(s.scalar(query) or 0)


def test_racing_threads_lose_no_update(db_engine: Engine):
    sessions = session_factory(db_engine)
    start = window_start("requests", NOW)
    errors: list[BaseException] = []

    def add(times: int) -> None:
        try:
            for _ in range(times):
                with sessions() as s:
                    add_usage(s, scope="key:race", metric="requests", start=start, amount=1)
                    s.commit()
        except BaseException as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=add, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _count(db_engine, "key:race", "requests") == 100


def test_two_replicas_share_a_keys_limit_and_a_refusal_counts_nothing(db_engine: Engine, db_url):
    # two engines (two ingress replicas) over one database; the key may make 3 requests
    other = engine_for(db_url)
    replicas = [session_factory(db_engine), session_factory(other)]
    principal = _key("shared", rate_per_minute=3, daily_images=100)
    outcomes: list[str] = []
    lock = threading.Lock()

    def ask(i: int) -> None:
        try:
            admit_request(replicas[i % 2], Policy(), principal, "acme", images=2, now=NOW)
            result = "ok"
        except RateLimited as err:
            result = f"429 {err.limit['metric']}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.dispose()
    assert sorted(outcomes) == ["429 requests"] * 5 + ["ok"] * 3
    # the refused requests' additions rolled back: 3 requests, 6 images
    assert _count(db_engine, "key:shared", "requests") == 3
    assert _count(db_engine, "key:shared", "images") == 6


def test_a_brand_limit_holds_over_all_its_keys(db_engine: Engine):
    sessions = session_factory(db_engine)
    policy = Policy(brand_limits={"acme": BrandLimits(daily_images=5)})
    admit_request(sessions, policy, _key("a"), "acme", images=3, now=NOW)
    with pytest.raises(RateLimited) as refused:
        admit_request(sessions, policy, _key("b"), "acme", images=3, now=NOW)
    assert refused.value.limit["scope"] == "brand" and refused.value.limit["metric"] == "images"
    assert refused.value.retry_after_s == retry_after_s("images", NOW)
    admit_request(sessions, policy, _key("b"), "acme", images=2, now=NOW)  # exactly the limit
    with pytest.raises(Invalid, match="split it"):  # more than a whole day holds
        admit_request(sessions, policy, _key("c"), "acme", images=6, now=NOW + timedelta(days=1))


def test_a_new_window_frees_the_limit_and_purges_ended_windows(db_engine: Engine):
    sessions = session_factory(db_engine)
    limits = [Limit("key", "app", "requests", 1)]
    with sessions() as s:
        admit(s, limits, {"requests": 1}, now=NOW)
        s.commit()
    with sessions() as s, pytest.raises(RateLimited):
        admit(s, limits, {"requests": 1}, now=NOW + timedelta(seconds=30))
    with sessions() as s:
        for minute in range(1, 4):  # ended windows of other keys
            add_usage(
                s,
                scope="key:old",
                metric="requests",
                start=NOW - timedelta(minutes=minute),
                amount=1,
            )
        s.commit()
    later = NOW + timedelta(minutes=1)
    with sessions() as s:
        admit(s, limits, {"requests": 1}, now=later)  # a new minute: admitted, and purges
        s.commit()
    with sessions() as s:
        left = s.scalars(select(UsageWindow.scope)).all()
        assert sorted(left) == ["key:app"]
        assert purge(s, later) == 0
