"""Erasing a data subject (serving.privacy.erasure, `brandforge privacy erase`) on SQLite and
PostgreSQL, with a local and an S3 asset store (moto on loopback): objects are written by the
real delivery, campaign queue and audit code, found by the subject's keyed hash or in clear,
and deleted or scrubbed, leaving every other subject's and brand's objects alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from serving.assets.store import AssetMissing, AssetStore, asset_key
from serving.auth import audit
from serving.campaigns.queue import submit
from serving.campaigns.spec import CampaignSpec
from serving.db.engine import session_factory
from serving.db.models import Asset, AuditLog, Campaign, CampaignItem, SubjectRef
from serving.delivery.deliver import CampaignRef, Delivery, Drawing, Origin
from serving.privacy.erasure import erase, in_scope, mentions, plan_erasure, scrubbed
from tests.serving.assets.test_store import StoreSpec, s3_endpoint, spec  # noqa: F401
from tests.serving.delivery.test_provenance import natural_image

JANE, JOHN = "jane.doe@example.com", "john@example.com"


def _origin(brand: str) -> Origin:
    return Origin(
        brand=brand, model_name=f"brandforge-{brand}", model_version="1", variant="champion"
    )


def _deliver(sessions, store, brand: str, prompt: str, campaign: CampaignRef | None = None) -> str:
    with Delivery(store=store, origin=_origin(brand), request_id="r", campaign=campaign) as d:
        drawing = Drawing(prompt=prompt, seed=1, steps=2, guidance=2.0)
        d.add(natural_image(64, 64), fmt="png", drawing=drawing, compliance={})
        d.commit(sessions)
    return d.asset_ids[0]


@dataclass
class World:
    sessions: sessionmaker[Session]
    store: AssetStore
    ids: dict[str, Any]


@pytest.fixture
def world(db_engine: Engine, spec: StoreSpec) -> World:  # noqa: F811
    """Jane in a live asset of acme and of initech, in a campaign's variable (its items and
    their asset) and in an audit reason; John in another asset; a clean asset."""
    sessions, store = session_factory(db_engine), spec.open(cache_bytes=0)
    ids: dict[str, Any] = {
        "jane_acme": _deliver(sessions, store, "acme", f"banner for {JANE.upper()}"),
        "jane_initech": _deliver(sessions, store, "initech", f"poster, mail {JANE}"),
        "john": _deliver(sessions, store, "acme", f"banner for {JOHN}"),
        "clean": _deliver(sessions, store, "acme", "calm banner, CUST-00042 only"),
    }
    with sessions() as session:
        campaign, _ = submit(
            session,
            CampaignSpec.model_validate(
                {
                    "brand": "acme",
                    "template": "{brand} card for {who}",
                    "variables": {"who": [JANE, "all"]},
                }
            ),
            model_name="brandforge-acme",
            champion_version="1",
            canary=None,
            actor="app",
            base_seed=1,
        )
        audit(session, "ops", "asset.reject", "acme", reason=f"asked by {JANE}", asset_id="x")
        session.commit()
        ids["campaign"] = campaign.id
        items = session.scalars(select(CampaignItem).where(CampaignItem.campaign_id == campaign.id))
        ids["items"] = sorted(i.id for i in items)
    item = ids["items"][1]  # the item for "all": goes with its campaign
    ids["campaign_asset"] = _deliver(
        sessions, store, "acme", "card for all", CampaignRef(ids["campaign"], item)
    )
    return World(sessions, store, ids)


def _count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)))


def test_pure_decisions() -> None:
    assert in_scope("acme", None) and in_scope(None, None)
    assert in_scope("acme", frozenset({"acme"})) and not in_scope(None, frozenset({"acme"}))
    assert mentions("order for cust-00042.", "CUST-00042")
    assert not mentions("order cust-000420", "CUST-00042")
    assert scrubbed({"reason": "x", "n": 2, "l": ["a", 1]}) == {
        "reason": "[erased]",
        "n": 2,
        "l": ["[erased]", 1],
    }


def test_erasure_finds_deletes_and_scrubs_every_object_of_the_subject(world: World) -> None:
    ids, store = world.ids, world.store
    with world.sessions() as session:
        plan = plan_erasure(session, f"  {JANE.title()} ", brands=None)
        dry = erase(session, store, plan, actor="cli:dpo", dry_run=True)
    # both live assets, and the asset of the campaign's other item (it goes with the campaign)
    assert {t.id for t in plan.of("asset")} == {
        ids["jane_acme"],
        ids["jane_initech"],
        ids["campaign_asset"],
    }
    assert plan.counts() == {"assets": 3, "campaigns": 1, "campaign_items": 2, "audit_records": 1}
    assert dry.summary()["assets"] == 3 and dry.files_deleted == 0
    with world.sessions() as session:  # the dry run changed nothing
        assert _count(session, Asset) == 5 and _count(session, Campaign) == 1

    with world.sessions() as session:
        result = erase(session, store, plan_erasure(session, JANE, brands=None), actor="cli:dpo")
    assert (result.files_deleted, result.files_missing) == (3, 0)
    with world.sessions() as session:
        left = set(session.scalars(select(Asset.id)))
        assert left == {ids["john"], ids["clean"]}
        assert _count(session, Campaign) == 0 and _count(session, CampaignItem) == 0
        rows = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
        reject = next(r for r in rows if r.action == "asset.reject")
        assert reject.detail == {"reason": "[erased]", "asset_id": "[erased]"}
        erased = [r for r in rows if r.action == "privacy.erase"]
        assert len(erased) == 1 and erased[0].actor == "cli:dpo"
        assert erased[0].detail["assets"] == 3 and erased[0].detail["campaigns"] == 1
        assert JANE not in json.dumps([r.detail for r in rows]).lower()
        refs = session.scalars(select(SubjectRef.object_id)).all()
        assert refs == [ids["john"]]  # only John's reference is left
    for brand, gone in (
        ("acme", "jane_acme"),
        ("initech", "jane_initech"),
        ("acme", "campaign_asset"),
    ):
        with pytest.raises(AssetMissing):
            store.get(asset_key(brand, ids[gone], "png"))
    store.get(asset_key("acme", ids["john"], "png"))  # John's file stays


# The full matrix runs above and in the CLI test; these two take one production-like set-up each.
@pytest.mark.parametrize(("db_url", "spec"), [("postgresql", "s3")], indirect=True)
def test_a_brand_admin_erases_only_its_brand_and_a_rerun_finds_nothing(world: World) -> None:
    with world.sessions() as session:
        plan = plan_erasure(session, JANE, brands=frozenset({"initech"}))
        assert [t.id for t in plan.targets] == [world.ids["jane_initech"]]
        erase(session, world.store, plan, actor="initech-admin")
        again = plan_erasure(session, JANE, brands=frozenset({"initech"}))
        assert again.targets == []
        row = session.scalars(select(AuditLog).where(AuditLog.action == "privacy.erase")).one()
        assert row.brand == "initech" and row.detail["brands"] == ["initech"]


@pytest.mark.parametrize(("db_url", "spec"), [("sqlite", "local")], indirect=True)
def test_a_subject_redaction_does_not_know_is_found_in_clear_as_whole_words(world: World) -> None:
    with world.sessions() as session:
        plan = plan_erasure(session, "cust-00042", brands=None)
        assert [t.id for t in plan.targets] == [world.ids["clean"]]
        assert plan_erasure(session, "CUST-0004", brands=None).targets == []


def test_the_cli_lists_on_a_dry_run_and_erases(
    world: World,
    db_url: str,
    spec: StoreSpec,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from brandforge.settings import get_settings
    from serving.cli.privacy import privacy_app

    for k, v in spec.env().items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        dry = runner.invoke(privacy_app, ["erase", "--subject", JANE, "--dry-run", "--db", db_url])
        assert dry.exit_code == 0, dry.output
        assert world.ids["jane_acme"] in dry.output and "would erase 3 asset(s)" in dry.output
        done = runner.invoke(
            privacy_app, ["erase", "--subject", JANE, "--brand", "acme", "--db", db_url]
        )
        assert done.exit_code == 0, done.output
        assert "erased 2 asset(s)" in done.output
        with world.sessions() as session:
            assert set(session.scalars(select(Asset.id))) == {
                world.ids["jane_initech"],
                world.ids["john"],
                world.ids["clean"],
            }
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(("db_url", "spec"), [("sqlite", "local")], indirect=True)
def test_an_address_formed_by_joined_values_is_found_through_its_item(world: World) -> None:
    template = {
        "template": "{brand} for {user}@{domain}.com",
        "variables": {"user": ["ann", "bob"], "domain": ["corp"]},
    }
    with world.sessions() as session:
        campaign, _ = submit(
            session,
            CampaignSpec.model_validate({"brand": "acme", **template}),
            model_name="brandforge-acme",
            champion_version="1",
            canary=None,
            actor="app",
            base_seed=1,
        )
        session.commit()
        ann = session.scalars(
            select(CampaignItem.id).where(
                CampaignItem.campaign_id == campaign.id, CampaignItem.key.startswith("0:")
            )
        ).one()
        plan = plan_erasure(session, "Ann@corp.com", brands=None)
    # the spec held no address (only "ann" and "corp"), the item's prompt did
    assert [(t.kind, t.id) for t in plan.targets] == [("campaign_item", str(ann))]
