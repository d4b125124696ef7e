"""Campaigns: batch generation jobs on a durable queue in the serving database.

A campaign (`serving.campaigns.spec`: the spec and its expansion) is a prompt template expanded
over its variables, per aspect ratio and variant. Submitting one writes the campaign and all of
its items in one transaction and returns at once; workers (`serving.campaigns.worker`, run by
the `CampaignRunner` deployment) then take items from the queue, render them through the same
generator and batching as live traffic, compose and encode them, and deliver them.

    POST /v1/campaigns ──submit──► campaigns + campaign_items (pending)
                                     │ claim (lease)       ▲ lease expired: back to pending
                                     ▼                     │
                CampaignRunner ──render/compose/encode──► finish (done | review) / release

Exactly once: an item's `key` (combination, ratio, variant) is unique within its campaign, so
an item exists once however often a submission is retried with the same idempotency key. A
worker claims an item with a lease; its result is committed only by a conditional UPDATE that
checks the worker still holds the lease, in the same transaction as the item's asset rows. A
worker that dies loses its lease (the item goes back to the queue, the files it wrote but did
not commit are orphans that nothing points to and are deleted by the worker that loses a race);
so every item ends with exactly one set of delivered assets, none lost, none duplicated.

The model versions are pinned at submission: the champion, and during a live rollout the canary
for the rollout's share of the items (by the same sticky hash as clients, keyed by item), each
item recording which it got. Priority orders the queue (higher first, then earlier deadline,
then submission order).

Personal data in a spec's texts is redacted before anything is stored (DESIGN.md, decision 9).
Everything here is plain SQLAlchemy on the serving database; no Ray, no HTTP: refusals are
domain errors (`serving.errors`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from brandforge.params import format_validation_errors
from serving.campaigns.spec import CampaignSpec, expand, item_seed, ratio_size
from serving.db.models import Campaign, CampaignItem, utcnow
from serving.delivery.redact import redact
from serving.errors import Conflict, Invalid, NotFound
from serving.privacy.subjects import Subject, record_subjects, subjects_in
from serving.rollout.split import Variant, assign_variant

log = logging.getLogger(__name__)


class CampaignState(StrEnum):
    """A campaign's state (`campaigns.state`): queued until a worker takes an item, running
    until no item is pending or running, then done; or cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


class ItemState(StrEnum):
    """A campaign item's state (`campaign_items.state`)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    REVIEW = "review"  # delivered to review only: a person decides (`serving.assets.review`)
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN_CAMPAIGN = (CampaignState.QUEUED, CampaignState.RUNNING)
OPEN_ITEM = (ItemState.PENDING, ItemState.RUNNING)
FINISHED_ITEM = (ItemState.DONE, ItemState.REVIEW, ItemState.FAILED)


def redacted(spec: CampaignSpec) -> CampaignSpec:
    """`spec` with the personal data in its texts (name, template, negative prompt, headline,
    call to action, variable values) replaced by placeholders (`serving.delivery.redact`), as it
    is stored; `Invalid` if the redacted spec no longer holds (a placeholder broke a template)."""
    data = spec.model_dump(mode="json")
    for key in ("name", "template", "negative_prompt", "headline", "cta"):
        if data[key]:
            data[key] = redact(data[key])
    data["variables"] = {n: [redact(v) for v in vs] for n, vs in data["variables"].items()}
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as err:
        raise Invalid(
            format_validation_errors(err, "the campaign with its personal data redacted")
        ) from None


def submit(
    session: Session,
    spec: CampaignSpec,
    *,
    model_name: str,
    champion_version: str,
    canary: tuple[str, int, int] | None,
    actor: str,
    base_seed: int,
) -> tuple[Campaign, bool]:
    """Write a campaign and its items (pending); returns (campaign, created). `canary` is
    (version, rollout id, weight %) during a live rollout. With an `idempotency_key` already used
    by this actor for this brand, the existing campaign is returned and nothing is written.

    Personal data in the spec's texts is redacted before anything is written (`redacted`): the
    stored spec, every item's prompt and values hold placeholders, never the address or number.
    Raises `Invalid` when the redacted spec no longer holds."""
    if spec.idempotency_key:
        existing = session.scalars(
            select(Campaign).where(
                Campaign.brand == spec.brand,
                Campaign.created_by == actor,
                Campaign.idempotency_key == spec.idempotency_key,
            )
        ).first()
        if existing is not None:
            return existing, False
    original, spec = spec, redacted(spec)
    now = utcnow()
    spec_json = spec.model_dump(mode="json")
    spec_json["seed"] = base_seed
    campaign = Campaign(
        brand=spec.brand,
        name=spec.name,
        spec=spec_json,
        priority=spec.priority,
        deadline=spec.deadline,
        model_name=model_name,
        champion_version=champion_version,
        canary_version=canary[0] if canary else None,
        canary_weight=canary[2] if canary else 0,
        state=CampaignState.QUEUED,
        created_by=actor,
        idempotency_key=spec.idempotency_key,
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    session.flush()
    record_subjects(
        session, _spec_subjects(original), kind="campaign", object_id=campaign.id, brand=spec.brand
    )
    _add_items(
        session,
        campaign,
        spec,
        original,
        champion_version=champion_version,
        canary=canary,
        base_seed=base_seed,
    )
    return campaign, True


def _add_items(
    session: Session,
    campaign: Campaign,
    spec: CampaignSpec,
    original: CampaignSpec,
    *,
    champion_version: str,
    canary: tuple[str, int, int] | None,
    base_seed: int,
) -> None:
    """The campaign's items, pending, from the redacted `spec`; the personal data each
    prompt held (expanded from the `original` spec) is recorded by keyed hash."""
    now = campaign.created_at
    mentions: list[tuple[CampaignItem, set[Subject]]] = []
    for planned, raw in zip(expand(spec), expand(original), strict=True):
        variant, version = Variant.CHAMPION, champion_version
        if canary is not None and canary[2] > 0:
            item_client = f"campaign:{campaign.id}:{planned.key}"
            if assign_variant(item_client, canary[1], canary[2]) == Variant.CANARY:
                variant, version = Variant.CANARY, canary[0]
        width, height = ratio_size(planned.ratio, spec.size)
        item = CampaignItem(
            campaign_id=campaign.id,
            key=planned.key,
            brand=spec.brand,
            prompt=redact(planned.prompt),  # values may join into an address
            values=planned.values,
            ratio=planned.ratio,
            width=width,
            height=height,
            model_version=version,
            variant=variant,
            priority=spec.priority,
            seed=item_seed(base_seed, planned.key),
            state=ItemState.PENDING,
            created_at=now,
            updated_at=now,
        )
        session.add(item)
        if found := subjects_in(raw.prompt):
            mentions.append((item, found))
    session.flush()
    for item, found in mentions:
        record_subjects(
            session, found, kind="campaign_item", object_id=str(item.id), brand=spec.brand
        )


def _spec_subjects(spec: CampaignSpec) -> set[Subject]:
    """The personal data a spec's texts hold before redaction (`redacted` says which)."""
    texts = [spec.name, spec.template, spec.negative_prompt, spec.headline, spec.cta]
    texts += [v for values in spec.variables.values() for v in values]
    return set().union(*(subjects_in(t) for t in texts))


def claim(
    session: Session, *, owner: str, limit: int, lease_s: float, now: datetime | None = None
) -> list[CampaignItem]:
    """Take up to `limit` items off the queue for `owner`, with a lease of `lease_s`.

    Pending items and items whose lease has expired (their worker died) are eligible, those of
    higher priority first, then earlier deadline, then older. Each is taken by a conditional
    UPDATE on its state and lease, so two workers never hold the same item. Commits.
    """
    now = now or utcnow()
    expires = now + timedelta(seconds=lease_s)
    eligible = or_(
        CampaignItem.state == ItemState.PENDING,
        and_(CampaignItem.state == ItemState.RUNNING, CampaignItem.lease_expires_at < now),
    )
    candidates = session.execute(
        select(CampaignItem.id, CampaignItem.state, CampaignItem.lease_owner)
        .join(Campaign, Campaign.id == CampaignItem.campaign_id)
        .where(eligible, Campaign.state.in_(OPEN_CAMPAIGN))
        .order_by(
            CampaignItem.priority.desc(),
            Campaign.deadline.is_(None),
            Campaign.deadline,
            CampaignItem.id,
        )
        .limit(limit * 4)
    ).all()
    taken: list[int] = []
    for item_id, state, previous in candidates:
        if len(taken) >= limit:
            break
        result = session.execute(
            update(CampaignItem)
            .where(
                CampaignItem.id == item_id,
                CampaignItem.state == state,
                CampaignItem.lease_owner.is_(None)
                if previous is None
                else CampaignItem.lease_owner == previous,
                eligible,
            )
            .values(
                state=ItemState.RUNNING, lease_owner=owner, lease_expires_at=expires, updated_at=now
            )
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            taken.append(item_id)
            if state == ItemState.RUNNING:
                log.warning(
                    "item %s: lease of %s expired; taken over by %s", item_id, previous, owner
                )
    if taken:
        campaign_ids = session.scalars(
            select(CampaignItem.campaign_id).where(CampaignItem.id.in_(taken)).distinct()
        ).all()
        session.execute(
            update(Campaign)
            .where(Campaign.id.in_(campaign_ids), Campaign.state == CampaignState.QUEUED)
            .values(state=CampaignState.RUNNING, updated_at=now)
        )
    session.commit()
    if not taken:
        return []
    return list(
        session.scalars(
            select(CampaignItem).where(CampaignItem.id.in_(taken)).order_by(CampaignItem.id)
        )
    )


def renew(session: Session, item_id: int, *, owner: str, lease_s: float) -> bool:
    """Extend a held lease (a long render); False when the item is no longer this owner's."""
    now = utcnow()
    result = session.execute(
        update(CampaignItem)
        .where(
            CampaignItem.id == item_id,
            CampaignItem.state == ItemState.RUNNING,
            CampaignItem.lease_owner == owner,
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_s), updated_at=now)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def finish(
    session: Session,
    item_id: int,
    *,
    owner: str,
    state: ItemState,
    attempts: int,
    seed: int,
    asset_ids: list[str],
    compliance: dict[str, Any] | None,
    error: str | None = None,
) -> bool:
    """Record an item's result if `owner` still holds it; False (nothing written) otherwise.

    The caller adds the item's Asset rows to the same session first: they are committed
    together with the item, or (lease lost) rolled back together. `state` is a finished state
    (done, review or failed).
    """
    if state not in FINISHED_ITEM:
        raise ValueError(f"an item finishes done, review or failed, not {state!r}")
    now = utcnow()
    result = session.execute(
        update(CampaignItem)
        .where(
            CampaignItem.id == item_id,
            CampaignItem.state == ItemState.RUNNING,
            CampaignItem.lease_owner == owner,
        )
        .values(
            state=state,
            attempts=attempts,
            seed=seed,
            asset_ids=asset_ids,
            compliance=compliance,
            error=error,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return False
    campaign_id = session.scalar(select(CampaignItem.campaign_id).where(CampaignItem.id == item_id))
    if campaign_id is not None:
        _close_if_finished(session, campaign_id, now)
    session.commit()
    return True


def release(session: Session, item_id: int, *, owner: str, error: str) -> None:
    """Give an item back to the queue after a transient failure (the model could not be reached)."""
    session.execute(
        update(CampaignItem)
        .where(CampaignItem.id == item_id, CampaignItem.lease_owner == owner)
        .values(
            state=ItemState.PENDING, lease_owner=None, lease_expires_at=None, error=error[:2000]
        )
    )
    session.commit()


def _close_if_finished(session: Session, campaign_id: str, now: datetime) -> None:
    open_items = session.scalar(
        select(func.count())
        .select_from(CampaignItem)
        .where(
            CampaignItem.campaign_id == campaign_id,
            CampaignItem.state.in_(OPEN_ITEM),
        )
    )
    if open_items == 0:
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.state.in_(OPEN_CAMPAIGN))
            .values(state=CampaignState.DONE, finished_at=now, updated_at=now)
        )


def cancel(session: Session, campaign_id: str, *, actor: str) -> Campaign:
    """Stop a campaign: pending items are cancelled, running ones finish but are not replaced;
    delivered assets stay. Raises `NotFound` (no such campaign) or `Conflict` (it has ended)."""
    from serving.auth import audit

    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    if campaign.state not in OPEN_CAMPAIGN:
        raise Conflict(f"campaign {campaign_id} is already {campaign.state}")
    now = utcnow()
    cancelled = session.execute(
        update(CampaignItem)
        .where(CampaignItem.campaign_id == campaign_id, CampaignItem.state == ItemState.PENDING)
        .values(state=ItemState.CANCELLED, finished_at=now, updated_at=now)
    ).rowcount  # type: ignore[attr-defined]
    campaign.state = CampaignState.CANCELLED
    campaign.finished_at = now
    campaign.updated_at = now
    audit(
        session,
        actor,
        "campaign.cancel",
        campaign.brand,
        campaign_id=campaign_id,
        cancelled_items=cancelled,
    )
    session.commit()
    return campaign


def progress(
    session: Session, campaign_id: str, *, items: bool = True, now: datetime | None = None
) -> dict[str, Any]:
    """A campaign's state, counts per item state, progress, throughput and ETA, and (with
    `items`) every item with its assets. Raises `NotFound`."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    now = now or utcnow()
    counts = {state.value: 0 for state in ItemState}
    for state, n in session.execute(
        select(CampaignItem.state, func.count())
        .where(CampaignItem.campaign_id == campaign_id)
        .group_by(CampaignItem.state)
    ):
        counts[state] = int(n)
    total = sum(counts.values())
    finished = sum(counts[state] for state in FINISHED_ITEM)
    first_done = session.scalar(
        select(func.min(CampaignItem.finished_at)).where(
            CampaignItem.campaign_id == campaign_id,
            CampaignItem.state.in_(FINISHED_ITEM),
        )
    )
    rate = None
    eta_s = None
    started = campaign.created_at
    if finished and first_done is not None:
        elapsed = max((now - started).total_seconds(), 1e-3)
        rate = finished / elapsed * 60.0  # items per minute since submission
        remaining = sum(counts[state] for state in OPEN_ITEM)
        eta_s = round(remaining / (rate / 60.0), 1) if remaining else 0.0
    out: dict[str, Any] = {
        "campaign_id": campaign.id,
        "brand": campaign.brand,
        "name": campaign.name,
        "state": campaign.state,
        "priority": campaign.priority,
        "deadline": campaign.deadline.isoformat() if campaign.deadline else None,
        "model": {
            "name": campaign.model_name,
            "champion": campaign.champion_version,
            "canary": campaign.canary_version,
            "canary_weight": campaign.canary_weight,
        },
        "total": total,
        "counts": counts,
        "progress": round(finished / total, 4) if total else 1.0,
        "items_per_minute": round(rate, 2) if rate is not None else None,
        "eta_s": eta_s,
        "created_at": campaign.created_at.isoformat(),
        "finished_at": campaign.finished_at.isoformat() if campaign.finished_at else None,
        "spec": campaign.spec,
    }
    if items:
        rows = session.scalars(
            select(CampaignItem)
            .where(CampaignItem.campaign_id == campaign_id)
            .order_by(CampaignItem.id)
        )
        out["items"] = [
            {
                "key": r.key,
                "state": r.state,
                "prompt": r.prompt,
                "values": r.values,
                "ratio": r.ratio,
                "size": [r.width, r.height],
                "model_version": r.model_version,
                "variant": r.variant,
                "seed": r.seed,
                "attempts": r.attempts,
                "assets": [{"asset_id": a, "url": f"/v1/assets/{a}"} for a in (r.asset_ids or [])],
                "compliance": r.compliance,
                "error": r.error,
            }
            for r in rows
        ]
    return out
