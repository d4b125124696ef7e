"""Human review: the web page, the queue and the decision (role `review`)."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse

from serving.api.deps import CallerDep, ServicesDep
from serving.api.docs import errors
from serving.api.schemas import ReviewRequest
from serving.assets.review import QUEUE_LIMIT_MAX, decide, review_queue

router = APIRouter(tags=["review"])
AssetId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@lru_cache(maxsize=1)
def _page() -> tuple[str, dict[str, str]]:
    """The page (its CSS and script inlined) and its headers: a Content-Security-Policy that
    allows only that style and script, by their hashes computed from the files, same-origin
    API calls and blob: thumbnails, and no framing (a framed page could trick a reviewer into
    clicking Approve)."""
    static = files("serving.api.static")
    style = static.joinpath("review.css").read_text(encoding="utf-8")
    script = static.joinpath("review.js").read_text(encoding="utf-8")
    page = static.joinpath("review.html").read_text(encoding="utf-8")
    page = page.replace("{style}", style).replace("{script}", script)
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_csp_hash(script)}",
            f"style-src {_csp_hash(style)}",
            "img-src blob:",
            "connect-src 'self'",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    return page, headers


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


@router.get("/review", response_class=HTMLResponse)
def review_page() -> HTMLResponse:
    """The review web page (it asks for a key with role `review`)."""
    page, headers = _page()
    return HTMLResponse(page, headers=headers)


@router.get("/v1/review", responses=errors(401, 403, 422))
def queue(
    services: ServicesDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=QUEUE_LIMIT_MAX)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """Assets waiting for a person, oldest first, for the key's brands."""
    caller.require("review")
    with services.sessions() as session:
        return review_queue(session, brands=sorted(caller.brands), limit=limit, offset=offset)


@router.post("/v1/review/{asset_id}", responses=errors(401, 403, 404, 409, 422))
def review_decision(
    asset_id: AssetId, body: ReviewRequest, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Approve or reject (with a reason) an asset waiting for review."""
    caller.require("review")
    with services.sessions() as session:
        out = decide(
            session,
            asset_id,
            approve=body.decision == "approve",
            reason=body.reason,
            actor=caller.name,
            brands=sorted(caller.brands),
        )
        session.commit()
    return out
