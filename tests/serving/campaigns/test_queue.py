"""The campaign queue on the serving database (SQLite and PostgreSQL): expansion, pinning,
claims and leases, exactly-once completion, cancel, progress."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from serving.campaigns.queue import (
    MAX_ITEMS,
    CampaignError,
    CampaignSpec,
    cancel,
    claim,
    expand,
    finish,
    progress,
    ratio_size,
    submit,
)
from serving.db.models import Asset, AuditLog, CampaignItem, engine_for, init_db, session_factory, utcnow
from tests.serving.test_auth import pg_url  # noqa: F401  (fixture)

SPEC = {
    "brand": "acme",
    "template": "{brand} {product} banner, {season} mood",
    "variables": {"product": ["shoes", "bags", "hats"], "season": ["spring", "autumn"]},
    "ratios": ["1:1", "9:16"],
    "variants": 2,
    "formats": ["png", "jpeg"],
    "headline": "{product} for {season}",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = (
        f"sqlite:///{tmp_path / 'serving.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    engine = engine_for(url)
    init_db(engine)
    yield session_factory(engine)
    engine.dispose()


def _submit(sessions, spec: dict | None = None, *, canary=None, actor: str = "app", seed=7):
    with sessions() as session:
        campaign, created = submit(
            session,
            CampaignSpec.model_validate(spec or SPEC),
            model_name="brandforge-acme",
            champion_version="3",
            canary=canary,
            actor=actor,
            base_seed=seed,
        )
        session.commit()
        return campaign, created


# ---------------------------------------------------------------------------------------------
# The spec and its expansion (pure)


def test_a_campaign_expands_to_every_combination_ratio_and_variant() -> None:
    spec = CampaignSpec.model_validate(SPEC)
    items = expand(spec)
    assert len(items) == spec.item_count() == 3 * 2 * 2 * 2
    assert len({i.key for i in items}) == len(items)
    assert expand(spec) == items  # keys and order depend on the spec alone
    prompts = {i.prompt for i in items}
    assert "acme shoes banner, autumn mood" in prompts and len(prompts) == 6
    assert {i.ratio for i in items} == {"1:1", "9:16"}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"template": "{brand} {colour} banner"}, "{colour}"),
        ({"headline": "{price} off"}, "headline uses {price}"),
        ({"ratios": ["16x9"]}, "aspect ratio"),
        ({"variables": {"product": []}}, "no values"),
        ({"formats": ["bmp"]}, "formats"),
        ({"deadline": "2026-12-01T09:00:00"}, "time zone"),
        (
            {
                "variables": {"product": [f"p{i}" for i in range(200)], "season": ["a", "b"]},
                "variants": 16,
            },
            f"at most {MAX_ITEMS}",
        ),
        ({"colour": "teal"}, "colour"),
        ({"motion": {"frames": 10, "fps": 5, "duration_s": 1}}, "give two of frames"),
    ],
)
def test_a_bad_campaign_says_which_field_is_wrong(change: dict, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        CampaignSpec.model_validate({**SPEC, **change})
    assert words in str(err.value)


def test_a_loop_is_as_long_as_asked() -> None:
    from serving.campaigns.queue import MotionSpec

    assert MotionSpec().frame_count == 8
    assert MotionSpec(fps=12, duration_s=2).frame_count == 24
    assert MotionSpec(frames=16, fps=8).frame_count == 16
    assert MotionSpec(frames=16, fps=8, duration_s=2).frame_count == 16


def test_sizes_follow_the_ratio_on_a_grid_of_eight() -> None:
    assert ratio_size("1:1", 1024) == (1024, 1024)
    assert ratio_size("9:16", 1024) == (576, 1024)
    assert ratio_size("4:5", 1080) == (864, 1080)
    assert ratio_size("16:9", 128) == (128, 72)


# ---------------------------------------------------------------------------------------------
# The queue


def test_submission_pins_the_versions_and_splits_items_like_clients(sessions) -> None:
    campaign, created = _submit(sessions, canary=("4", 11, 50))
    assert created
    with sessions() as s:
        items = s.scalars(select(CampaignItem).where(CampaignItem.campaign_id == campaign.id))
        items = list(items)
    assert len(items) == 24
    variants = {i.variant for i in items}
    assert variants == {"champion", "canary"}
    assert {i.model_version for i in items if i.variant == "canary"} == {"4"}
    assert {i.model_version for i in items if i.variant == "champion"} == {"3"}
    assert 4 <= sum(i.variant == "canary" for i in items) <= 20
    assert all(i.state == "pending" and i.attempts == 0 for i in items)
    assert len({i.seed for i in items}) == 24
    assert {(i.width, i.height) for i in items} == {(1024, 1024), (576, 1024)}


def test_an_idempotency_key_makes_a_retried_submission_return_the_same_campaign(sessions) -> None:
    first, created = _submit(sessions, {**SPEC, "idempotency_key": "spring-2026"})
    again, created_again = _submit(sessions, {**SPEC, "idempotency_key": "spring-2026"})
    assert created and not created_again and again.id == first.id
    other, created_other = _submit(sessions, {**SPEC, "idempotency_key": "spring-2026"}, actor="b")
    assert created_other and other.id != first.id  # keys are per caller
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(CampaignItem)) == 48


def test_two_workers_never_hold_the_same_item_and_higher_priority_goes_first(sessions) -> None:
    low, _ = _submit(sessions, {**SPEC, "priority": 0})
    high, _ = _submit(sessions, {**SPEC, "priority": 5, "variants": 1})
    with sessions() as s:
        a = claim(s, owner="a", limit=10, lease_s=60)
    with sessions() as s:
        b = claim(s, owner="b", limit=10, lease_s=60)
    assert {i.id for i in a}.isdisjoint({i.id for i in b})
    assert all(i.campaign_id == high.id for i in a)  # 12 high-priority items first
    assert [i.campaign_id for i in b].count(high.id) == 2
    with sessions() as s:
        assert progress(s, low.id, items=False)["state"] == "running"


def test_a_dead_workers_items_are_taken_over_and_only_one_result_counts(sessions) -> None:
    campaign, _ = _submit(
        sessions,
        {
            **SPEC,
            "variables": {"product": ["shoes"], "season": ["spring"]},
            "ratios": ["1:1"],
            "variants": 2,
        },
    )
    with sessions() as s:
        held = claim(s, owner="dead", limit=2, lease_s=30)
    assert len(held) == 2
    with sessions() as s:  # before the lease runs out nobody else gets them
        assert claim(s, owner="alive", limit=2, lease_s=30) == []
    later = utcnow() + timedelta(seconds=31)
    with sessions() as s:
        taken = claim(s, owner="alive", limit=2, lease_s=30, now=later)
    assert sorted(i.id for i in taken) == sorted(i.id for i in held)

    def deliver(owner: str, item: CampaignItem, asset_id: str) -> bool:
        with sessions() as s:
            s.add(
                Asset(
                    id=asset_id,
                    request_id="campaign",
                    brand="acme",
                    model_name="brandforge-acme",
                    model_version="3",
                    variant="champion",
                    prompt=item.prompt,
                    seed=item.seed,
                    width=8,
                    height=8,
                    steps=1,
                    guidance=1.0,
                    format="png",
                    path=f"acme/{asset_id}.png",
                    campaign_id=campaign.id,
                    item_id=item.id,
                )
            )
            s.flush()
            return finish(
                s,
                item.id,
                owner=owner,
                state="done",
                attempts=1,
                seed=item.seed,
                asset_ids=[asset_id],
                compliance=None,
            )

    for item in taken:
        assert deliver("alive", item, f"alive-{item.id}")
    for item in held:  # the first worker comes back from the dead: too late, nothing written
        assert not deliver("dead", item, f"dead-{item.id}")
    with sessions() as s:
        assets = s.scalars(select(Asset.id).where(Asset.campaign_id == campaign.id)).all()
        state = progress(s, campaign.id)
    assert sorted(assets) == sorted(f"alive-{i.id}" for i in taken)
    assert state["state"] == "done" and state["counts"]["done"] == 2 and state["progress"] == 1.0
    assert [a["asset_id"] for item in state["items"] for a in item["assets"]] == [
        f"alive-{i.id}" for i in sorted(taken, key=lambda i: i.id)
    ]
    assert state["eta_s"] == 0.0


def test_cancel_drops_pending_items_and_is_audited(sessions) -> None:
    campaign, _ = _submit(sessions)
    with sessions() as s:
        claim(s, owner="w", limit=3, lease_s=60)
    with sessions() as s:
        cancel(s, campaign.id, actor="app")
    with sessions() as s:
        state = progress(s, campaign.id, items=False)
        audit = s.scalars(select(AuditLog.action).where(AuditLog.brand == "acme")).all()
        with pytest.raises(CampaignError) as again:
            cancel(s, campaign.id, actor="app")
        with sessions() as s2, pytest.raises(CampaignError) as unknown:
            progress(s2, "nope")
    assert state["state"] == "cancelled"
    assert state["counts"]["cancelled"] == 21 and state["counts"]["running"] == 3
    assert "campaign.cancel" in audit
    assert again.value.status == 409 and unknown.value.status == 404
    with sessions() as s:  # nothing of a cancelled campaign is handed out any more
        assert claim(s, owner="w2", limit=30, lease_s=60, now=utcnow() + timedelta(hours=1)) == []
