"""The one delivery path (serving.delivery.deliver), into a real SQLite database and a real local
asset store: the delivered file carries its manifest and watermark, the row says what was drawn,
the live and campaign variants differ only where they must, and a delivery that fails part-way
leaves no file behind."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from brandforge.brandkit import load_brand_kit
from serving.assets.store import AssetStore
from serving.db.models import Asset
from serving.delivery.deliver import (
    NO_KIT_COMPLIANCE,
    CampaignRef,
    Delivery,
    Drawing,
    Motion,
    Origin,
    deliver_live,
    score_image,
)
from serving.delivery.manifest import DIGITAL_SOURCE_TYPE, read_provenance
from serving.delivery.watermark import watermark_payload
from tests.serving.delivery.test_provenance import natural_image

KIT = Path(__file__).parents[2] / "evaluation/data/acme.yaml"
ORIGIN = Origin(
    brand="acme",
    model_name="brandforge-acme",
    model_version="3",
    variant="canary",
    dataset_hash="md5:5d41402abc4b2a76b9719d911017c592",
)
PROMPT = "spring sale banner, questions to jane.doe@example.com or +44 20 7946 0958"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    from serving.db.engine import engine_for
    from serving.db.migrate import upgrade

    engine = engine_for(f"sqlite:///{tmp_path / 'serving.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(db: Engine) -> sessionmaker[Session]:
    from serving.db.engine import session_factory

    return session_factory(db)


@pytest.fixture
def store(tmp_path: Path) -> AssetStore:
    return AssetStore(str(tmp_path / "assets"))


def drawing(seed: int = 7) -> Drawing:
    return Drawing(prompt=PROMPT, negative_prompt="blurry", seed=seed, steps=20, guidance=2.0)


def stored_files(store: AssetStore) -> list[str]:
    return sorted(store.sizes())


def rows(sessions: sessionmaker[Session]) -> list[Asset]:
    with sessions() as session:
        return list(session.scalars(select(Asset).order_by(Asset.created_at, Asset.id)))


def test_a_live_delivery_stores_a_marked_file_and_its_row(sessions, store):
    kit = load_brand_kit(KIT)
    image = natural_image(96, 96)
    seconds: dict[str, float] = {}
    (done,) = deliver_live(
        [(image, drawing())],
        fmt="png",
        kit=kit,
        origin=ORIGIN,
        request_id="req-1",
        store=store,
        sessions=sessions,
        retention_days={"acme": 30},
        seconds=seconds,
    )
    assert set(seconds) == {"score", "encode", "store"}  # the stages of Server-Timing
    assert all(s > 0 for s in seconds.values())
    (row,) = rows(sessions)
    assert stored_files(store) == [row.path] and row.id == done.asset_id
    found = read_provenance(store.get(row.path))
    assert found["ai_generated"] and found["format"] == "png"
    manifest = found["manifest"]
    assert manifest["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert manifest["asset_id"] == row.id and manifest["model_version"] == "3"
    assert manifest["variant"] == "canary" and manifest["dataset_hash"] == ORIGIN.dataset_hash
    assert found["watermark"]["found"] and found["watermark"]["matches_manifest"]
    assert found["watermark"]["payload"] == watermark_payload(row.id).hex()
    assert row.provenance == manifest == done.manifest
    # the row: what was drawn, by which model, with personal data redacted
    assert (row.brand, row.model_name, row.model_version, row.variant) == (
        "acme",
        "brandforge-acme",
        "3",
        "canary",
    )
    assert row.prompt == "spring sale banner, questions to [email] or [phone]"
    assert (row.negative_prompt, row.seed, row.steps, row.guidance) == ("blurry", 7, 20, 2.0)
    assert (row.width, row.height, row.format) == (96, 96, "png")
    assert row.request_id == "req-1" and row.status == "delivered"
    assert row.campaign_id is None and row.item_id is None and row.settings == {}
    assert row.expires_at - row.created_at == timedelta(days=30)
    assert row.compliance == done.compliance == score_image(image, kit)
    assert set(row.compliance) == {"score", "passed", "violations"}


def test_live_and_campaign_deliveries_differ_only_where_they_must(sessions, store):
    image = natural_image(96, 96, seed=2)
    created = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    compliance = score_image(image, None)
    assert compliance == NO_KIT_COMPLIANCE
    with Delivery(store=store, origin=ORIGIN, request_id="req-2", created_at=created) as live:
        live.add(image, fmt="webp", drawing=drawing(), compliance=compliance)
        live.commit(sessions)
    with Delivery(
        store=store,
        origin=ORIGIN,
        request_id="campaign:c1",
        created_at=created,
        campaign=CampaignRef(campaign_id="c1", item_id=5),
        held_for_review=True,
    ) as campaign:
        campaign.add(
            image,
            fmt="webp",
            drawing=drawing(),
            compliance=compliance,
            settings={"ratio": "1:1", "attempt": 0},
        )
        campaign.commit(sessions)
    by_id = {r.id: r for r in rows(sessions)}
    a, b = by_id[live.asset_ids[0]], by_id[campaign.asset_ids[0]]
    columns = [c.name for c in Asset.__table__.columns]
    differ = {c for c in columns if getattr(a, c) != getattr(b, c)}
    # an asset's own id, file and manifest (which names its id) always differ
    assert differ == {
        "id",
        "path",
        "provenance",
        "request_id",
        "status",
        "settings",
        "campaign_id",
        "item_id",
    }
    assert (b.status, b.campaign_id, b.item_id) == ("review", "c1", 5)
    assert {**a.provenance, "asset_id": None} == {**b.provenance, "asset_id": None}
    for row in (a, b):
        found = read_provenance(store.get(row.path))
        assert found["watermark"]["found"] and found["manifest"]["asset_id"] == row.id


def test_motion_frames_are_each_watermarked_into_one_file(sessions, store):
    frames = [natural_image(128, 128, seed=s, noise=0) for s in range(3)]
    with Delivery(store=store, origin=ORIGIN, request_id="req-3") as delivery:
        done = delivery.add(Motion(frames, fps=4), fmt="gif", drawing=drawing(), compliance={})
        delivery.commit(sessions)
    (row,) = rows(sessions)
    data = store.get(done.key)
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.n_frames == 3 and gif.size == (128, 128)
    assert (row.format, row.width, row.height) == ("gif", 128, 128)
    found = read_provenance(data)
    assert found["watermark"]["found"] and found["watermark"]["matches_manifest"]


def test_a_seed_overflow_in_a_multi_image_request_leaves_no_file_and_no_row(sessions, store):
    """The database refuses the second row (its seed is past a 64-bit integer) when the files
    are already written: the commit fails, and the files go with it."""
    image = natural_image(64, 64)
    pictures = [(image, drawing(seed=2**63 - 1)), (image, drawing(seed=2**63))]
    with pytest.raises(Exception, match="(?i)int|range|overflow"):
        deliver_live(
            pictures,
            fmt="png",
            kit=None,
            origin=ORIGIN,
            request_id="req-4",
            store=store,
            sessions=sessions,
        )
    assert stored_files(store) == [] and rows(sessions) == []


def test_a_failure_before_the_commit_deletes_the_files_written_so_far(sessions, store):
    image = natural_image(64, 64)
    with pytest.raises(ValueError, match="motion frames"):
        with Delivery(store=store, origin=ORIGIN, request_id="req-5") as delivery:
            delivery.add(image, fmt="png", drawing=drawing(), compliance={})
            delivery.add(image, fmt="jpeg", drawing=drawing(), compliance={})
            assert len(stored_files(store)) == 2
            delivery.add(Motion([image], fps=2), fmt="png", drawing=drawing(), compliance={})
    assert stored_files(store) == [] and rows(sessions) == []


def test_a_refused_commit_rolls_the_rows_back_and_deletes_the_files(sessions, store):
    """What a campaign worker whose lease was lost sees: `finish` refuses, nothing stays."""
    image = natural_image(64, 64)
    with Delivery(store=store, origin=ORIGIN, request_id="campaign:c2") as delivery:
        delivery.add(image, fmt="png", drawing=drawing(), compliance={})
        assert delivery.commit(sessions, then=lambda session: False) is False
    assert stored_files(store) == [] and rows(sessions) == []
    with pytest.raises(RuntimeError, match="committed|new Delivery"):
        kept = Delivery(store=store, origin=ORIGIN, request_id="r")
        kept.add(image, fmt="png", drawing=drawing(), compliance={})
        assert kept.commit(sessions) is True
        kept.add(image, fmt="png", drawing=drawing(), compliance={})
    assert len(stored_files(store)) == 1  # the committed file stays


def test_a_scoring_that_fails_after_its_file_is_stored_leaves_no_file_and_no_row(sessions, store):
    """Scoring runs beside encoding and storing; its failure is seen only once the file is in
    the store, and the file goes with it (and the one stored before it)."""
    image = natural_image(64, 64)

    def broken() -> dict:
        assert len(stored_files(store)) == 2  # called once this picture's file is stored
        raise RuntimeError("the scorer failed")

    with pytest.raises(RuntimeError, match="the scorer failed"):
        with Delivery(store=store, origin=ORIGIN, request_id="req-6") as delivery:
            delivery.add(image, fmt="png", drawing=drawing(), compliance=lambda: {"score": 1})
            delivery.add(image, fmt="png", drawing=drawing(8), compliance=broken)
    assert stored_files(store) == [] and rows(sessions) == []


def test_a_live_delivery_of_several_images_scores_each_against_the_kit(sessions, store):
    kit = load_brand_kit(KIT)
    pictures = [(natural_image(96, 96), drawing(s)) for s in (1, 2, 3)]
    seconds: dict[str, float] = {}
    done = deliver_live(
        pictures,
        fmt="jpeg",
        kit=kit,
        origin=ORIGIN,
        request_id="req-7",
        store=store,
        sessions=sessions,
        seconds=seconds,
    )
    assert [d.seed for d in done] == [1, 2, 3]
    assert [d.compliance for d in done] == [score_image(image, kit) for image, _ in pictures]
    assert {r.id: r.compliance for r in rows(sessions)} == {d.asset_id: d.compliance for d in done}
    assert seconds["score"] > 0 and len(stored_files(store)) == 3
