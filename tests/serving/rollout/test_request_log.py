"""What the request log says about a brand's versions outside a rollout: the share of live
images that passed the brand kit per version (`GET /v1/models`), from real rows in SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from serving.db.engine import session_factory
from serving.db.models import utcnow
from serving.rollout.request_log import kit_pass_rates, request_row


@pytest.fixture
def sessions(db_engine) -> Iterator[sessionmaker[Session]]:
    yield session_factory(db_engine)


def _row(version: str, passed: list[bool], **kw):
    return request_row(
        kw.pop("brand", "acme"),
        version,
        "champion",
        ok=kw.pop("ok", True),
        latency_s=0.5,
        images=len(passed),
        compliance_scores=kw.pop("scores", [0.8] * len(passed)),
        compliance_passed=passed,
        rollout_id=None,
        **kw,
    )


def test_pass_rates_count_scored_images_of_answered_requests_per_version(sessions):
    old = utcnow() - timedelta(days=30)
    with sessions() as session:
        session.add_all(
            [
                _row("1", [True, False, True]),
                _row("1", [True]),
                _row("2", [False, False]),
                _row("2", [True], ok=False),  # a failed request: not counted
                _row("3", [None, None], scores=[None, None]),  # no kit: nothing scored
                _row("1", [False] * 5, at=old),  # older than the window
                _row("1", [False], brand="initech"),  # another brand
            ]
        )
        session.commit()
        rates = kit_pass_rates(session, "acme")
        assert rates == {
            "1": {"images": 4, "passed": 3, "pass_rate": 0.75},
            "2": {"images": 2, "passed": 0, "pass_rate": 0.0},
        }
        assert kit_pass_rates(session, "acme", since=old - timedelta(days=1))["1"] == {
            "images": 9,
            "passed": 3,
            "pass_rate": 0.3333,
        }
        assert kit_pass_rates(session, "globex") == {}
