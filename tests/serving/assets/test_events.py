"""Impressions and clicks (serving.assets.events) on the serving database, SQLite and PostgreSQL:
only delivered assets have events, each report is bounded, clicks never pass impressions, and the
click-through rate per version adds them up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from serving.assets.events import MAX_PER_CALL, click_through, record_events
from serving.db.engine import session_factory
from serving.db.models import Asset, AssetEvent, new_asset_id
from serving.errors import Conflict, Gone, Invalid


@pytest.fixture
def sessions(db_engine: Engine) -> Iterator[sessionmaker[Session]]:
    yield session_factory(db_engine)


def add_asset(
    sessions: sessionmaker[Session], *, status: str = "delivered", version: str = "2"
) -> str:
    asset_id = new_asset_id()
    with sessions.begin() as session:
        session.add(
            Asset(
                id=asset_id,
                request_id="req-1",
                brand="acme",
                model_name="brandforge-acme",
                model_version=version,
                variant="canary",
                prompt="acme banner",
                seed=1,
                width=32,
                height=32,
                steps=4,
                guidance=5.0,
                format="png",
                path=f"acme/{asset_id}.png",
                status=status,
                deleted_at=datetime.now(UTC) if status == "deleted" else None,
            )
        )
    return asset_id


def report(
    sessions: sessionmaker[Session], asset_id: str, impressions: int, clicks: int
) -> dict[str, object]:
    with sessions() as session:
        asset = session.get(Asset, asset_id)
        assert asset is not None
        out = record_events(session, asset, impressions=impressions, clicks=clicks)
        session.commit()
        return out


def event_rows(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AssetEvent)) or 0)


def test_events_of_delivered_assets_add_up_to_a_click_through_rate(sessions) -> None:
    delivered = add_asset(sessions)
    approved = add_asset(sessions, status="approved", version="3")
    assert report(sessions, delivered, 100, 5) == {
        "asset_id": delivered,
        "impressions": 100,
        "clicks": 5,
    }
    report(sessions, delivered, 0, 15)  # clicks reported later, within the impressions
    report(sessions, approved, 40, 0)
    report(sessions, approved, 0, 0)  # an empty report writes nothing
    with sessions() as session:
        rates = click_through(session, "acme")
    assert rates == {
        "2": {"impressions": 100, "clicks": 20, "ctr": 0.2},
        "3": {"impressions": 40, "clicks": 0, "ctr": 0.0},
    }
    assert event_rows(sessions) == 4


@pytest.mark.parametrize(("status", "kind"), [("review", Conflict), ("rejected", Conflict)])
def test_held_assets_take_no_events(sessions, status: str, kind: type[Exception]) -> None:
    asset_id = add_asset(sessions, status=status)
    with pytest.raises(kind, match="not delivered"):
        report(sessions, asset_id, 1_000_000, 1_000_000)
    assert event_rows(sessions) == 0


def test_deleted_assets_are_gone(sessions) -> None:
    asset_id = add_asset(sessions, status="deleted")
    with pytest.raises(Gone, match="deleted"):
        report(sessions, asset_id, 1, 0)


@pytest.mark.parametrize(
    ("impressions", "clicks", "words"),
    [
        (MAX_PER_CALL + 1, 0, "impressions"),
        (0, MAX_PER_CALL + 1, "clicks"),
        (-1, 0, "impressions"),
        (10, 11, "11 clicks for 10 impressions"),
        (True, 0, "impressions"),
    ],
)
def test_reports_are_bounded(sessions, impressions: int, clicks: int, words: str) -> None:
    asset_id = add_asset(sessions)
    with pytest.raises(Invalid, match=words):
        report(sessions, asset_id, impressions, clicks)
    assert event_rows(sessions) == 0


def test_clicks_never_pass_the_impressions_so_far(sessions) -> None:
    asset_id = add_asset(sessions)
    report(sessions, asset_id, MAX_PER_CALL, MAX_PER_CALL)
    with pytest.raises(Invalid, match="report impressions first"):
        report(sessions, asset_id, 0, 1)
    report(sessions, asset_id, 1, 1)
    with sessions() as session:
        assert click_through(session, "acme")["2"]["ctr"] == 1.0
