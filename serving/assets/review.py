"""Human review of generated assets: the queue, the decision, and a small web page for it.

An asset that fails its brand's compliance check after the retries, or belongs to a brand that
requires human review, is stored with `status="review"` and delivered to nobody until a person
decides. Approved assets become deliverable and, through `brandforge data feedback`
(`serving.assets.feedback`), training images of the brand's next adapter; rejected ones become its
negative examples. So a decision is recorded with who, when and why, and audited.

This module has no web framework in it: `serving.app` maps these functions onto HTTP. The
contract it exposes:

- `GET /review` serves the review page (`serving/api/static/`, `serving.api.routes.review`).
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
