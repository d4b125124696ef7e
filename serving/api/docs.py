"""OpenAPI documentation of error answers, shared by the routers."""

from __future__ import annotations

from typing import Any

from serving.api.errors import ERROR_DOCS
from serving.api.schemas import ErrorBody


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the error codes a route can answer."""
    return {code: {"model": ErrorBody, "description": ERROR_DOCS[code]} for code in codes}
