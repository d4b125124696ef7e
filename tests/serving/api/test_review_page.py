"""The review web page, driven in headless Chromium against a real HTTP server.

The server here is the real HTTP API (`serving.api.create_api`) served by uvicorn on loopback,
over a SQLite serving database and a local asset store, with real API keys. `drive_review_page`
holds the browser steps, so the same walk can be pointed at the Ray Serve app. (The review
functions themselves are tested in tests/serving/assets/test_review.py.)
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from serving.api.routes.review import _page
from serving.assets.store import AssetStore
from serving.auth import create_key
from tests.serving.api.conftest import serve_loopback
from tests.serving.assets.test_review import VIOLATION, Db, review_db

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


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with review_db(tmp_path) as found:
        yield found


def review_page() -> str:
    return _page()[0]


def review_page_headers() -> dict[str, str]:
    return _page()[1]


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
    """The real HTTP API (`serving.api.create_api`) over this database and store; the review
    routes and the asset route are what the page calls."""
    from brandforge.params import RolloutParams
    from serving.api.create import create_api
    from serving.api.prometheus import Metrics
    from serving.api.services import Services
    from serving.catalog import Catalog
    from serving.config import ServeConfig
    from serving.generator import LocalRenderer
    from serving.rollout.controller import RolloutController

    services = Services(
        config=ServeConfig(),
        sessions=sessions,
        store=store,
        catalog=Catalog(),
        rollouts=RolloutController(sessions, RolloutParams()),
        metrics=Metrics(),
        renderer=LocalRenderer(),
    )
    return create_api(services)


@dataclass
class ReviewWalk:
    """What a reviewer saw and did on the page (see `drive_review_page`)."""

    wrong_key_error: str  # the error line after loading with a refused key
    cards: list[str]  # asset ids on the page after loading with the right key
    thumb_widths: dict[str, int]  # naturalWidth of each card's thumbnail
    card_text: dict[str, str]  # each card's visible text
    # each card's region marks: (rule, box) with the box read back from where the mark is
    # drawn over the thumbnail, in the image's own pixels
    regions: dict[str, list[tuple[str, tuple[int, int, int, int]]]]
    missing_reason_error: str  # the error line after Reject with an empty reason
    approved: str
    after_approve: str  # the status line
    rejected: str
    after_reject: str
    cards_after_reload: list[str]
    script_errors: list[str] = field(default_factory=list)  # JS exceptions, CSP refusals


# Each card's region marks, their drawn rectangles mapped back to the image's pixels.
_REGION_MARKS_JS = """cs => Object.fromEntries(cs.map(c => {
  const img = c.querySelector('img'), r = img.getBoundingClientRect();
  const sx = img.naturalWidth / r.width, sy = img.naturalHeight / r.height;
  return [c.dataset.assetId, [...c.querySelectorAll('[data-role=region]')].map(m => {
    const b = m.getBoundingClientRect();
    return [m.dataset.rule, [(b.left - r.left) * sx, (b.top - r.top) * sy,
                             (b.right - r.left) * sx, (b.bottom - r.top) * sy]];
  })];
}))"""


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
            marks = page.eval_on_selector_all(".card", _REGION_MARKS_JS)

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
                regions={
                    asset_id: [(rule, tuple(round(v) for v in box)) for rule, box in found]
                    for asset_id, found in marks.items()
                },
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
    region = {  # a region rule names its tile; the page outlines it over the thumbnail
        "rule": "region_noise",
        "value": 0.2,
        "limit": 0.1,
        "severity": "error",
        "message": "noise in the tile at [16, 8, 40, 32] (x0, y0, x1, y1)",
        "box": [16, 8, 40, 32],
    }
    ids = [
        db.add(
            prompt=f"acme poster number {n}",
            created_at=start + timedelta(seconds=n),
            seed=n,
            violations=[VIOLATION, region] if n == 0 else None,
        )
        for n in range(3)
    ]
    db.add(brand="globex", seed=9)  # another brand's: never shown to this key
    with db.sessions.begin() as session:
        key, _ = create_key(session, name="reviewer-rita", roles=["review"], brands=["acme"])

    with serve_loopback(review_app(db.sessions, db.store)) as base:
        walk = drive_review_page(f"{base}/review", key)

    assert walk.script_errors == []
    assert walk.wrong_key_error.startswith("Could not load the queue: 401")
    assert walk.cards == ids
    assert walk.thumb_widths == dict.fromkeys(ids, 64)
    text = walk.card_text[ids[0]]
    assert "acme poster number 0" in text and "0.31" in text
    assert f"{VIOLATION['rule']}: {VIOLATION['message']}" in text
    # a 64x48 thumbnail, shown at the width of the card: the mark covers exactly its tile
    assert walk.regions[ids[0]] == [("region_noise", (16, 8, 40, 32))]
    assert walk.regions[ids[1]] == [] and walk.regions[ids[2]] == []
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
