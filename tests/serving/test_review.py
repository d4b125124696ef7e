"""Human review: the queue and decisions on a real SQLite database, and the review page driven
in headless Chromium against a real HTTP server.

The server here is a small FastAPI app wired to `serving.assets.review` the way the HTTP contract in its
docstring says, with real API keys (`serving.auth`) and the real asset store. `drive_review_page`
holds the browser steps, so the same walk can be pointed at the Ray Serve app.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from serving.assets.store import AssetStore, asset_key
from serving.auth import AccessError, Principal, create_key, require_principal
from serving.db.models import Asset, AuditLog, engine_for, init_db, new_asset_id, session_factory
from serving.assets.review import (
    DecisionRequest,
    ReviewError,
    decide,
    review_page,
    review_page_headers,
    review_queue,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
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
    ) -> str:
        """An asset row with a PNG (random pixels from `seed`) in the store; its id."""
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
                    compliance={"score": 0.31, "passed": False, "violations": [VIOLATION]},
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


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    url = f"sqlite:///{tmp_path}/s.db"
    engine = engine_for(url)
    init_db(engine)
    yield Db(url, session_factory(engine), AssetStore(str(tmp_path / "assets")))
    engine.dispose()


def _decide(db: Db, asset_id: str, **kwargs: Any) -> dict[str, Any]:
    kwargs = {"reason": None, "actor": "rita", "brands": ["acme"], **kwargs}
    with db.sessions.begin() as session:
        return decide(session, asset_id, **kwargs)


def _queue(db: Db, brands: list[str], **kwargs: Any) -> dict[str, Any]:
    with db.sessions() as session:
        return review_queue(session, brands=brands, **kwargs)


# --------------------------------------------------------------------------------------------
# The functions
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
        with pytest.raises(ReviewError) as err:
            _queue(db, ["acme"], **bad)
        assert err.value.status == 422 and str(next(iter(bad.values()))) in err.value.message


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


def test_reject_needs_a_reason_of_at_most_500_characters(db: Db):
    asset_id = db.add()
    for reason in (None, "", "   ", "x" * 501):
        with pytest.raises(ReviewError) as err:
            _decide(db, asset_id, approve=False, reason=reason)
        assert err.value.status == 422 and "reason" in err.value.message
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
    with pytest.raises(ReviewError) as err:
        _decide(db, decided, approve=False, reason="changed my mind", actor="sam")
    assert err.value.status == 409
    assert "not waiting for review" in err.value.message and "decided by rita" in err.value.message
    assert db.asset(decided).status == "approved"

    delivered = db.add(status="delivered")
    with pytest.raises(ReviewError) as err:
        _decide(db, delivered, approve=True)
    assert err.value.status == 409

    for unknown in ("no-such-asset", "../../etc/passwd", db.add(deleted=True)):
        with pytest.raises(ReviewError) as err:
            _decide(db, unknown, approve=True)
        assert err.value.status == 404 and "no asset" in err.value.message

    theirs = db.add(brand="globex")
    with pytest.raises(ReviewError) as err:
        _decide(db, theirs, approve=True, brands=["acme"])
    assert err.value.status == 403 and "globex" in err.value.message
    assert db.asset(theirs).status == "review"
    assert _decide(db, theirs, approve=True, brands=["*"])["status"] == "approved"
    assert len(db.audit("asset.approve")) == 2


def test_two_reviewers_at_once_get_one_decision_and_one_conflict(db: Db):
    asset_id = db.add()
    with db.sessions() as late:
        assert late.get(Asset, asset_id).status == "review"  # read before the other decides
        _decide(db, asset_id, approve=True, actor="first")
        with pytest.raises(ReviewError) as err:
            decide(late, asset_id, approve=False, reason="no", actor="second", brands=["acme"])
        late.rollback()
    assert err.value.status == 409
    row = db.asset(asset_id)
    assert (row.status, row.reviewed_by) == ("approved", "first")
    assert db.audit("asset.reject") == []


def test_decision_request_schema():
    assert DecisionRequest(decision="approve").approve
    assert not DecisionRequest(decision="reject", reason="off brand").approve
    for bad in (
        {"decision": "maybe"},
        {"decision": "reject", "reason": "x" * 501},
        {"decision": "approve", "extra": 1},
    ):
        with pytest.raises(ValidationError):
            DecisionRequest(**bad)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_page_is_self_contained_and_its_csp_allows_exactly_its_inline_code():
    html = review_page()
    assert html.startswith("<!doctype html>")
    for external in ("<link", "src=", "@import", "url(", "http://", "https://"):
        assert external not in html
    for hook in ('id="api-key"', 'id="status"', 'id="error"', 'id="queue"', "data-asset-id"):
        assert hook in html
    [script] = re.findall(r"<script>(.*?)</script>", html, re.S)
    [style] = re.findall(r"<style>(.*?)</style>", html, re.S)
    headers = review_page_headers()
    csp = headers["Content-Security-Policy"]
    assert f"script-src {_csp_hash(script)}" in csp and f"style-src {_csp_hash(style)}" in csp
    assert "frame-ancestors 'none'" in csp and headers["X-Frame-Options"] == "DENY"


# --------------------------------------------------------------------------------------------
# The page in a real browser against a real HTTP server
# --------------------------------------------------------------------------------------------


def review_app(sessions: sessionmaker[Session], store: AssetStore) -> Any:
    """A FastAPI app exposing the review contract (serving.assets.review's docstring) with real keys.

    (FastAPI resolves the handlers' annotations by name in this module's globals, hence its
    imports at the top.)"""
    app = FastAPI()

    def principal(request: Request, session: Session, brand: str | None = None) -> Principal:
        header = request.headers.get("authorization", "")
        key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        try:
            found = require_principal(session, key)
            found.require("review", brand)
        except AccessError as err:
            raise HTTPException(err.status_code, str(err)) from None
        return found

    @app.get("/review", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(review_page(), headers=review_page_headers())

    @app.get("/v1/review")
    def queue(request: Request, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        with sessions.begin() as session:
            who = principal(request, session)
            try:
                return review_queue(session, brands=list(who.brands), limit=limit, offset=offset)
            except ReviewError as err:
                raise HTTPException(err.status, err.message) from None

    @app.post("/v1/review/{asset_id}")
    def decision(asset_id: str, body: DecisionRequest, request: Request) -> dict[str, Any]:
        with sessions.begin() as session:
            who = principal(request, session)
            try:
                return decide(
                    session,
                    asset_id,
                    approve=body.approve,
                    reason=body.reason,
                    actor=who.name,
                    brands=list(who.brands),
                )
            except ReviewError as err:
                raise HTTPException(err.status, err.message) from None

    @app.get("/v1/assets/{asset_id}")
    def asset(asset_id: str, request: Request) -> Response:
        with sessions.begin() as session:
            row = session.get(Asset, asset_id)
            principal(request, session, row.brand if row else None)
            if row is None:
                raise HTTPException(404, f"no asset {asset_id!r}")
            key = row.path
        return Response(store.get(key), media_type="image/png")

    return app


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test HTTP server did not start within 15 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class ReviewWalk:
    """What a reviewer saw and did on the page (see `drive_review_page`)."""

    wrong_key_error: str  # the error line after loading with a refused key
    cards: list[str]  # asset ids on the page after loading with the right key
    thumb_widths: dict[str, int]  # naturalWidth of each card's thumbnail
    card_text: dict[str, str]  # each card's visible text
    missing_reason_error: str  # the error line after Reject with an empty reason
    approved: str
    after_approve: str  # the status line
    rejected: str
    after_reject: str
    cards_after_reload: list[str]
    script_errors: list[str] = field(default_factory=list)  # JS exceptions, CSP refusals


def drive_review_page(
    page_url: str, key: str, *, reason: str = "logo too small", timeout_s: float = 15
) -> ReviewWalk:
    """Walk the review page as a reviewer in headless Chromium: a refused key first, then the
    real one; wait for every thumbnail; approve the first card, try to reject the second without
    a reason, reject it with `reason`; reload (the key stays in sessionStorage).

    Needs at least two assets waiting. Returns what was seen; asserts nothing, so any server
    that speaks the contract can be checked with it.
    """
    # Waits use selectors and `expect`, never `wait_for_function`: its predicate is evaluated
    # with `eval` in the page, which the page's Content-Security-Policy (rightly) refuses.
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(timeout_s * 1000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    errors.append(f"console: {msg.text}")
                    if "Content Security Policy" in msg.text
                    else None
                ),
            )
            page.goto(page_url)

            page.fill("#api-key", key + "-wrong")
            page.click("#load")
            expect(page.locator("#error")).not_to_be_empty()
            wrong_key_error = page.inner_text("#error")

            page.fill("#api-key", key)
            page.click("#load")
            page.wait_for_selector("body[data-state=ready]")
            page.wait_for_selector(".card")
            cards = page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.assetId)")
            for asset_id in cards:
                page.locator(f'[data-asset-id="{asset_id}"] img[data-state]').wait_for()
            widths = page.eval_on_selector_all(
                ".card",
                "cs => Object.fromEntries(cs.map(c => "
                "[c.dataset.assetId, c.querySelector('img').naturalWidth]))",
            )
            texts = page.eval_on_selector_all(
                ".card", "cs => Object.fromEntries(cs.map(c => [c.dataset.assetId, c.innerText]))"
            )

            first, second = cards[0], cards[1]
            page.click(f'[data-asset-id="{first}"] [data-action="approve"]')
            page.wait_for_selector(f'[data-asset-id="{first}"]', state="detached")
            expect(page.locator("#status")).to_contain_text("Approved")
            after_approve = page.inner_text("#status")

            second_card = f'[data-asset-id="{second}"]'
            page.click(f'{second_card} [data-action="reject"]')
            missing_reason_error = page.inner_text("#error")
            page.fill(f'{second_card} [data-role="reason"]', reason)
            page.click(f'{second_card} [data-action="reject"]')
            page.wait_for_selector(second_card, state="detached")
            expect(page.locator("#status")).to_contain_text("Rejected")
            after_reject = page.inner_text("#status")

            page.reload()
            page.wait_for_selector("body[data-state=ready]")
            after_reload = page.eval_on_selector_all(
                ".card", "cs => cs.map(c => c.dataset.assetId)"
            )
            return ReviewWalk(
                wrong_key_error=wrong_key_error,
                cards=cards,
                thumb_widths=widths,
                card_text=texts,
                missing_reason_error=missing_reason_error,
                approved=first,
                after_approve=after_approve,
                rejected=second,
                after_reject=after_reject,
                cards_after_reload=after_reload,
                script_errors=errors,
            )
        finally:
            browser.close()


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is missing: install Debian's chromium "
    "(apt-get install -y --no-install-recommends chromium; .ci/run does it)",
)
def test_review_page_in_chromium_approves_and_rejects(db: Db):
    start = datetime.now(UTC) - timedelta(minutes=5)
    ids = [
        db.add(prompt=f"acme poster number {n}", created_at=start + timedelta(seconds=n), seed=n)
        for n in range(3)
    ]
    db.add(brand="globex", seed=9)  # another brand's: never shown to this key
    with db.sessions.begin() as session:
        key, _ = create_key(session, name="reviewer-rita", roles=["review"], brands=["acme"])

    with serve(review_app(db.sessions, db.store)) as base:
        walk = drive_review_page(f"{base}/review", key)

    assert walk.script_errors == []
    assert walk.wrong_key_error.startswith("Could not load the queue: 401")
    assert walk.cards == ids
    assert walk.thumb_widths == dict.fromkeys(ids, 64)
    text = walk.card_text[ids[0]]
    assert "acme poster number 0" in text and "0.31" in text
    assert f"{VIOLATION['rule']}: {VIOLATION['message']}" in text
    assert "reason" in walk.missing_reason_error

    assert walk.approved == ids[0] and ids[0] in walk.after_approve
    assert walk.after_approve.startswith("Approved")
    approved = db.asset(ids[0])
    assert (approved.status, approved.reviewed_by) == ("approved", "reviewer-rita")

    assert walk.rejected == ids[1] and walk.after_reject.startswith("Rejected")
    rejected = db.asset(ids[1])
    assert (rejected.status, rejected.review_reason) == ("rejected", "logo too small")

    assert walk.cards_after_reload == [ids[2]]
    assert db.asset(ids[2]).status == "review"
    assert [a.detail["asset_id"] for a in db.audit("asset.approve")] == [ids[0]]
    assert [a.detail["asset_id"] for a in db.audit("asset.reject")] == [ids[1]]
