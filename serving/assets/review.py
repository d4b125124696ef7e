"""Human review of generated assets: who may see an asset, the review queue and the decision.

An asset that fails its brand's compliance check after the retries, or belongs to a brand that
requires human review, is stored with `status="review"` and delivered to nobody until a person
decides: until then only keys with role `review` (or `admin`) may see it, and a rejected asset
is never delivered (`asset_visible`, `require_visible`). Approved assets become deliverable
and, through `brandforge data feedback` (`serving.assets.feedback`), training images of the
brand's next adapter; rejected ones become its negative examples. So a decision is recorded
with who, when and why, and audited.

This module has no web framework in it: the API (`serving.api.routes.review`) maps these
functions onto HTTP, and their refusals (`serving.errors` kinds, `serving.auth.Forbidden`) onto
status codes. The contract:

- `GET /review` serves the review page (`serving/api/static/`, `serving.api.routes.review`).
  Loading the page needs no key (it holds no data); every API call it makes does.
- `GET /v1/review?limit=50&offset=0` (key with role `review`) → `review_queue(session,
  brands=<the key's brands>, limit, offset)`: `{"total": n, "items": [...]}`, oldest first.
- `POST /v1/review/{asset_id}` (role `review`), JSON `{"decision": "approve" | "reject",
  "reason": "..."}` (reason required to reject, 1..500 characters) → `decide(...)` with
  `actor=<the key's name>`, `brands=<the key's brands>`; returns the updated asset summary.
- Refusals: `NotFound` (unknown asset, 404), `Conflict` (not waiting for review, 409),
  `Invalid` (bad input, 422), `Forbidden` (another brand's asset, 403); the message is the
  `detail`.
- The page shows thumbnails by fetching `GET /v1/assets/{asset_id}` with the same key, so that
  endpoint must let a `review` key read its brands' assets in review (`require_visible`).

The page computes its API base from its own path (`<prefix>/review` → `<prefix>/v1/...`), so it
keeps working behind a route prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from serving.auth import ADMIN, ALL_BRANDS, Forbidden, audit
from serving.db.models import Asset, utcnow
from serving.delivery.redact import redact
from serving.errors import Conflict, Gone, Invalid, NotFound
from serving.privacy.subjects import record_subjects, subjects_in
from serving.text import text_problem

REASON_MAX = 500
QUEUE_LIMIT_MAX = 200
# Asset ids are URL-safe tokens (`serving.db.models.new_asset_id`); anything else names no asset.
_ASSET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class AssetStatus(StrEnum):
    """An asset's status (`assets.status`)."""

    DELIVERED = "delivered"  # passed its checks: delivered to the brand's keys
    REVIEW = "review"  # waiting for a person: visible to reviewers only
    APPROVED = "approved"  # a reviewer approved it: delivered like `delivered`
    REJECTED = "rejected"  # a reviewer rejected it: never delivered, kept as a negative example
    DELETED = "deleted"  # its file is gone (retention or erasure); the row stays for the audit


# Statuses whose files any key of the brand may fetch, and count impressions and clicks of.
DELIVERABLE = frozenset({AssetStatus.DELIVERED, AssetStatus.APPROVED})
# Statuses only a reviewer may see.
HELD = frozenset({AssetStatus.REVIEW, AssetStatus.REJECTED})
REVIEWER_ROLES = frozenset({"review", ADMIN})


def asset_visible(status: str, roles: Iterable[str]) -> bool:
    """Whether a key holding `roles` may see (fetch) an asset in `status`: a delivered or
    approved asset any key of its brand, one waiting for review or rejected a reviewer (role
    `review` or `admin`) only, a deleted one nobody. The brand is checked separately."""
    if status in DELIVERABLE:
        return True
    if status in HELD:
        return not REVIEWER_ROLES.isdisjoint(roles)
    return False


def require_visible(asset_id: str, status: str, roles: Iterable[str]) -> None:
    """Nothing when `asset_visible`; otherwise `Gone` for a deleted asset and `Forbidden` for
    one held for review (the key is of the asset's brand, so it may know why)."""
    if status == AssetStatus.DELETED:
        raise Gone(f"asset {asset_id!r} was deleted (retention or erasure)")
    if asset_visible(status, roles):
        return
    if status == AssetStatus.REVIEW:
        raise Forbidden(
            f"asset {asset_id!r} is waiting for review: only keys with role 'review' may fetch "
            "it until a reviewer approves it"
        )
    if status == AssetStatus.REJECTED:
        raise Forbidden(f"asset {asset_id!r} was rejected in review: it is never delivered")
    raise NotFound(f"no asset {asset_id!r}")  # an unknown status: deliver nothing


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
    `offset`..`offset + limit` (empty past the end, however large the offset). Raises `Invalid`
    for a limit outside 1..QUEUE_LIMIT_MAX or a negative offset.
    """
    if not 1 <= limit <= QUEUE_LIMIT_MAX:
        raise Invalid(f"limit={limit} is out of range; give 1..{QUEUE_LIMIT_MAX}")
    if offset < 0:
        raise Invalid(f"offset={offset} is negative; give 0 or more")
    where = [Asset.status == AssetStatus.REVIEW, Asset.deleted_at.is_(None)]
    if not _all(brands):
        where.append(Asset.brand.in_(sorted(set(brands))))
    total = session.scalar(select(func.count()).select_from(Asset).where(*where)) or 0
    if offset >= total:
        # Past the end; this also keeps an offset too large for a database integer out of SQL.
        return {"total": int(total), "items": []}
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
        raise Invalid(
            f"the reason is {len(text)} characters long; shorten it to {REASON_MAX} at most"
        )
    problem = text_problem(text, blank_ok=True)
    if problem is not None:
        raise Invalid(f"reason: {problem}")
    if not text and not approve:
        raise Invalid(
            f"a rejection needs a reason (1 to {REASON_MAX} characters): say what is wrong"
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
    get one success and one conflict, never two decisions. Raises `Invalid` (rejection without
    a reason, reason over 500 characters), `NotFound` (no such asset), `Forbidden` (its brand is
    not in `brands`), `Conflict` (not waiting for review). Flushes, does not commit.
    """
    text = _clean_reason(reason, approve=approve)
    asset = session.get(Asset, asset_id) if _ASSET_ID.match(asset_id) else None
    if asset is None or asset.deleted_at is not None:
        raise NotFound(f"no asset {asset_id!r}")
    if not _all(brands) and asset.brand not in brands:
        raise Forbidden(f"this key may not review brand {asset.brand!r} (asset {asset_id!r})")
    if asset.status != AssetStatus.REVIEW:
        decided = (
            f", decided by {asset.reviewed_by} at {_iso(asset.reviewed_at)}"
            if asset.reviewed_by
            else ""
        )
        raise Conflict(
            f"asset {asset_id!r} is not waiting for review (status {asset.status!r}{decided})"
        )
    status = AssetStatus.APPROVED if approve else AssetStatus.REJECTED
    now = utcnow()
    # Stored redacted like the prompts (DESIGN.md, decision 9); what it mentioned is kept by
    # keyed hash so that erasing a subject finds this asset.
    stored = None if text is None else redact(text)
    result = session.execute(
        update(Asset)
        .where(Asset.id == asset_id, Asset.status == AssetStatus.REVIEW)
        .values(status=status, reviewed_by=actor, reviewed_at=now, review_reason=stored)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"asset {asset_id!r} was decided by someone else just now")
    if text is not None:
        record_subjects(
            session, subjects_in(text), kind="asset", object_id=asset.id, brand=asset.brand
        )
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
