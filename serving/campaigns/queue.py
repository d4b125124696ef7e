"""Campaigns: batch generation jobs on a durable queue in the serving database.

A campaign is a prompt template expanded over its variables (`{"product": [...], "season":
[...]}`), for each channel's aspect ratio and `variants` seeds per combination. Submitting one
writes the campaign and all of its items in one transaction and returns at once; workers (the
`CampaignRunner` deployment, `serving.app`) then take items from the queue, render them through
the same generator and batching as live traffic, compose and encode them, and deliver them.

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

Everything here is plain SQLAlchemy on the serving database; no Ray, no HTTP.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from serving.db.models import Campaign, CampaignItem, utcnow

log = logging.getLogger(__name__)

# A campaign is a batch job, not a bulk loader: more items than this is a request to split it.
MAX_ITEMS = 5000
MAX_VALUES = 200  # values per variable
STILL = ("png", "jpeg", "webp", "heic", "svg")
MOTION = ("gif", "mp4")
StillFormat = Literal["png", "jpeg", "webp", "heic", "svg"]
_RATIO = re.compile(r"^[1-9]\d{0,2}:[1-9]\d{0,2}$")


class CampaignError(Exception):
    """A request the queue refuses; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _default_formats() -> list[StillFormat]:
    return ["png"]


class MotionSpec(BaseModel):
    """A short loop made by walking around a circle between two seeds' starting noise."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["gif", "mp4"] = "gif"
    frames: int | None = Field(None, ge=2, le=96, description="default 8, or duration x fps")
    fps: float = Field(8.0, gt=0, le=60)
    duration_s: float | None = Field(None, gt=0, le=12, description="loop length in seconds")

    @model_validator(mode="after")
    def _length(self) -> MotionSpec:
        if self.frames is not None and self.duration_s is not None:
            if abs(self.frames / self.fps - self.duration_s) > 0.5 / self.fps:
                raise ValueError(
                    f"frames {self.frames} at {self.fps:g} fps last "
                    f"{self.frames / self.fps:.2f} s, not duration_s {self.duration_s:g}: "
                    "give two of frames, fps and duration_s"
                )
        return self

    @property
    def frame_count(self) -> int:
        """Frames of the loop: `frames`, else `duration_s` x `fps` (at least 2, at most 96)."""
        if self.frames is not None:
            return self.frames
        if self.duration_s is not None:
            return max(2, min(96, round(self.duration_s * self.fps)))
        return 8


class CampaignSpec(BaseModel):
    """`POST /v1/campaigns`: what to make. Texts (`headline`, `cta`) are templates like the
    prompt; they are composed on top of the generated background, never drawn by the model."""

    model_config = ConfigDict(extra="forbid")

    brand: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    name: str = Field("", max_length=200)
    template: str = Field(min_length=1, max_length=2000)
    variables: dict[str, list[str]] = Field(default_factory=dict)
    negative_prompt: str | None = Field(None, max_length=2000)
    ratios: list[str] = Field(default_factory=lambda: ["1:1"], min_length=1, max_length=12)
    variants: int = Field(1, ge=1, le=16, description="seeds per combination and ratio")
    formats: list[StillFormat] = Field(default_factory=_default_formats, min_length=1)
    motion: MotionSpec | None = None
    headline: str | None = Field(None, max_length=200)
    cta: str | None = Field(None, max_length=100)
    size: int = Field(1024, ge=32, le=4096, description="long side of the delivered asset, px")
    generation_size: int = Field(
        512, ge=16, le=2048, description="long side the model draws at, px"
    )
    steps: int | None = Field(None, ge=1, le=150)
    guidance: float | None = Field(None, ge=0, le=30)
    seed: int | None = Field(None, ge=0, lt=2**62, description="base seed (default: random)")
    priority: int = Field(0, ge=-100, le=100)
    deadline: datetime | None = None
    max_regenerations: int = Field(2, ge=0, le=10)
    review: bool = Field(False, description="send every item to human review")
    idempotency_key: str | None = Field(None, max_length=200)

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, values in value.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$", name):
                raise ValueError(f"variable name {name!r} must be an identifier")
            if not values:
                raise ValueError(f"variable {name!r} has no values")
            if len(values) > MAX_VALUES:
                raise ValueError(
                    f"variable {name!r} has {len(values)} values (at most {MAX_VALUES})"
                )
            if any(not isinstance(v, str) or not v.strip() or len(v) > 200 for v in values):
                raise ValueError(f"variable {name!r}: values must be non-empty strings")
        return value

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: list[str]) -> list[str]:
        for r in value:
            if not _RATIO.match(r):
                raise ValueError(f"{r!r} is not an aspect ratio like 4:5")
        if len(set(value)) != len(value):
            raise ValueError("ratios repeat")
        return value

    @field_validator("deadline")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("deadline needs a time zone (e.g. 2026-12-01T09:00:00Z)")
        return value

    @model_validator(mode="after")
    def _templates(self) -> CampaignSpec:
        known = set(self.variables) | {"brand"}
        for field in ("template", "headline", "cta"):
            text = getattr(self, field)
            if text is None:
                continue
            try:
                names = {n for _, n, _, _ in string.Formatter().parse(text) if n is not None}
            except ValueError as err:
                raise ValueError(
                    f"{field}: {err} (write literal braces as {{{{ and }}}})"
                ) from None
            unknown = sorted(names - known)
            if unknown:
                raise ValueError(
                    f"{field} uses {{{unknown[0]}}} but variables define only "
                    f"{sorted(self.variables) or 'none'} (and {{brand}})"
                )
        if self.item_count() > MAX_ITEMS:
            raise ValueError(
                f"the campaign expands to {self.item_count()} items (at most {MAX_ITEMS}); split it"
            )
        return self

    def item_count(self) -> int:
        combos = 1
        for values in self.variables.values():
            combos *= len(values)
        return combos * len(self.ratios) * self.variants


@dataclass(frozen=True)
class PlannedItem:
    key: str
    values: dict[str, str]
    prompt: str
    ratio: str
    variant_index: int


def expand(spec: CampaignSpec) -> list[PlannedItem]:
    """Every item of a campaign, in a stable order; keys depend only on the spec."""
    names = sorted(spec.variables)
    combos = itertools.product(*(spec.variables[n] for n in names)) if names else [()]
    items = []
    for c_index, combo in enumerate(combos):
        values = dict(zip(names, combo, strict=True))
        prompt = spec.template.format(brand=spec.brand, **values)
        for ratio in spec.ratios:
            for v in range(spec.variants):
                key = f"{c_index}:{ratio}:{v}"
                items.append(PlannedItem(key, values, prompt, ratio, v))
    return items


def fill(text: str | None, brand: str, values: dict[str, str]) -> str | None:
    """A headline or call-to-action template with the item's values."""
    return None if text is None else text.format(brand=brand, **values)


def ratio_size(ratio: str, long_side: int, multiple: int = 8) -> tuple[int, int]:
    """(width, height) of `ratio` with the given long side, both multiples of `multiple`."""
    w, h = (int(x) for x in ratio.split(":"))
    scale = long_side / max(w, h)
    width = max(multiple, round(w * scale / multiple) * multiple)
    height = max(multiple, round(h * scale / multiple) * multiple)
    return width, height


def item_seed(base_seed: int, key: str, attempt: int = 0) -> int:
    """The seed of an item's `attempt`-th render: fixed by the campaign's base seed and the
    item's key, so a re-run after a crash draws the same image."""
    digest = hashlib.sha256(f"{base_seed}:{key}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


# ---------------------------------------------------------------------------------------------
# The queue


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
    by this actor for this brand, the existing campaign is returned and nothing is written."""
    from serving.rollout.controller import assign_variant

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
        state="queued",
        created_by=actor,
        idempotency_key=spec.idempotency_key,
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    session.flush()
    for planned in expand(spec):
        variant, version = "champion", champion_version
        if canary is not None and canary[2] > 0:
            item_client = f"campaign:{campaign.id}:{planned.key}"
            if assign_variant(item_client, canary[1], canary[2]) == "canary":
                variant, version = "canary", canary[0]
        width, height = ratio_size(planned.ratio, spec.size)
        session.add(
            CampaignItem(
                campaign_id=campaign.id,
                key=planned.key,
                brand=spec.brand,
                prompt=planned.prompt,
                values=planned.values,
                ratio=planned.ratio,
                width=width,
                height=height,
                model_version=version,
                variant=variant,
                priority=spec.priority,
                seed=item_seed(base_seed, planned.key),
                state="pending",
                created_at=now,
                updated_at=now,
            )
        )
    return campaign, True


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
        CampaignItem.state == "pending",
        and_(CampaignItem.state == "running", CampaignItem.lease_expires_at < now),
    )
    candidates = session.execute(
        select(CampaignItem.id, CampaignItem.state, CampaignItem.lease_owner)
        .join(Campaign, Campaign.id == CampaignItem.campaign_id)
        .where(eligible, Campaign.state.in_(("queued", "running")))
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
            .values(state="running", lease_owner=owner, lease_expires_at=expires, updated_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            taken.append(item_id)
            if state == "running":
                log.warning(
                    "item %s: lease of %s expired; taken over by %s", item_id, previous, owner
                )
    if taken:
        campaign_ids = session.scalars(
            select(CampaignItem.campaign_id).where(CampaignItem.id.in_(taken)).distinct()
        ).all()
        session.execute(
            update(Campaign)
            .where(Campaign.id.in_(campaign_ids), Campaign.state == "queued")
            .values(state="running", updated_at=now)
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
            CampaignItem.state == "running",
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
    state: Literal["done", "review", "failed"],
    attempts: int,
    seed: int,
    asset_ids: list[str],
    compliance: dict[str, Any] | None,
    error: str | None = None,
) -> bool:
    """Record an item's result if `owner` still holds it; False (nothing written) otherwise.

    The caller adds the item's Asset rows to the same session first: they are committed
    together with the item, or (lease lost) rolled back together.
    """
    now = utcnow()
    result = session.execute(
        update(CampaignItem)
        .where(
            CampaignItem.id == item_id,
            CampaignItem.state == "running",
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
        .values(state="pending", lease_owner=None, lease_expires_at=None, error=error[:2000])
    )
    session.commit()


def _close_if_finished(session: Session, campaign_id: str, now: datetime) -> None:
    open_items = session.scalar(
        select(func.count())
        .select_from(CampaignItem)
        .where(
            CampaignItem.campaign_id == campaign_id,
            CampaignItem.state.in_(("pending", "running")),
        )
    )
    if open_items == 0:
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.state.in_(("queued", "running")))
            .values(state="done", finished_at=now, updated_at=now)
        )


def cancel(session: Session, campaign_id: str, *, actor: str) -> Campaign:
    """Stop a campaign: pending items are cancelled, running ones finish but are not replaced;
    delivered assets stay. Raises CampaignError 404/409."""
    from serving.auth import audit

    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(404, f"no campaign {campaign_id!r}")
    if campaign.state not in ("queued", "running"):
        raise CampaignError(409, f"campaign {campaign_id} is already {campaign.state}")
    now = utcnow()
    cancelled = session.execute(
        update(CampaignItem)
        .where(CampaignItem.campaign_id == campaign_id, CampaignItem.state == "pending")
        .values(state="cancelled", finished_at=now, updated_at=now)
    ).rowcount  # type: ignore[attr-defined]
    campaign.state = "cancelled"
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
    `items`) every item with its assets. Raises CampaignError 404."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(404, f"no campaign {campaign_id!r}")
    now = now or utcnow()
    counts = dict.fromkeys(("pending", "running", "done", "review", "failed", "cancelled"), 0)
    for state, n in session.execute(
        select(CampaignItem.state, func.count())
        .where(CampaignItem.campaign_id == campaign_id)
        .group_by(CampaignItem.state)
    ):
        counts[state] = int(n)
    total = sum(counts.values())
    finished = counts["done"] + counts["review"] + counts["failed"]
    first_done = session.scalar(
        select(func.min(CampaignItem.finished_at)).where(
            CampaignItem.campaign_id == campaign_id,
            CampaignItem.state.in_(("done", "review", "failed")),
        )
    )
    rate = None
    eta_s = None
    started = campaign.created_at
    if finished and first_done is not None:
        elapsed = max((now - started).total_seconds(), 1e-3)
        rate = finished / elapsed * 60.0  # items per minute since submission
        remaining = counts["pending"] + counts["running"]
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
