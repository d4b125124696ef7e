"""Human review of generated assets: the queue, the decision, and a small web page for it.

An asset that fails its brand's compliance check after the retries, or belongs to a brand that
requires human review, is stored with `status="review"` and delivered to nobody until a person
decides. Approved assets become deliverable and, through `brandforge data feedback`
(`serving.assets.feedback`), training images of the brand's next adapter; rejected ones become its
negative examples. So a decision is recorded with who, when and why, and audited.

This module has no web framework in it: `serving.app` maps these functions onto HTTP. The
contract it exposes:

- `GET /review` → `review_page()` as `text/html`, with the headers of `review_page_headers()`.
  Loading the page needs no key (it holds no data); every API call it makes does.
- `GET /v1/review?limit=50&offset=0` (key with role `review`) → `review_queue(session,
  brands=<the key's brands>, limit, offset)`: `{"total": n, "items": [...]}`, oldest first.
- `POST /v1/review/{asset_id}` (role `review`), JSON `{"decision": "approve" | "reject",
  "reason": "..."}` (reason required to reject, 1..500 characters) → `decide(...)` with
  `actor=<the key's name>`, `brands=<the key's brands>`; returns the updated asset summary.
- `ReviewError.status` is the HTTP status (404 unknown asset, 409 not waiting for review, 422
  bad input, 403 another brand's asset) and `ReviewError.message` the `detail`.
- The page shows thumbnails by fetching `GET /v1/assets/{asset_id}` with the same key, so that
  endpoint must let a `review` key read its brands' assets in review.

The page computes its API base from its own path (`<prefix>/review` → `<prefix>/v1/...`), so it
keeps working behind a route prefix.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from serving.auth import ALL_BRANDS, audit
from serving.db.models import Asset, utcnow

REVIEW = "review"
APPROVED = "approved"
REJECTED = "rejected"
REASON_MAX = 500
QUEUE_LIMIT_MAX = 200
# Asset ids are URL-safe tokens (`serving.db.models.new_asset_id`); anything else names no asset.
_ASSET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ReviewError(Exception):
    """A review request that cannot be served; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DecisionRequest(BaseModel):
    """The body of `POST /v1/review/{asset_id}`: `{"decision": "approve" | "reject",
    "reason": "..."}` (the reason is required to reject; `decide` checks that)."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    reason: str | None = Field(None, max_length=REASON_MAX)

    @property
    def approve(self) -> bool:
        return self.decision == "approve"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _all(brands: list[str]) -> bool:
    return ALL_BRANDS in brands


def _queue_item(asset: Asset) -> dict[str, Any]:
    compliance = asset.compliance or {}
    return {
        "asset_id": asset.id,
        "brand": asset.brand,
        "url": f"/v1/assets/{asset.id}",
        "prompt": asset.prompt,
        "model": {
            "name": asset.model_name,
            "version": asset.model_version,
            "variant": asset.variant,
        },
        "created_at": _iso(asset.created_at),
        "campaign_id": asset.campaign_id,
        "score": compliance.get("score"),
        "violations": list(compliance.get("violations") or []),
        "format": asset.format,
    }


def review_queue(
    session: Session, *, brands: list[str], limit: int = 50, offset: int = 0
) -> dict[str, Any]:
    """The assets waiting for review on `brands` (`["*"]`: every brand), oldest first.

    Returns `{"total": n, "items": [...]}`: `total` counts the whole queue, `items` is the page
    `offset`..`offset + limit`. Raises `ReviewError` (422) for a limit outside
    1..QUEUE_LIMIT_MAX or a negative offset.
    """
    if not 1 <= limit <= QUEUE_LIMIT_MAX:
        raise ReviewError(422, f"limit={limit} is out of range; give 1..{QUEUE_LIMIT_MAX}")
    if offset < 0:
        raise ReviewError(422, f"offset={offset} is negative; give 0 or more")
    where = [Asset.status == REVIEW, Asset.deleted_at.is_(None)]
    if not _all(brands):
        where.append(Asset.brand.in_(sorted(set(brands))))
    total = session.scalar(select(func.count()).select_from(Asset).where(*where)) or 0
    rows = session.scalars(
        select(Asset).where(*where).order_by(Asset.created_at, Asset.id).limit(limit).offset(offset)
    )
    return {"total": int(total), "items": [_queue_item(a) for a in rows]}


def _summary(asset: Asset) -> dict[str, Any]:
    return {
        **_queue_item(asset),
        "status": asset.status,
        "reviewed_by": asset.reviewed_by,
        "reviewed_at": _iso(asset.reviewed_at),
        "review_reason": asset.review_reason,
    }


def _clean_reason(reason: str | None, *, approve: bool) -> str | None:
    text = (reason or "").strip()
    if len(text) > REASON_MAX:
        raise ReviewError(
            422, f"the reason is {len(text)} characters long; shorten it to {REASON_MAX} at most"
        )
    if not text and not approve:
        raise ReviewError(
            422, f"a rejection needs a reason (1 to {REASON_MAX} characters): say what is wrong"
        )
    return text or None


def decide(
    session: Session,
    asset_id: str,
    *,
    approve: bool,
    reason: str | None,
    actor: str,
    brands: list[str],
) -> dict[str, Any]:
    """Approve or reject an asset waiting for review; returns its updated summary.

    Records the reviewer (`actor`), the time and the reason on the asset and writes an audit row
    (`asset.approve` / `asset.reject`). Only an asset in `review` can be decided, and only once:
    the status changes in one conditional UPDATE, so two reviewers deciding at the same moment
    get one success and one 409, never two decisions. Raises `ReviewError`: 422 (rejection
    without a reason, reason over 500 characters), 404 (no such asset), 403 (its brand is not in
    `brands`), 409 (not waiting for review). Flushes, does not commit.
    """
    text = _clean_reason(reason, approve=approve)
    asset = session.get(Asset, asset_id) if _ASSET_ID.match(asset_id) else None
    if asset is None or asset.deleted_at is not None:
        raise ReviewError(404, f"no asset {asset_id!r}")
    if not _all(brands) and asset.brand not in brands:
        raise ReviewError(
            403, f"this key may not review brand {asset.brand!r} (asset {asset_id!r})"
        )
    if asset.status != REVIEW:
        decided = (
            f", decided by {asset.reviewed_by} at {_iso(asset.reviewed_at)}"
            if asset.reviewed_by
            else ""
        )
        raise ReviewError(
            409, f"asset {asset_id!r} is not waiting for review (status {asset.status!r}{decided})"
        )
    status = APPROVED if approve else REJECTED
    now = utcnow()
    result = session.execute(
        update(Asset)
        .where(Asset.id == asset_id, Asset.status == REVIEW)
        .values(status=status, reviewed_by=actor, reviewed_at=now, review_reason=text)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ReviewError(409, f"asset {asset_id!r} was decided by someone else just now")
    session.refresh(asset)
    audit(
        session,
        actor,
        f"asset.{'approve' if approve else 'reject'}",
        asset.brand,
        asset_id=asset.id,
        reason=text,
        model_version=asset.model_version,
        score=(asset.compliance or {}).get("score"),
    )
    return _summary(asset)


# --------------------------------------------------------------------------------------------
# The review page
# --------------------------------------------------------------------------------------------

_STYLE = """
:root { font-family: system-ui, sans-serif; color: #1d1d1f; background: #f4f5f7; }
body { margin: 0 auto; max-width: 1100px; padding: 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 .75rem; }
form#key-form { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
#api-key { width: 28rem; max-width: 100%; padding: .35rem; font-family: monospace; }
button { padding: .35rem .8rem; border: 1px solid #888; border-radius: 4px; cursor: pointer; }
button[data-action="approve"] { background: #1f7a3d; color: #fff; border-color: #1f7a3d; }
button[data-action="reject"] { background: #b3261e; color: #fff; border-color: #b3261e; }
button:disabled { opacity: .5; cursor: wait; }
#status { min-height: 1.3em; color: #1f5f7a; }
#error { min-height: 1.3em; color: #b3261e; font-weight: 600; white-space: pre-wrap; }
#queue { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 1rem; }
.card { background: #fff; border-radius: 8px; padding: .75rem; box-shadow: 0 1px 3px #0002; }
.card img { width: 100%; aspect-ratio: 1; object-fit: contain; background: #ddd; }
.card .meta { font-size: .85rem; color: #555; }
.card .prompt { margin: .4rem 0; }
.card ul { margin: .3rem 0; padding-left: 1.2rem; font-size: .85rem; }
.card .decide { display: flex; gap: .4rem; flex-wrap: wrap; margin-top: .5rem; }
.card input[data-role="reason"] { flex: 1 1 10rem; padding: .3rem; }
"""

_SCRIPT = r"""
"use strict";
(() => {
  const KEY_STORE = "brandforge.review.key";
  const m = location.pathname.match(/^(.*\/)review\/?$/);
  const BASE = m ? m[1] : "/";
  const $ = (sel) => document.querySelector(sel);
  const queue = $("#queue"), statusLine = $("#status"), errorLine = $("#error");
  const keyInput = $("#api-key"), countLine = $("#count");
  let total = 0;

  const say = (text) => { statusLine.textContent = text; };
  const fail = (text) => { errorLine.textContent = text; };
  const headers = () => ({ "Authorization": "Bearer " + keyInput.value.trim() });

  async function apiError(response) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      if (typeof body.detail === "string") detail = body.detail;
      else if (Array.isArray(body.detail)) detail = body.detail.map((d) => d.msg).join("; ");
    } catch (_) { /* not JSON: keep the status text */ }
    const hint = response.status === 401 ? " (check the API key)" : "";
    return `${response.status}: ${detail}${hint}`;
  }

  function showCount() {
    countLine.textContent = total === 1 ? "1 asset waiting" : `${total} assets waiting`;
    document.body.dataset.total = String(total);
  }

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function loadThumb(img, assetId) {
    try {
      const url = BASE + "v1/assets/" + encodeURIComponent(assetId);
      const r = await fetch(url, { headers: headers() });
      if (!r.ok) {
        img.alt = "image unavailable: " + (await apiError(r));
        img.dataset.state = "error";
        return;
      }
      img.src = URL.createObjectURL(await r.blob());
      await img.decode();  // "loaded" means drawable: naturalWidth is known
      img.dataset.state = "loaded";
    } catch (err) {
      img.alt = "image unavailable: " + err; img.dataset.state = "error";
    }
  }

  function card(item) {
    const c = el("article",
      { class: "card", "data-asset-id": item.asset_id, "data-brand": item.brand });
    const img = el("img", { alt: "asset " + item.asset_id, "data-role": "thumb" });
    c.append(img);
    const score = item.score === null || item.score === undefined
      ? "n/a" : Number(item.score).toFixed(2);
    const model = `${item.model.name} v${item.model.version} (${item.model.variant})`;
    c.append(el("div", { class: "meta", "data-role": "brand" },
      `${item.brand} · ${model} · ${item.format}`));
    c.append(el("p", { class: "prompt", "data-role": "prompt" }, item.prompt));
    c.append(el("div", { class: "meta", "data-role": "score" }, "compliance score " + score));
    const list = el("ul", { "data-role": "violations" });
    for (const v of item.violations || []) {
      const text = `${v.rule || "rule"}: ${v.message || ""}`;
      list.append(el("li", { "data-rule": v.rule || "" }, text));
    }
    if (!list.children.length) list.append(el("li", {}, "no violations recorded"));
    c.append(list);
    const row = el("div", { class: "decide" });
    const reason = el("input", { type: "text", "data-role": "reason", maxlength: "500",
      placeholder: "reason (required to reject)", "aria-label": "reason" });
    const approve = el("button", { type: "button", "data-action": "approve" }, "Approve");
    const reject = el("button", { type: "button", "data-action": "reject" }, "Reject");
    approve.addEventListener("click", () => decide(c, item, "approve", reason.value));
    reject.addEventListener("click", () => {
      if (!reason.value.trim()) {
        fail("Give a reason to reject " + item.asset_id + ".");
        reason.focus();
        return;
      }
      decide(c, item, "reject", reason.value);
    });
    row.append(reason, approve, reject);
    c.append(row);
    loadThumb(img, item.asset_id);
    return c;
  }

  function removeCard(c) {
    const img = c.querySelector("img");
    if (img && img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    c.remove();
  }

  async function decide(c, item, decision, reason) {
    fail("");
    c.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      const r = await fetch(BASE + "v1/review/" + encodeURIComponent(item.asset_id), {
        method: "POST",
        headers: { ...headers(), "Content-Type": "application/json" },
        body: JSON.stringify({ decision, reason: reason.trim() || null }),
      });
      if (!r.ok) {
        fail(`Could not ${decision} ${item.asset_id}: ${await apiError(r)}`);
        if (r.status === 409 || r.status === 404) { removeCard(c); total -= 1; showCount(); }
        return;
      }
      const done = await r.json();
      removeCard(c);
      total -= 1;
      showCount();
      say(`${done.status === "approved" ? "Approved" : "Rejected"} ${item.asset_id} (${item.brand})`
        + (done.review_reason ? `: ${done.review_reason}` : "") + ".");
    } catch (err) {
      fail(`Could not ${decision} ${item.asset_id}: ${err}`);
    } finally {
      c.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  }

  async function load() {
    fail("");
    if (!keyInput.value.trim()) { fail("Enter an API key with the review role."); return; }
    sessionStorage.setItem(KEY_STORE, keyInput.value.trim());
    say("Loading…");
    document.body.dataset.state = "loading";
    try {
      const r = await fetch(BASE + "v1/review?limit=50&offset=0", { headers: headers() });
      if (!r.ok) { say(""); fail("Could not load the queue: " + (await apiError(r))); return; }
      const body = await r.json();
      queue.querySelectorAll(".card").forEach(removeCard);
      total = body.total;
      for (const item of body.items) queue.append(card(item));
      showCount();
      say(body.items.length < body.total
        ? `Showing the oldest ${body.items.length}; decide them, then reload for more.`
        : (body.total ? "" : "Nothing waits for review."));
    } catch (err) {
      say(""); fail("Could not load the queue: " + err);
    } finally {
      document.body.dataset.state = "ready";
    }
  }

  $("#key-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  $("#forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    keyInput.value = "";
    queue.querySelectorAll(".card").forEach(removeCard);
    total = 0;
    showCount();
    say("Key forgotten.");
  });
  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) { keyInput.value = saved; load(); }
})();
"""

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>BrandForge review</title>
<style>{_STYLE}</style>
</head>
<body data-state="idle" data-total="0">
<h1>BrandForge review</h1>
<form id="key-form" autocomplete="off">
  <label for="api-key">API key (role review)</label>
  <input id="api-key" name="api-key" type="password" placeholder="bf_..." spellcheck="false">
  <button id="load" type="submit">Load queue</button>
  <button id="forget" type="button">Forget key</button>
  <span id="count"></span>
</form>
<p id="status" role="status" aria-live="polite"></p>
<p id="error" role="alert"></p>
<main id="queue"></main>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def review_page() -> str:
    """The review web page: self-contained HTML (inline CSS and JS, nothing fetched but the
    API), which asks for a key, lists the queue with thumbnails and posts the decisions."""
    return _PAGE


def review_page_headers() -> dict[str, str]:
    """HTTP headers to serve `review_page()` with: a Content-Security-Policy allowing only its
    own inline style and script (by hash), same-origin API calls and blob: thumbnails, and no
    framing (a framed page could trick a reviewer into clicking Approve)."""
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_csp_hash(_SCRIPT)}",
            f"style-src {_csp_hash(_STYLE)}",
            "img-src blob:",
            "connect-src 'self'",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
