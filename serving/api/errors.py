"""The one place where errors become HTTP answers.

Domain errors (`serving.errors`) and access errors (`serving.auth`) map to their status codes;
request validation errors to 422 with the input never echoed back (a lone surrogate or a huge
value must not break or bloat the answer); a stored asset file this server cannot decrypt is a
server-side problem: 500 with a request id, the store key and key id in the log only; anything
else is a bug: 500 with a request id, the traceback in the log, nothing internal in the body.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.assets.crypto import UnreadableAsset
from serving.auth import AccessError
from serving.errors import (
    Conflict,
    DeadlineExceeded,
    DomainError,
    Gone,
    Invalid,
    NotFound,
    Overloaded,
    RateLimited,
    Unavailable,
)

log = logging.getLogger(__name__)

STATUS = {
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Gone: 410,
    RateLimited: 429,
    Unavailable: 503,
    DeadlineExceeded: 504,
}
# Documented on every route that can answer them (OpenAPI `responses=`).
ERROR_DOCS = {
    401: "No API key, or an unknown or revoked one",
    403: "The key lacks the role or the brand",
    404: "No such object (or brand)",
    409: "The object is not in a state that allows this",
    410: "The object was deleted",
    413: "The request body is too large",
    422: "The request breaks a rule (field, limit, template)",
    429: "A rate limit or quota of the key or brand is used up: retry after Retry-After seconds",
    503: "A dependency (model, registry) failed, or the generator's queue is full (then with "
    "Retry-After); try again",
    504: "The request's deadline (X-Request-Deadline-Ms, or the server's default) passed",
}


def status_of(err: DomainError) -> int:
    for kind, status in STATUS.items():
        if isinstance(err, kind):
            return status
    return 400


def request_id(request: Request) -> str:
    """The request's id (the X-Request-Id header when the client sent a sane one)."""
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        given = request.headers.get("x-request-id", "")
        rid = given if given.isascii() and given.isalnum() and len(given) <= 64 else None
        rid = rid or uuid.uuid4().hex
        request.state.request_id = rid
    return str(rid)


def _answer(request: Request, status: int, detail: Any, **extra: Any) -> JSONResponse:
    rid = request_id(request)
    return JSONResponse(
        {"detail": detail, "request_id": rid, **extra},
        status_code=status,
        headers={"X-Request-Id": rid},
    )


def _clean(errors: list[Any]) -> list[dict[str, Any]]:
    """Validation errors without the offending input and with printable messages."""
    out = []
    for e in errors:
        msg = str(e.get("msg", "invalid"))
        msg = msg.encode("utf-8", "backslashreplace").decode("utf-8")[:500]
        loc = [
            p if isinstance(p, int) else str(p).encode("utf-8", "backslashreplace").decode()[:100]
            for p in e.get("loc", ())
        ]
        out.append({"loc": loc, "msg": msg, "type": str(e.get("type", "value_error"))})
    return out


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(DomainError)
    async def domain(request: Request, err: DomainError) -> JSONResponse:
        response = _answer(request, status_of(err), err.message)
        if isinstance(err, Overloaded):
            response.headers["Retry-After"] = str(err.retry_after_s)
        return response

    @app.exception_handler(RateLimited)
    async def limited(request: Request, err: RateLimited) -> JSONResponse:
        response = _answer(request, 429, err.message, limit=err.limit)
        response.headers["Retry-After"] = str(err.retry_after_s)
        return response

    @app.exception_handler(AccessError)
    async def access(request: Request, err: AccessError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status_code == 401 else {}
        response = _answer(request, err.status_code, str(err))
        response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return _answer(request, 422, _clean(list(err.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        response = _answer(request, err.status_code, err.detail)
        response.headers.update(err.headers or {})
        return response

    @app.exception_handler(UnreadableAsset)
    async def unreadable(request: Request, err: UnreadableAsset) -> JSONResponse:
        rid = request_id(request)
        log.error("request %s %s (request id %s): %s", request.method, request.url.path, rid, err)
        detail = f"the stored file cannot be decrypted on this server; quote request id {rid}"
        return _answer(request, 500, detail)

    @app.exception_handler(Exception)
    async def bug(request: Request, err: Exception) -> JSONResponse:
        rid = request_id(request)
        log.exception("request %s %s failed (request id %s)", request.method, request.url.path, rid)
        return _answer(request, 500, f"internal error; quote request id {rid}")
