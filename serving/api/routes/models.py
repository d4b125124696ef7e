"""The brands a key may see, with their versions, rollout and click-through."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serving.api.deps import CallerDep, ServicesDep
from serving.api.docs import errors
from serving.assets.events import click_through
from serving.catalog import model_name
from serving.rollout.request_log import kit_pass_rates

router = APIRouter(tags=["models"])


@router.get("/v1/models", responses=errors(401, 403, 503))
def models(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Brands with their champion, canary and challenger versions: only the brands the key
    may act on. Per version, `click_through` (from the marketing application's events) and
    `brand_kit`: the images of the last 7 days of live traffic scored against the brand kit,
    how many passed, and the pass rate."""
    caller.require("generate")
    listed = []
    for brand in services.catalog.brands():
        if not caller.can_access(brand):
            continue
        listed.append(
            {
                "brand": brand,
                "model": model_name(brand),
                **services.catalog.aliases(brand),
                "rollout": _rollout_state(services, brand),
                "click_through": _click_through(services, brand),
                "brand_kit": _kit_pass_rates(services, brand),
            }
        )
    return {"models": listed}


def _rollout_state(services: Any, brand: str) -> dict[str, Any] | None:
    rollout = services.rollouts.current(brand)
    if rollout is None:
        return None
    return {
        "id": rollout.id,
        "mode": rollout.mode,
        "canary": rollout.canary_version,
        "step": rollout.step_index,
        "weight": services.rollouts.weight(rollout),
    }


def _kit_pass_rates(services: Any, brand: str) -> dict[str, Any]:
    with services.sessions() as session:
        return kit_pass_rates(session, brand)


def _click_through(services: Any, brand: str) -> dict[str, Any]:
    with services.sessions() as session:
        return click_through(session, brand, None)
