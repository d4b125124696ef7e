"""Live generation: `POST /v1/generate`.

    caller → champion (or, during a live rollout, the canary for its share of clients)
           → the generator renders → each image is delivered (scored, marked, encoded, stored)
           → metrics and the request log the rollout controller judges

A canary that fails to render falls back to the champion, so the client gets images and the
canary gets the failure on its record. In shadow mode the canary renders a copy of the request
in the background and only its measurements are kept.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response

from registry.sampler import Sampler, sampling
from serving.admission import admit_request, check_cost
from serving.api.deps import CallerDep, ServicesDep
from serving.api.docs import errors
from serving.api.policy import refuse_if_banned, texts_of
from serving.api.schemas import GenerateRequest
from serving.api.services import Services
from serving.api.timing import STAGES, generator_stages, server_timing
from serving.catalog import model_id, model_name
from serving.delivery.deliver import Drawing, Origin, deliver_live, score_image
from serving.errors import DeadlineExceeded, Invalid, Overloaded, Unavailable
from serving.generator import ImageJob, ModelNotFound, Rendered
from serving.rollout.split import assign_variant
from serving.scheduler import DEADLINE_HEADER, Ticket, deadline_budget_s, within

log = logging.getLogger(__name__)
router = APIRouter(tags=["generate"])


@dataclass
class Served:
    """Which version drew the images, and what it drew."""

    variant: str
    version: str
    rendered: list[Rendered]
    width: int
    height: int
    steps: int
    guidance: float


@router.post("/v1/generate", responses=errors(401, 403, 404, 409, 413, 422, 429, 503, 504))
async def generate(
    body: GenerateRequest,
    request: Request,
    response: Response,
    services: ServicesDep,
    caller: CallerDep,
) -> dict[str, Any]:
    """Generate `n` images with the brand's champion (or, during a rollout, the canary for the
    rollout's share of clients); each image is scored and stored. Without `width`/`height` the
    served version's native size is used; each version has a largest allowed side. The
    `X-Request-Deadline-Ms` header (1,000 ms up to the server's limit) sets how long the request
    may wait and draw before it is dropped with a 504; without it, the server's default.
    The `Server-Timing` header of the answer says where the time went: `queue`, `render`,
    `score`, `encode`, `store` and `total` (ms)."""
    started = time.perf_counter()
    caller.require("generate", body.brand)
    ticket = Ticket.start(caller.name, _budget_s(services, request))
    await asyncio.to_thread(
        admit_request, services.sessions, services.admission, caller, body.brand, images=body.n
    )
    champion = await asyncio.to_thread(services.catalog.champion, body.brand)
    rollout = await asyncio.to_thread(services.rollouts.current, body.brand)
    variant, version = "champion", champion
    if rollout is not None and rollout.mode == "live":
        # Sticky per client: the X-Client-Id header, else the API key's name.
        client_id = (request.headers.get("x-client-id") or caller.name)[:128]
        if assign_variant(client_id, rollout.id, services.rollouts.weight(rollout)) == "canary":
            variant, version = "canary", rollout.canary_version
    await asyncio.to_thread(
        refuse_if_banned,
        services,
        caller,
        brand=body.brand,
        route="generate",
        find=texts_of(body.prompt, body.negative_prompt),
        versions=[version, champion],  # a failed canary falls back to the champion
    )
    base_seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    served = await _serve(services, body, base_seed, variant, version, champion, rollout, ticket)
    if rollout is not None and rollout.mode == "shadow":
        _start_shadow(services, body, base_seed, rollout, ticket)
    request_id = uuid.uuid4().hex
    stages = generator_stages(served.rendered)
    images = await asyncio.to_thread(_deliver, services, body, served, request_id, stages)
    scores = [i["compliance"]["score"] for i in images if i["compliance"]["score"] is not None]
    passed = [
        bool(i["compliance"]["passed"]) for i in images if i["compliance"]["passed"] is not None
    ]
    labels = {"brand": body.brand, "version": served.version, "variant": served.variant}
    for r in served.rendered:
        services.metrics.batch(labels, r.batch_size)
    for score in scores:
        services.metrics.compliance(labels, score)
    for stage in STAGES:
        services.metrics.stage(labels, stage, stages[stage])
    elapsed = time.perf_counter() - started
    services.metrics.request(labels, "ok", elapsed)
    await _record(
        services,
        body.brand,
        served.version,
        served.variant,
        rollout,
        elapsed,
        len(images),
        scores,
        passed,
    )
    response.headers["Server-Timing"] = server_timing(stages, time.perf_counter() - started)
    return {
        "request_id": request_id,
        "model": {
            "name": model_name(body.brand),
            "version": served.version,
            "variant": served.variant,
        },
        "images": images,
    }


async def _serve(
    services: Services,
    body: GenerateRequest,
    base_seed: int,
    variant: str,
    version: str,
    champion: str,
    rollout: Any,
    ticket: Ticket,
) -> Served:
    """Render with the chosen version; a failed canary falls back to the champion (not when
    the queue is full or the deadline passed: neither is the version's fault)."""
    try:
        return await _render(services, body, base_seed, variant, version, rollout, ticket)
    except (Invalid, Overloaded, DeadlineExceeded):
        raise
    except Exception as err:  # noqa: BLE001 (recorded; a failed canary falls back below)
        if variant != "canary":
            raise _failed(err) from None
    try:
        return await _render(services, body, base_seed, "champion", champion, rollout, ticket)
    except (Invalid, Overloaded, DeadlineExceeded):
        raise
    except Exception as err:  # noqa: BLE001
        raise _failed(err) from None


def _deliver(
    services: Services,
    body: GenerateRequest,
    served: Served,
    request_id: str,
    stages: dict[str, float],
) -> list[dict[str, Any]]:
    """Score, mark, encode and store every image (`serving.delivery`): all or none. The
    seconds of each of those stages go into `stages`."""
    mid = model_id(body.brand, served.version)
    context = services.catalog.context(mid)
    origin = Origin(
        brand=body.brand,
        model_name=model_name(body.brand),
        model_version=served.version,
        variant=served.variant,
        dataset_hash=context.dataset_hash,
    )
    pictures = [
        (
            r.image(),
            Drawing(
                prompt=body.prompt,
                negative_prompt=body.negative_prompt or "",
                seed=r.seed,
                steps=served.steps,
                guidance=served.guidance,
            ),
        )
        for r in served.rendered
    ]
    delivered = deliver_live(
        pictures,
        fmt=body.format,
        kit=context.kit,
        origin=origin,
        request_id=request_id,
        store=services.store,
        sessions=services.sessions,
        retention_days=services.retention_days,
        seconds=stages,
    )
    return [
        {
            "asset_id": d.asset_id,
            "url": f"/v1/assets/{d.asset_id}",
            "seed": d.seed,
            "compliance": d.compliance,
        }
        for d in delivered
    ]


def _sampling(services: Services, body: GenerateRequest, mid: str) -> tuple[int, float]:
    """Steps and guidance: the request's, else the server's override, else those the version
    was evaluated with (`registry.sampler`)."""
    config = services.config
    requested = Sampler(body.steps, body.guidance)
    if requested.steps and requested.guidance is not None:
        return requested.steps, requested.guidance  # no registry read needed
    return sampling(
        requested,
        Sampler(config.default_steps, config.default_guidance),
        services.catalog.sampler(mid),
    )


def _size(services: Services, body: GenerateRequest, mid: str) -> tuple[int, int]:
    """The request's size for this version: its native size by default, never above its
    largest allowed side."""
    steps, _ = _sampling(services, body, mid)
    if steps > services.config.max_steps:
        raise Invalid(f"steps {steps} is above this server's limit of {services.config.max_steps}")
    limits = services.catalog.sizes(mid)
    width, height = body.width or limits.native, body.height or limits.native
    for field, value in (("width", width), ("height", height)):
        if value > limits.max_side:
            raise Invalid(
                f"{field} {value} is above the largest side {limits.max_side} px that "
                f"{mid} allows (its native size is {limits.native} px)"
            )
    check_cost(
        services.admission,
        brand=body.brand,
        model=mid,
        native=limits.native,
        version_limit=limits.max_cost,
        size=(width, height),
        steps=steps,
        images=body.n,
    )
    return width, height


def _budget_s(services: Services, request: Request) -> float:
    """Seconds this request may take: X-Request-Deadline-Ms, else the server's default."""
    return deadline_budget_s(
        request.headers.get(DEADLINE_HEADER),
        default_s=services.config.deadline_s,
        max_s=services.config.max_deadline_s,
    )


def _jobs(
    services: Services,
    body: GenerateRequest,
    mid: str,
    base_seed: int,
    size: tuple[int, int],
    sampling: tuple[int, float],
    ticket: Ticket,
) -> list[ImageJob]:
    steps, guidance = sampling
    return [
        ImageJob(
            model_id=mid,
            prompt=body.prompt,
            negative_prompt=body.negative_prompt or "",
            seed=base_seed + i,
            width=size[0],
            height=size[1],
            steps=steps,
            guidance=guidance,
            client=ticket.client,
            deadline=ticket.deadline,
            native=services.catalog.sizes(mid).native,  # read (and cached) by _size
        )
        for i in range(body.n)
    ]


async def _render(
    services: Services,
    body: GenerateRequest,
    base_seed: int,
    variant: str,
    version: str,
    rollout: Any,
    ticket: Ticket,
) -> Served:
    """Ask the generator within the request's deadline; a failure is counted and recorded
    for this variant first (a full queue or a passed deadline is counted only)."""
    mid = model_id(body.brand, version)
    size = await asyncio.to_thread(_size, services, body, mid)
    sampling = _sampling(services, body, mid)  # read (and cached) by _size
    jobs = _jobs(services, body, mid, base_seed, size, sampling, ticket)
    started = time.perf_counter()
    try:
        rendered = await within(services.renderer.render(jobs), ticket)
    except Exception as err:
        labels = {"brand": body.brand, "version": version, "variant": variant}
        services.metrics.error(labels, type(err).__name__)
        if isinstance(err, (Overloaded, DeadlineExceeded)):
            raise
        log.warning("generation failed for %s (%s): %s", mid, variant, err)
        elapsed = time.perf_counter() - started
        await _record(services, body.brand, version, variant, rollout, elapsed, 0, None, [])
        raise
    return Served(variant, version, rendered, size[0], size[1], *sampling)


def _failed(err: Exception) -> Unavailable:
    cause = "model could not be loaded" if _is_model_not_found(err) else "error"
    return Unavailable(f"generation failed ({cause}): {str(err)[:300]}")


def _is_model_not_found(err: BaseException) -> bool:
    # Ray re-raises a replica's exception as a subclass of both RayTaskError and the cause.
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ModelNotFound):
            return True
        seen = getattr(seen, "cause", None) or seen.__cause__
    return False


async def _record(
    services: Services,
    brand: str,
    version: str,
    variant: str,
    rollout: Any,
    elapsed: float,
    images: int,
    scores: list[float] | None,
    passed: list[bool],
) -> None:
    """One request_log row for the rollout analysis; `scores` None: the request failed."""
    await asyncio.to_thread(
        services.rollouts.record_request,
        brand,
        version,
        variant,
        ok=scores is not None,
        latency_s=elapsed,
        images=images,
        compliance_scores=scores or [],
        compliance_passed=passed,
        rollout_id=rollout.id if rollout is not None else None,
    )


def _start_shadow(
    services: Services, body: GenerateRequest, base_seed: int, rollout: Any, ticket: Ticket
) -> None:
    task = asyncio.create_task(_shadow(services, body, base_seed, rollout, ticket))
    services.background.add(task)
    task.add_done_callback(services.background.discard)


async def _shadow(
    services: Services, body: GenerateRequest, base_seed: int, rollout: Any, ticket: Ticket
) -> None:
    """Shadow mode: the canary renders a copy of the request (as the same key, within the same
    deadline); only measurements remain."""
    started = time.perf_counter()
    version = rollout.canary_version
    try:
        served = await _render(services, body, base_seed, "canary", version, rollout, ticket)
    except Exception:  # noqa: BLE001 (recorded by _render; nobody waits for a shadow)
        return
    kit = await asyncio.to_thread(
        lambda: services.catalog.context(model_id(body.brand, version)).kit
    )
    scores: list[float] = []
    passed: list[bool] = []
    if kit is not None:
        for r in served.rendered:
            report = await asyncio.to_thread(score_image, r.image(), kit)
            scores.append(report["score"])
            passed.append(bool(report["passed"]))
    elapsed = time.perf_counter() - started
    await _record(
        services,
        body.brand,
        version,
        "canary",
        rollout,
        elapsed,
        len(served.rendered),
        scores,
        passed,
    )
