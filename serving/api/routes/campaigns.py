"""Batch campaigns: submit, progress, cancel (role `generate` for the campaign's brand)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from registry.sampler import Sampler, sampling
from serving.admission import admit_request, check_cost
from serving.api.deps import CallerDep, ServicesDep
from serving.api.docs import errors
from serving.api.policy import refuse_if_banned
from serving.auth import Principal, audit
from serving.campaigns.policy import campaign_violation
from serving.campaigns.queue import cancel, progress, submit
from serving.campaigns.spec import CampaignSpec, ratio_size
from serving.catalog import model_id, model_name
from serving.db.models import Campaign
from serving.errors import Invalid, NotFound

router = APIRouter(tags=["campaigns"])
CampaignId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.post("/v1/campaigns", status_code=202, responses=errors(401, 403, 404, 409, 413, 422, 429))
def submit_campaign(body: CampaignSpec, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Queue a campaign: the template expanded over its variables, per aspect ratio and
    variant. The model versions are pinned now (the champion; during a live rollout the
    canary for the rollout's share of the items). Returns at once."""
    caller.require("generate", body.brand)
    champion = services.catalog.champion(body.brand)
    rollout = services.rollouts.current(body.brand)
    canary = None
    if rollout is not None and rollout.mode == "live":
        canary = (rollout.canary_version, rollout.id, services.rollouts.weight(rollout))
    for version in {champion, canary[0] if canary else champion}:
        _check_item(services, body, model_id(body.brand, version))
    # Counted once submitted, as one request and all of its items' images.
    admit_request(
        services.sessions, services.admission, caller, body.brand, images=body.item_count()
    )
    refuse_if_banned(
        services,
        caller,
        brand=body.brand,
        route="campaigns",
        find=lambda lists: campaign_violation(body, lists),
        versions=[champion, *([canary[0]] if canary else [])],
    )
    base_seed = body.seed if body.seed is not None else secrets.randbelow(2**62)
    with services.sessions() as session:
        campaign, created = submit(
            session,
            body,
            model_name=model_name(body.brand),
            champion_version=champion,
            canary=canary,
            actor=caller.name,
            base_seed=base_seed,
        )
        if created:
            audit(
                session,
                caller.name,
                "campaign.submit",
                body.brand,
                campaign_id=campaign.id,
                items=body.item_count(),
            )
        session.commit()
        state = progress(session, campaign.id, items=False)
    return {**state, "created": created, "status_url": f"/v1/campaigns/{campaign.id}"}


@router.get("/v1/campaigns/{campaign_id}", responses=errors(401, 403, 404, 422))
def campaign_state(
    campaign_id: CampaignId,
    services: ServicesDep,
    caller: CallerDep,
    items: Annotated[bool, Query(description="List every item (false: counts only)")] = True,
) -> dict[str, Any]:
    """Progress, counts per state, throughput, ETA and (unless `items=false`) every item
    with its model version, seed, attempts, compliance and assets."""
    _campaign_brand(services, caller, campaign_id)
    with services.sessions() as session:
        return progress(session, campaign_id, items=items)


@router.delete("/v1/campaigns/{campaign_id}", responses=errors(401, 403, 404, 409, 422))
def cancel_campaign(
    campaign_id: CampaignId, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Cancel: pending items are dropped, items being drawn finish; delivered assets stay."""
    _campaign_brand(services, caller, campaign_id)
    with services.sessions() as session:
        cancel(session, campaign_id, actor=caller.name)
        return progress(session, campaign_id, items=False)


def _check_item(services: Any, body: CampaignSpec, mid: str) -> None:
    """An item's size and cost within the version's limits: the largest ratio at the drawn
    long side, its steps, and its still plus its motion frames (drawn for the same item)."""
    sizes = services.catalog.sizes(mid)
    if body.generation_size is not None and body.generation_size > sizes.max_side:
        raise Invalid(
            f"generation_size {body.generation_size} is above the largest side "
            f"{sizes.max_side} px that {mid} allows"
        )
    long_side = body.generation_size or sizes.native
    largest = max((ratio_size(r, long_side) for r in body.ratios), key=lambda s: s[0] * s[1])
    check_cost(
        services.admission,
        brand=body.brand,
        model=mid,
        native=sizes.native,
        version_limit=sizes.max_cost,
        size=largest,
        steps=sampling(
            Sampler(body.steps, body.guidance),
            Sampler(services.config.default_steps, services.config.default_guidance),
            services.catalog.sampler(mid),
        )[0],
        images=1 + (body.motion.frame_count if body.motion is not None else 0),
        images_field="images per item (1 + motion frames)",
        lower="steps, generation_size or the motion frames",
    )


def _campaign_brand(services: Any, caller: Principal, campaign_id: str) -> str:
    """The brand of a campaign the caller may see (role first, so the 404 tells nothing to a
    key without the role; brand after the lookup)."""
    caller.require("generate")
    with services.sessions() as session:
        row = session.get(Campaign, campaign_id)
        brand = None if row is None else row.brand
    if brand is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    caller.require("generate", brand)
    return brand
