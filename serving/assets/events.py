"""Impressions and clicks of delivered assets, summed per model version: the click-through rate
that `GET /v1/models` and the rollout state show next to the offline and compliance figures.

Clients report events, so they are bounded: only a delivered asset (not one waiting for review,
rejected or deleted) has events, one report holds at most `MAX_PER_CALL` of each kind, and an
asset never has more clicks than impressions (a click-through rate above 1 is a broken or
dishonest client, and would decide a rollout's click-through comparison on its own).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving.assets.review import DELIVERABLE, AssetStatus
from serving.db.models import Asset, AssetEvent
from serving.errors import Conflict, Gone, Invalid

# The most impressions (and clicks) one report may carry: a client batches, it does not replay
# a day's traffic of every channel in one call.
MAX_PER_CALL = 10_000


def record_events(
    session: Session, asset: Asset, *, impressions: int, clicks: int
) -> dict[str, Any]:
    """Add one report of an asset's impressions and clicks (flushed, not committed); returns
    `{"asset_id", "impressions", "clicks"}` of this report.

    Refuses (`Gone`) a deleted asset, (`Conflict`) one that is not delivered (waiting for
    review or rejected), and (`Invalid`) counts below 0 or above `MAX_PER_CALL`, or clicks
    that would take the asset's clicks past its impressions. The caller checks the brand."""
    if asset.status == AssetStatus.DELETED or asset.deleted_at is not None:
        raise Gone(f"asset {asset.id!r} was deleted (retention or erasure)")
    if asset.status not in DELIVERABLE:
        raise Conflict(
            f"asset {asset.id!r} is not delivered (status {asset.status!r}): events are "
            "recorded for delivered assets only"
        )
    for name, count in (("impressions", impressions), ("clicks", clicks)):
        if isinstance(count, bool) or not 0 <= count <= MAX_PER_CALL:
            raise Invalid(f"{name}={count!r} is out of range; give 0..{MAX_PER_CALL} per report")
    if clicks:
        seen = _totals(session, asset.id)
        if seen["click"] + clicks > seen["impression"] + impressions:
            raise Invalid(
                f"asset {asset.id!r} would have {seen['click'] + clicks} clicks for "
                f"{seen['impression'] + impressions} impressions: report impressions first"
            )
    for kind, count in (("impression", impressions), ("click", clicks)):
        if count:
            session.add(
                AssetEvent(
                    asset_id=asset.id,
                    brand=asset.brand,
                    model_version=asset.model_version,
                    variant=asset.variant,
                    kind=kind,
                    count=count,
                )
            )
    session.flush()
    return {"asset_id": asset.id, "impressions": impressions, "clicks": clicks}


def _totals(session: Session, asset_id: str) -> dict[str, int]:
    totals = {"impression": 0, "click": 0}
    for kind, count in session.execute(
        select(AssetEvent.kind, func.sum(AssetEvent.count))
        .where(AssetEvent.asset_id == asset_id)
        .group_by(AssetEvent.kind)
    ):
        totals[kind] = int(count or 0)
    return totals


def click_through(
    session: Session, brand: str, versions: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """`{version: {"impressions", "clicks", "ctr"}}` for the brand's versions that have
    impressions (all of them, or those in `versions`); `ctr` is clicks / impressions."""
    query = (
        select(AssetEvent.model_version, AssetEvent.kind, func.sum(AssetEvent.count))
        .where(AssetEvent.brand == brand)
        .group_by(AssetEvent.model_version, AssetEvent.kind)
    )
    wanted = None if versions is None else [v for v in versions if v]
    if wanted is not None:
        query = query.where(AssetEvent.model_version.in_(wanted))
    totals: dict[str, dict[str, int]] = {}
    for version, kind, count in session.execute(query):
        totals.setdefault(version, {"impression": 0, "click": 0})[kind] = int(count or 0)
    return {
        version: {
            "impressions": t["impression"],
            "clicks": t["click"],
            "ctr": round(t["click"] / t["impression"], 4),
        }
        for version, t in sorted(totals.items())
        if t["impression"] > 0
    }
