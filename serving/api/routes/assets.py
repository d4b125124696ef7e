"""Delivered files and their impressions and clicks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from serving.api.deps import CallerDep, ServicesDep
from serving.api.docs import errors
from serving.api.schemas import EventsRequest
from serving.assets.events import record_events
from serving.assets.review import require_visible
from serving.assets.store import AssetMissing
from serving.db.models import Asset
from serving.delivery.formats import MEDIA_TYPES
from serving.errors import Gone, NotFound

router = APIRouter(tags=["generate"])
AssetId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.get(
    "/v1/assets/{asset_id}",
    response_class=Response,
    responses={
        200: {
            "description": "The file",
            "content": {t: {} for t in sorted(set(MEDIA_TYPES.values()))},
        },
        **errors(401, 403, 404, 410, 422),
    },
)
def asset(asset_id: AssetId, services: ServicesDep, caller: CallerDep) -> Response:
    """The stored file (role `generate` or `review` for the asset's brand). An asset waiting
    for review, or rejected, goes only to review and admin keys. Frequently fetched files come
    from the store's bounded cache."""
    role = "review" if caller.has_role("review") else "generate"
    caller.require(role)
    with services.sessions() as session:
        row = session.get(Asset, asset_id)
        found = None if row is None else (row.brand, row.path, row.format, row.status, row.key_id)
    if found is None:
        raise NotFound(f"no asset {asset_id!r}")
    brand, key, fmt, status, key_id = found
    caller.require(role, brand)
    require_visible(asset_id, status, caller.roles)
    try:
        data = services.store.get(key, encrypted=key_id is not None)
    except AssetMissing:
        raise Gone(f"asset {asset_id!r}: its file is gone") from None
    return Response(data, media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"))


@router.post(
    "/v1/assets/{asset_id}/events",
    status_code=201,
    responses=errors(401, 403, 404, 409, 410, 422),
)
def asset_events(
    asset_id: AssetId, body: EventsRequest, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Record impressions and clicks of a delivered asset (for click-through rates per
    model version in /v1/models and the rollout analysis)."""
    caller.require("generate")
    with services.sessions() as session:
        row = session.get(Asset, asset_id)
        if row is None:
            raise NotFound(f"no asset {asset_id!r}")
        caller.require("generate", row.brand)
        out = record_events(session, row, impressions=body.impressions, clicks=body.clicks)
        session.commit()
    return out
