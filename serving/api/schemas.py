"""Request and response models of the HTTP API.

Requests are strict (`extra="forbid"`, no coercion: `"32"` is not a width and `true` is not a
count), every field is bounded and floats are finite, so no client input reaches the engine or
the database unchecked. Brand names are `brandforge.names.Brand` everywhere.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from brandforge.names import Brand
from serving.rollout.analysis import RolloutOverrides
from serving.text import OptionalText, Prompt, Reason

SEED_LIMIT = 2**63  # torch seeds are 64-bit; seed + n - 1 must stay below
MAX_SIDE = 2048  # absolute bound; each version has its own, smaller limit (422 naming it)

__all__ = [
    "AbortRequest",
    "Brand",
    "ErasureRequest",
    "ErrorBody",
    "EventsRequest",
    "GenerateRequest",
    "ReviewRequest",
    "RolloutRequest",
]

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ErrorBody(BaseModel):
    """Every error answer: what went wrong, and the request id to quote in a support request."""

    detail: str | list[dict[str, object]]
    request_id: str | None = None
    # 429 only: which limit (scope, name, metric, limit, window, retry_after_s)
    limit: dict[str, object] | None = None


class GenerateRequest(BaseModel):
    model_config = _STRICT

    brand: Brand
    prompt: Prompt
    negative_prompt: OptionalText | None = None
    n: int = Field(1, ge=1, le=8)
    # None: the served version's native size (recorded at registration).
    width: int | None = Field(None, ge=16, le=MAX_SIDE, multiple_of=8)
    height: int | None = Field(None, ge=16, le=MAX_SIDE, multiple_of=8)
    steps: int | None = Field(None, ge=1, le=150)
    guidance: float | None = Field(None, ge=0, le=30)
    seed: int | None = Field(None, ge=0, lt=SEED_LIMIT)
    format: Literal["png", "jpeg", "webp", "heic", "svg"] = "png"

    @model_validator(mode="after")
    def _seeds_fit(self) -> GenerateRequest:
        if self.seed is not None and self.seed + self.n > SEED_LIMIT:
            raise ValueError(
                f"seed + n must stay below 2**63 (image i uses seed + i): seed {self.seed} with "
                f"n {self.n} overflows"
            )
        return self


class RolloutRequest(RolloutOverrides):
    """Start a canary rollout of `version`; the overrides (steps, minimums) default to
    params.yaml `rollout:`."""

    model_config = _STRICT

    brand: Brand
    version: str = Field(min_length=1, max_length=9, pattern=r"^[1-9][0-9]*$")
    mode: Literal["live", "shadow"] = "live"


class EventsRequest(BaseModel):
    model_config = _STRICT

    impressions: int = Field(0, ge=0, le=10_000)
    clicks: int = Field(0, ge=0, le=10_000)


class ReviewRequest(BaseModel):
    model_config = _STRICT

    decision: Literal["approve", "reject"]
    reason: Reason | None = None


class AbortRequest(BaseModel):
    model_config = _STRICT

    reason: Reason = "aborted by API"


class ErasureRequest(BaseModel):
    """`POST /v1/privacy/erase`: a data subject (an e-mail, a phone number, a customer id)."""

    model_config = _STRICT

    subject: str = Field(min_length=1, max_length=254, pattern=r"\S")
    dry_run: bool = False
    brand: Brand | None = None  # only this brand's objects (default: every brand the key has)
