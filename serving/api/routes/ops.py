"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from serving.api.deps import CallerDep, ServicesDep
from serving.api.docs import errors
from serving.delivery.credentials import credentials_state

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "The generator or the registry does not answer"}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """The generator answers and the registry is reachable; `content_credentials` says
    whether delivered files are signed (C2PA), and as whom."""
    try:
        resident = await asyncio.wait_for(services.renderer.resident(), 10)
        await asyncio.wait_for(asyncio.to_thread(services.catalog.brands), 10)
        signing = credentials_state()  # whether delivered files carry signed C2PA manifests
    except Exception as err:  # noqa: BLE001 (any failure means "not ready")
        reason = str(err)[:300] or type(err).__name__
        return JSONResponse({"status": "not ready", "reason": reason}, 503)
    return JSONResponse({"status": "ready", "resident": resident, "content_credentials": signing})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **errors(401, 403),
    },
)
def prometheus(services: ServicesDep, caller: CallerDep) -> PlainTextResponse:
    """Prometheus metrics: requests, latency, batch sizes, errors, compliance scores. A key
    sees the series of its own brands; an all-brands deploy key sees every series."""
    caller.require("deploy")
    brands: Any = None if caller.all_brands else caller.brands
    body, content_type = services.metrics.render(brands)
    return PlainTextResponse(body, media_type=content_type)
