"""Impressions and clicks of delivered assets, summed per model version: the click-through rate
that `GET /v1/models` and the rollout state show next to the offline and compliance figures."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving.db.models import AssetEvent


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
