"""Canary rollouts: start, state, abort (role `deploy` for the brand)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from serving.api.deps import CallerDep, ServicesDep
from serving.api.docs import errors
from serving.api.schemas import AbortRequest, Brand, RolloutRequest
from serving.assets.events import click_through

router = APIRouter(tags=["rollouts"])
BrandPath = Annotated[Brand, Path(description="The brand (lower case, as in params.yaml)")]


@router.post("/v1/rollouts", status_code=201, responses=errors(401, 403, 404, 409, 422))
def start_rollout(body: RolloutRequest, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Start a canary rollout of a version that passed its gates (the `canary` alias moves
    to it); the controller then walks it through the steps or rolls it back."""
    caller.require("deploy", body.brand)
    services.catalog.aliases(body.brand)  # 404 for a brand without a model
    services.rollouts.start(
        body.brand,
        body.version,
        steps=body.steps,
        min_requests=body.min_requests,
        min_seconds=body.min_seconds,
        mode=body.mode,
        actor=caller.name,
    )
    services.catalog.forget(body.brand)
    return services.rollouts.get(body.brand)


@router.get("/v1/rollouts/{brand}", responses=errors(401, 403, 404, 422))
def rollout_state(brand: BrandPath, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """State, step, weight and the measurements behind every decision."""
    caller.require("deploy", brand)
    services.catalog.aliases(brand)  # 404 for a brand without a model
    state = services.rollouts.get(brand)
    versions = [str(v) for v in (state.get("champion_version"), state.get("canary_version")) if v]
    with services.sessions() as session:
        state["click_through"] = click_through(session, brand, versions)
    return state


@router.post("/v1/rollouts/{brand}/abort", responses=errors(401, 403, 404, 409, 422))
def abort_rollout(
    brand: BrandPath, body: AbortRequest, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Roll back at once: the canary alias goes, all traffic to the champion."""
    caller.require("deploy", brand)
    services.catalog.aliases(brand)
    services.rollouts.abort(brand, actor=caller.name, reason=body.reason)
    services.catalog.forget(brand)
    return services.rollouts.get(brand)
