"""The campaign worker: take items off the queue, draw, compose, check, deliver.

One `CampaignWorker.run_once()` claims a handful of items (`serving.campaigns.queue.claim`),
renders their backgrounds in one call to the generator (so they batch like live traffic), fits
each to its channel's size and composes the brand's logo and texts on top
(`serving.delivery.compose`), scores the composed asset against the brand kit, and draws again
with a new seed for the items that failed, up to the campaign's `max_regenerations`; an item
that still fails goes to human review instead of being delivered. Every output goes through
the one delivery path live requests take (`serving.delivery.deliver`: manifest, watermark,
each requested format, asset store, Asset rows); the rows and the item's result are committed
together, and only while the worker still holds the item's lease.

The worker has no Ray in it: `render` and `render_loop` are callables (the Ray app passes the
generator deployment's handle; tests can pass an `Engine`).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from registry.sampler import Sampler, sampling
from serving.campaigns.queue import ItemState, claim, finish, release
from serving.campaigns.spec import CampaignSpec, fill, item_seed, ratio_size
from serving.catalog import BrandContext
from serving.db.models import Campaign, CampaignItem
from serving.delivery.deliver import CampaignRef, Delivery, Drawing, Motion, Origin, score_image
from serving.generator import ImageJob, Rendered

log = logging.getLogger(__name__)

RenderFn = Callable[[list[ImageJob]], list[Rendered]]
LoopFn = Callable[[ImageJob, int, int], list[bytes]]  # (job, frames, seed_to) -> PNG frames


@dataclass
class _Work:
    item: CampaignItem
    spec: CampaignSpec
    campaign: Campaign
    attempt: int = 0
    seed: int = 0
    background: Image.Image | None = None
    composed: Any = None  # serving.delivery.compose.Composition
    report: dict[str, Any] | None = None
    passed: bool = False
    error: Exception | None = None  # composing failed: the item fails with this


class _RenderFailed(Exception):
    """The generator call failed (unreachable, model not loadable): a transient failure."""


class CampaignWorker:
    """Processes campaign items; `run_once` is one claim-render-deliver round."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        store: Any,
        render: RenderFn,
        render_loop: LoopFn | None,
        context_for: Callable[[str], BrandContext],
        owner: str,
        lease_s: float = 120.0,
        default_steps: int | None = None,
        default_guidance: float | None = None,
        retention_days: dict[str, float] | None = None,
        review_brands: frozenset[str] = frozenset(),
        retry_pause_s: float = 2.0,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.render = render
        self.render_loop = render_loop
        self.context_for = context_for
        self.owner = owner
        self.lease_s = lease_s
        self.default_steps = default_steps
        self.default_guidance = default_guidance
        self.retention_days = retention_days or {}
        self.review_brands = review_brands
        self.retry_pause_s = retry_pause_s

    def run_once(self, limit: int = 4) -> int:
        """Claim up to `limit` items and finish them; returns how many were claimed."""
        with self.sessions() as session:
            items = claim(session, owner=self.owner, limit=limit, lease_s=self.lease_s)
            if not items:
                return 0
            campaigns = {
                c.id: c
                for c in session.query(Campaign).filter(
                    Campaign.id.in_({i.campaign_id for i in items})
                )
            }
        work = [
            _Work(
                item=i,
                spec=CampaignSpec.model_validate(_spec_input(campaigns[i.campaign_id].spec)),
                campaign=campaigns[i.campaign_id],
                seed=i.seed,
            )
            for i in items
        ]
        try:
            self._draw_until_compliant(work)
        except _RenderFailed as err:
            # The generator could not be reached or failed: nothing is wrong with the items, so
            # they go back to the queue for the next round (or another worker).
            log.warning("campaign render failed, items go back to the queue: %s", err)
            with self.sessions() as session:
                for w in work:
                    release(session, w.item.id, owner=self.owner, error=str(err))
            time.sleep(self.retry_pause_s)
            return len(work)
        for w in work:
            try:
                if w.error is not None:
                    raise w.error
                self._deliver(w)
            except Exception as err:  # noqa: BLE001 (one broken item must not stop the rest)
                log.warning("campaign item %s failed: %s", w.item.key, err)
                with self.sessions() as session:
                    finish(
                        session,
                        w.item.id,
                        owner=self.owner,
                        state=ItemState.FAILED,
                        attempts=w.attempt + 1,
                        seed=w.seed,
                        asset_ids=[],
                        compliance=w.report,
                        error=f"{type(err).__name__}: {err}"[:2000],
                    )
        return len(work)

    # -- drawing -------------------------------------------------------------------------------

    def _sampling(self, w: _Work) -> tuple[int, float]:
        """Steps and guidance: the spec's, else the server's override, else those the version
        was evaluated with (`registry.sampler`)."""
        ctx = self.context_for(f"{w.campaign.model_name}/{w.item.model_version}")
        return sampling(
            Sampler(w.spec.steps, w.spec.guidance),
            Sampler(self.default_steps, self.default_guidance),
            Sampler(ctx.steps, ctx.guidance),
        )

    def _job(self, w: _Work) -> ImageJob:
        model_id = f"{w.campaign.model_name}/{w.item.model_version}"
        long_side = w.spec.generation_size or self.context_for(model_id).native_size
        width, height = ratio_size(w.item.ratio, long_side)
        steps, guidance = self._sampling(w)
        return ImageJob(
            model_id=model_id,
            prompt=w.item.prompt,
            negative_prompt=w.spec.negative_prompt or "",
            seed=w.seed,
            width=width,
            height=height,
            steps=steps,
            guidance=guidance,
        )

    def _draw_until_compliant(self, work: list[_Work]) -> None:
        """Render every item, then re-render those that failed the brand kit with new seeds,
        up to each campaign's `max_regenerations`; all renders of a round go in one call."""
        todo = list(work)
        while todo:
            try:
                rendered = self.render([self._job(w) for w in todo])
            except Exception as err:  # noqa: BLE001 (any generator failure: retry the round)
                raise _RenderFailed(f"{type(err).__name__}: {err}") from err
            retry = []
            for w, r in zip(todo, rendered, strict=True):
                w.background = r.image()
                try:
                    self._compose_and_score(w)
                except Exception as err:  # noqa: BLE001 (e.g. a layout that cannot fit: the
                    w.error = err  # item fails with the reason, drawing again cannot help)
                    continue
                if not w.passed and w.attempt < w.spec.max_regenerations:
                    w.attempt += 1
                    w.seed = item_seed(int(w.spec.seed or 0), w.item.key, w.attempt)
                    retry.append(w)
            todo = retry
            for w in todo:
                self._renew(w)

    def _compose_and_score(self, w: _Work) -> None:
        ctx = self.context_for(f"{w.campaign.model_name}/{w.item.model_version}")
        assert w.background is not None
        w.composed = _compose(w, ctx, w.background)
        w.report = score_image(
            w.composed.image, ctx.kit, logo=ctx.logo, text_boxes=w.composed.text_boxes
        )
        w.passed = ctx.kit is None or bool(w.report["passed"])  # no kit: nothing to fail

    def _renew(self, w: _Work) -> None:
        from serving.campaigns.queue import renew

        with self.sessions() as session:
            renew(session, w.item.id, owner=self.owner, lease_s=self.lease_s)

    # -- delivering ----------------------------------------------------------------------------

    def _deliver(self, w: _Work) -> None:
        """Encode the item's files (each format, and its motion loop), store them and commit
        their rows with the item's result, while the worker still holds the item."""
        self._renew(w)  # encoding (SVG, motion) can take a while
        ctx = self.context_for(f"{w.campaign.model_name}/{w.item.model_version}")
        review = not w.passed or w.spec.review or w.item.brand in self.review_brands
        steps, guidance = self._sampling(w)
        drawing = Drawing(
            prompt=w.item.prompt,
            negative_prompt=w.spec.negative_prompt or "",
            seed=w.seed,
            steps=steps,
            guidance=guidance,
        )
        settings = {"ratio": w.item.ratio, "attempt": w.attempt, "layout": w.composed.layout}
        delivery = Delivery(
            store=self.store,
            origin=Origin(
                brand=w.item.brand,
                model_name=w.campaign.model_name,
                model_version=w.item.model_version,
                variant=w.item.variant,
                dataset_hash=ctx.dataset_hash,
            ),
            request_id=f"campaign:{w.campaign.id}",
            retention_days=self.retention_days,
            campaign=CampaignRef(campaign_id=w.campaign.id, item_id=w.item.id),
            held_for_review=review,
        )
        with delivery:
            compliance = w.report or {}
            for fmt in w.spec.formats:
                delivery.add(
                    w.composed.image,
                    fmt=fmt,
                    drawing=drawing,
                    compliance=compliance,
                    settings=settings,
                )
            motion = w.spec.motion if self.render_loop is not None else None
            if motion is not None:
                delivery.add(
                    Motion(self._motion_frames(w, ctx), fps=motion.fps),
                    fmt=motion.format,
                    drawing=drawing,
                    compliance=compliance,
                    settings={**settings, "motion": motion.model_dump()},
                )
            kept = delivery.commit(
                self.sessions,
                then=lambda session: finish(
                    session,
                    w.item.id,
                    owner=self.owner,
                    state=ItemState.REVIEW if review else ItemState.DONE,
                    attempts=w.attempt + 1,
                    seed=w.seed,
                    asset_ids=delivery.asset_ids,
                    compliance=w.report,
                ),
            )
        if not kept:
            # Another worker took the item over (our lease expired): its result counts, and
            # this worker's files are gone with the rolled-back rows.
            log.warning("item %s was taken over; discarded this worker's files", w.item.key)

    def _motion_frames(self, w: _Work, ctx: BrandContext) -> list[Image.Image]:
        assert self.render_loop is not None and w.spec.motion is not None
        job = self._job(w)
        seed_to = item_seed(int(w.spec.seed or 0), w.item.key + ":loop", w.attempt)
        frames = []
        for png in self.render_loop(job, w.spec.motion.frame_count, seed_to):
            frame = Image.open(io.BytesIO(png)).convert("RGB")
            frames.append(_compose(w, ctx, frame).image.convert("RGB"))
        return frames


def _spec_input(spec: dict[str, Any]) -> dict[str, Any]:
    return dict(spec)


@dataclass(frozen=True)
class _Plain:
    """A background delivered as it is (a version registered without a brand kit)."""

    image: Image.Image
    text_boxes: tuple[tuple[int, int, int, int], ...] = ()
    logo_box: tuple[int, int, int, int] | None = None
    layout: dict[str, Any] = field(default_factory=dict)


def _compose(w: _Work, ctx: BrandContext, drawn: Image.Image) -> Any:
    """The item's asset: the drawn image fitted to the channel's size, with the brand's logo and
    texts composed on top (`serving.delivery.compose`)."""
    from serving.delivery.compose import compose, fit_background

    background = fit_background(drawn, (w.item.width, w.item.height))
    if ctx.kit is None:
        return _Plain(background)
    values = w.item.values or {}
    return compose(
        background,
        ctx.kit,
        ratio=w.item.ratio,
        headline=fill(w.spec.headline, w.item.brand, values),
        cta=fill(w.spec.cta, w.item.brand, values),
        logo=ctx.logo,
        font_path=ctx.font,
    )


def run_until_idle(worker: CampaignWorker, *, limit: int = 4, idle_s: float = 0.0) -> int:
    """Drain the queue (for tests and `brandforge campaign run`); returns items processed."""
    total = 0
    while True:
        n = worker.run_once(limit)
        total += n
        if n == 0:
            if idle_s <= 0:
                return total
            time.sleep(idle_s)


__all__ = ["CampaignWorker", "run_until_idle"]
