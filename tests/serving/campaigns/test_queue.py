"""The campaign queue on the serving database (SQLite and PostgreSQL): pinning, claims and
leases, exactly-once completion, cancel, progress, and personal data redacted before storage."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from serving.campaigns.queue import (
    CampaignState,
    ItemState,
    cancel,
    claim,
    finish,
    progress,
    submit,
)
from serving.campaigns.spec import CampaignSpec
from serving.db.engine import session_factory
from serving.db.models import (
    CAMPAIGN_STATES,
    ITEM_STATES,
    Asset,
    AuditLog,
    Campaign,
    CampaignItem,
    utcnow,
)
from serving.errors import Conflict, NotFound

SPEC = {
    "brand": "acme",
    "template": "{brand} {product} banner, {season} mood",
    "variables": {"product": ["shoes", "bags", "hats"], "season": ["spring", "autumn"]},
    "ratios": ["1:1", "9:16"],
    "variants": 2,
    "formats": ["png", "jpeg"],
    "headline": "{product} for {season}",
}


@pytest.fixture
def sessions(db_engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions on an empty serving database, SQLite and PostgreSQL (`db_engine`)."""
    yield session_factory(db_engine)


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
                state=ItemState.DONE,
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
        with pytest.raises(Conflict, match="already cancelled"):
            cancel(s, campaign.id, actor="app")
        with sessions() as s2, pytest.raises(NotFound, match="no campaign 'nope'"):
            progress(s2, "nope")
    assert state["state"] == "cancelled"
    assert state["counts"]["cancelled"] == 21 and state["counts"]["running"] == 3
    assert "campaign.cancel" in audit
    with sessions() as s:  # nothing of a cancelled campaign is handed out any more
        assert claim(s, owner="w2", limit=30, lease_s=60, now=utcnow() + timedelta(hours=1)) == []


# ---------------------------------------------------------------------------------------------
# Personal data and states

EMAIL, PHONE = "jane.doe@example.com", "+44 20 7946 0958"


def test_personal_data_in_a_campaign_is_redacted_before_anything_is_stored(sessions) -> None:
    spec = {
        "brand": "acme",
        "name": f"spring for {EMAIL}",
        "template": "{brand} {product} banner, call " + PHONE,
        "variables": {"product": ["shoes", f"write to {EMAIL}"], "contact": ["jo", PHONE]},
        "negative_prompt": f"no {EMAIL}",
        "headline": "{product} now",
        "cta": "Call {contact}",
    }
    campaign, _ = _submit(sessions, spec)
    with sessions() as s:
        state = progress(s, campaign.id)
        stored_spec = s.scalar(select(Campaign.spec).where(Campaign.id == campaign.id))
        items = s.execute(
            select(CampaignItem.prompt, CampaignItem.values).where(
                CampaignItem.campaign_id == campaign.id
            )
        ).all()
        raw = [
            str(v)
            for row in s.execute(select(Campaign.__table__)).all()
            + s.execute(select(CampaignItem.__table__)).all()
            for v in row
        ]
    assert len(items) == 4
    for text in [str(stored_spec), str(state), *(str(i) for i in items), *raw]:
        assert EMAIL not in text and PHONE not in text and "7946" not in text
    assert stored_spec["template"] == "{brand} {product} banner, call [phone]"
    assert stored_spec["variables"]["product"] == ["shoes", "write to [email]"]
    assert stored_spec["cta"] == "Call {contact}" and stored_spec["name"] == "spring for [email]"
    prompts = sorted({p for p, _ in items})
    assert prompts == [
        "acme shoes banner, call [phone]",
        "acme write to [email] banner, call [phone]",
    ]
    # what the worker reads back still validates (it re-reads the stored spec)
    assert CampaignSpec.model_validate(stored_spec).template.endswith("[phone]")


def test_values_joined_into_an_address_are_redacted_in_the_prompt(sessions) -> None:
    spec = {
        "brand": "acme",
        "template": "{brand} poster for {user}@{domain}.com",
        "variables": {"user": ["jane"], "domain": ["example"]},
    }
    campaign, _ = _submit(sessions, spec)
    with sessions() as s:
        [prompt] = s.scalars(
            select(CampaignItem.prompt).where(CampaignItem.campaign_id == campaign.id)
        ).all()
    assert prompt == "acme poster for [email]"


def test_states_are_the_database_values() -> None:
    assert tuple(CampaignState) == CAMPAIGN_STATES
    assert tuple(ItemState) == ITEM_STATES


def test_an_item_finishes_only_in_a_finished_state(sessions) -> None:
    _submit(sessions, {**SPEC, "variables": {"product": ["a"], "season": ["b"]}, "variants": 1})
    with sessions() as s:
        [item, *_] = claim(s, owner="w", limit=1, lease_s=60)
        with pytest.raises(ValueError, match="done, review or failed"):
            finish(
                s,
                item.id,
                owner="w",
                state=ItemState.PENDING,
                attempts=1,
                seed=1,
                asset_ids=[],
                compliance=None,
            )
