"""Human review (serving.assets.review) on a real SQLite database: who may see an asset, the
queue and the decisions. (The review web page, driven in headless Chromium, is tested in
tests/serving/api/test_review_page.py.)"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from serving.assets.review import (
    AssetStatus,
    asset_visible,
    decide,
    require_visible,
    review_queue,
)
from serving.assets.store import AssetStore, asset_key
from serving.auth import Forbidden
from serving.db.engine import engine_for, session_factory
from serving.db.migrate import upgrade
from serving.db.models import Asset, AuditLog, new_asset_id
from serving.errors import Conflict, Gone, Invalid, NotFound

VIOLATION = {
    "rule": "palette_adherence",
    "value": 0.12,
    "limit": 0.5,
    "severity": "error",
    "message": "only 12% of the pixels are within the brand palette",
}


@dataclass
class Db:
    url: str
    sessions: sessionmaker[Session]
    store: AssetStore

    def add(
        self,
        *,
        brand: str = "acme",
        status: str = "review",
        prompt: str = "acme banner",
        created_at: datetime | None = None,
        deleted: bool = False,
        seed: int = 0,
        violations: list[dict[str, Any]] | None = None,
    ) -> str:
        """An asset row with a PNG (random pixels from `seed`) in the store; its id. Its
        compliance record holds `violations` (default: one, `VIOLATION`)."""
        asset_id = new_asset_id()
        key = asset_key(brand, asset_id, "png")
        pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        self.store.put(key, buf.getvalue())
        with self.sessions.begin() as session:
            session.add(
                Asset(
                    id=asset_id,
                    request_id="req-1",
                    brand=brand,
                    model_name=f"brandforge-{brand}",
                    model_version="2",
                    variant="canary",
                    prompt=prompt,
                    seed=seed,
                    width=64,
                    height=48,
                    steps=4,
                    guidance=5.0,
                    format="png",
                    path=key,
                    compliance={
                        "score": 0.31,
                        "passed": False,
                        "violations": [VIOLATION] if violations is None else violations,
                    },
                    status=status,
                    campaign_id="camp-7",
                    created_at=created_at or datetime.now(UTC),
                    deleted_at=datetime.now(UTC) if deleted else None,
                )
            )
        return asset_id

    def asset(self, asset_id: str) -> Asset:
        with self.sessions() as session:
            row = session.get(Asset, asset_id)
            assert row is not None
            return row

    def audit(self, action: str) -> list[AuditLog]:
        with self.sessions() as session:
            return list(session.scalars(select(AuditLog).where(AuditLog.action == action)))


@contextmanager
def review_db(folder: Path) -> Iterator[Db]:
    """A serving database (SQLite) and an asset store in `folder`."""
    url = f"sqlite:///{folder}/s.db"
    engine = engine_for(url)
    upgrade(engine)
    try:
        yield Db(url, session_factory(engine), AssetStore(str(folder / "assets")))
    finally:
        engine.dispose()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with review_db(tmp_path) as found:
        yield found


def _decide(db: Db, asset_id: str, **kwargs: Any) -> dict[str, Any]:
    kwargs = {"reason": None, "actor": "rita", "brands": ["acme"], **kwargs}
    with db.sessions.begin() as session:
        return decide(session, asset_id, **kwargs)


def _queue(db: Db, brands: list[str], **kwargs: Any) -> dict[str, Any]:
    with db.sessions() as session:
        return review_queue(session, brands=brands, **kwargs)


# --------------------------------------------------------------------------------------------
# Who may see an asset
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "generate", "review", "admin"),
    [
        ("delivered", True, True, True),
        ("approved", True, True, True),
        ("review", False, True, True),
        ("rejected", False, True, True),
        ("deleted", False, False, False),
        ("unheard-of", False, False, False),
    ],
)
def test_held_assets_are_for_reviewers_only(
    status: str, generate: bool, review: bool, admin: bool
) -> None:
    assert asset_visible(status, ["generate"]) is generate
    assert asset_visible(status, ["generate", "deploy"]) is generate
    assert asset_visible(status, ["review"]) is review
    assert asset_visible(status, ["admin"]) is admin
    assert asset_visible(status, []) is (status in ("delivered", "approved"))


def test_require_visible_says_why_an_asset_is_refused() -> None:
    require_visible("a1", AssetStatus.DELIVERED, ["generate"])
    require_visible("a1", AssetStatus.REVIEW, ["review"])
    with pytest.raises(Forbidden, match="waiting for review"):
        require_visible("a1", AssetStatus.REVIEW, ["generate"])
    with pytest.raises(Forbidden, match="rejected"):
        require_visible("a1", AssetStatus.REJECTED, ["generate", "deploy"])
    with pytest.raises(Gone, match="deleted"):
        require_visible("a1", AssetStatus.DELETED, ["admin"])
    with pytest.raises(NotFound):
        require_visible("a1", "unheard-of", ["admin"])


# --------------------------------------------------------------------------------------------
# The queue and decisions
# --------------------------------------------------------------------------------------------


def test_queue_lists_assets_waiting_for_review_per_brand_oldest_first(db: Db):
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    newest = db.add(prompt="third", created_at=start + timedelta(minutes=2))
    oldest = db.add(prompt="first", created_at=start)
    middle = db.add(prompt="second", created_at=start + timedelta(minutes=1))
    other = db.add(brand="globex", created_at=start)
    db.add(status="delivered", created_at=start)
    db.add(status="approved", created_at=start)
    db.add(deleted=True, created_at=start)

    acme = _queue(db, ["acme"])
    assert acme["total"] == 3
    assert [i["asset_id"] for i in acme["items"]] == [oldest, middle, newest]
    assert acme["items"][0] == {
        "asset_id": oldest,
        "brand": "acme",
        "url": f"/v1/assets/{oldest}",
        "prompt": "first",
        "model": {"name": "brandforge-acme", "version": "2", "variant": "canary"},
        "created_at": "2026-03-01T09:00:00+00:00",
        "campaign_id": "camp-7",
        "score": 0.31,
        "violations": [VIOLATION],
        "format": "png",
    }
    assert [i["asset_id"] for i in _queue(db, ["globex"])["items"]] == [other]
    assert _queue(db, ["*"])["total"] == 4
    assert _queue(db, ["acme", "globex"])["total"] == 4
    assert _queue(db, ["initech"]) == {"total": 0, "items": []}

    page = _queue(db, ["acme"], limit=2, offset=1)
    assert page["total"] == 3 and [i["asset_id"] for i in page["items"]] == [middle, newest]
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}):
        with pytest.raises(Invalid) as err:
            _queue(db, ["acme"], **bad)
        assert str(next(iter(bad.values()))) in err.value.message
    # an offset past the end is an empty page, however large (1e20 was a 500: SQL overflow)
    for offset in (3, 10**20, 2**63):
        assert _queue(db, ["acme"], offset=offset) == {"total": 3, "items": []}


def test_approve_records_who_when_and_audits(db: Db):
    asset_id = db.add()
    before = datetime.now(UTC)

    summary = _decide(db, asset_id, approve=True, reason="  lovely  ")

    row = db.asset(asset_id)
    assert (row.status, row.reviewed_by, row.review_reason) == ("approved", "rita", "lovely")
    assert row.reviewed_at is not None and row.reviewed_at >= before - timedelta(seconds=1)
    assert summary["status"] == "approved" and summary["asset_id"] == asset_id
    assert summary["reviewed_by"] == "rita" and summary["review_reason"] == "lovely"
    assert summary["reviewed_at"] == row.reviewed_at.isoformat()
    [audit] = db.audit("asset.approve")
    assert (audit.actor, audit.brand) == ("rita", "acme")
    assert audit.detail["asset_id"] == asset_id and audit.detail["reason"] == "lovely"
    assert _queue(db, ["acme"])["total"] == 0


def test_a_reason_is_stored_redacted_and_erasing_its_subject_finds_the_asset(db: Db):
    from serving.privacy.erasure import plan_erasure

    asset_id = db.add()
    _decide(db, asset_id, approve=False, reason="shows jane.doe@example.com, no consent")

    row = db.asset(asset_id)
    assert row.review_reason is not None and "jane" not in row.review_reason
    assert "no consent" in row.review_reason
    [audit] = db.audit("asset.reject")
    assert "jane" not in str(audit.detail)
    with db.sessions() as session:
        plan = plan_erasure(session, "Jane.Doe@example.com", brands=None)
    assert asset_id in {t.id for t in plan.of("asset")}


def test_reject_needs_a_reason_of_at_most_500_characters(db: Db):
    asset_id = db.add()
    for reason in (None, "", "   ", "x" * 501):
        with pytest.raises(Invalid) as err:
            _decide(db, asset_id, approve=False, reason=reason)
        assert "reason" in err.value.message
    assert db.asset(asset_id).status == "review" and db.audit("asset.reject") == []

    summary = _decide(db, asset_id, approve=False, reason="x" * 500)

    assert summary["status"] == "rejected"
    row = db.asset(asset_id)
    assert (row.status, row.review_reason) == ("rejected", "x" * 500)
    [audit] = db.audit("asset.reject")
    assert audit.detail["reason"] == "x" * 500


def test_deciding_twice_unknown_ids_and_other_brands_are_refused(db: Db):
    decided = db.add()
    _decide(db, decided, approve=True)
    with pytest.raises(Conflict) as err:
        _decide(db, decided, approve=False, reason="changed my mind", actor="sam")
    assert "not waiting for review" in err.value.message and "decided by rita" in err.value.message
    assert db.asset(decided).status == "approved"

    delivered = db.add(status="delivered")
    with pytest.raises(Conflict):
        _decide(db, delivered, approve=True)

    for unknown in ("no-such-asset", "../../etc/passwd", db.add(deleted=True)):
        with pytest.raises(NotFound) as err:
            _decide(db, unknown, approve=True)
        assert "no asset" in err.value.message

    theirs = db.add(brand="globex")
    with pytest.raises(Forbidden) as forbidden:
        _decide(db, theirs, approve=True, brands=["acme"])
    assert "globex" in str(forbidden.value)
    assert db.asset(theirs).status == "review"
    assert _decide(db, theirs, approve=True, brands=["*"])["status"] == "approved"
    assert len(db.audit("asset.approve")) == 2


def test_two_reviewers_at_once_get_one_decision_and_one_conflict(db: Db):
    asset_id = db.add()
    with db.sessions() as late:
        assert late.get(Asset, asset_id).status == "review"  # read before the other decides
        _decide(db, asset_id, approve=True, actor="first")
        with pytest.raises(Conflict):
            decide(late, asset_id, approve=False, reason="no", actor="second", brands=["acme"])
        late.rollback()
    row = db.asset(asset_id)
    assert (row.status, row.reviewed_by) == ("approved", "first")
    assert db.audit("asset.reject") == []


def test_decision_request_schema():
    from serving.api.schemas import ReviewRequest

    assert ReviewRequest(decision="approve").decision == "approve"
    assert ReviewRequest(decision="reject", reason="off brand").reason == "off brand"
    for bad in (
        {"decision": "maybe"},
        {"decision": "reject", "reason": "x" * 501},
        {"decision": "approve", "extra": 1},
        {"decision": "reject", "reason": "   "},
    ):
        with pytest.raises(ValidationError):
            ReviewRequest(**bad)


def test_a_reason_holds_text_only(db: Db):
    asset_id = db.add()
    for reason in ("off brand\x00", "off \ud800 brand"):
        with pytest.raises(Invalid, match="reason"):
            _decide(db, asset_id, approve=False, reason=reason)
    assert db.asset(asset_id).status == "review"


def test_statuses_are_the_values_stored() -> None:
    assert [s.value for s in AssetStatus] == [
        "delivered",
        "review",
        "approved",
        "rejected",
        "deleted",
    ]
