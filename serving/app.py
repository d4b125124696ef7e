"""The Ray Serve application: an HTTP ingress (FastAPI) in front of the generator deployment.

    client ──HTTP──► Ingress (auth, validation, model resolution, compliance, assets, metrics)
                        │  handle.options(multiplexed_model_id="brandforge-acme/3")
                        ▼
                     Generator replicas (one base pipeline each, LRU of adapters, @serve.batch)

The ingress resolves a brand to the registry's `champion` version (cached for a few seconds),
asks the generator for the images (Ray routes the call to a replica that already holds that
version when it can), scores every image with the evaluation package's compliance report against
the brand kit the version was registered with, stores it, and answers with asset ids.
"""

# No `from __future__ import annotations` here: Ray pickles the deployment classes by value, and
# FastAPI must resolve the endpoints' annotations (Request, GenerateRequest) in the replica.
import asyncio
import io
import logging
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from serving.campaigns.queue import CampaignSpec
from serving.generator import Engine, ImageJob, ModelNotFound, Rendered, group

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one running application (CLI options and environment)."""

    dev: bool = False  # no API key needed (refused unless asked for)
    max_adapters: int = 4  # resident adapters per generator replica (LRU)
    max_batch_size: int = 4
    batch_wait_s: float = 0.05
    generator_replicas: int = 1
    default_steps: int = 20
    default_guidance: float = 2.0
    alias_ttl_s: float = 2.0  # how long a resolved champion is trusted before asking again
    env: tuple[tuple[str, str], ...] = ()  # tracking URI, stores: what every replica must see
    rollout: dict[str, Any] = field(default_factory=dict)  # params.yaml `rollout:` (thresholds)
    campaign_workers: int = 1  # CampaignRunner replicas (0: campaigns queue but nothing runs)
    campaign_claim: int = 4  # items a worker takes per round (they render as one batch)
    campaign_poll_s: float = 0.5  # how often an idle worker looks at the queue
    campaign_lease_s: float = 120.0  # an item a dead worker held goes back after this


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    brand: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    prompt: str = Field(min_length=1, max_length=2000)
    negative_prompt: str | None = Field(None, max_length=2000)
    n: int = Field(1, ge=1, le=8)
    width: int = Field(512, ge=16, le=2048, multiple_of=8)
    height: int = Field(512, ge=16, le=2048, multiple_of=8)
    steps: int | None = Field(None, ge=1, le=150)
    guidance: float | None = Field(None, ge=0, le=30)
    seed: int | None = Field(None, ge=0, lt=2**63)
    format: Literal["png", "jpeg", "webp", "heic", "svg"] = "png"


class RolloutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    brand: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=32, pattern=r"^[0-9]+$")
    steps: list[int] | None = None  # default: params.yaml rollout.steps
    min_requests: int | None = Field(None, ge=1)
    min_seconds: float | None = Field(None, ge=0)
    mode: Literal["live", "shadow"] = "live"


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    impressions: int = Field(0, ge=0, le=1_000_000)
    clicks: int = Field(0, ge=0, le=1_000_000)


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    reason: str | None = Field(None, max_length=500)


class AbortRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("aborted by API", min_length=1, max_length=500)


def _apply_env(env: tuple[tuple[str, str], ...]) -> None:
    from brandforge.settings import get_settings

    os.environ.update(dict(env))
    get_settings.cache_clear()


# ---------------------------------------------------------------------------------------------
# Generator


def generator_deployment(config: ServeConfig) -> Any:
    """The generator deployment class, with the multiplexing and batching sizes configured."""

    @serve.deployment(
        name="Generator",
        num_replicas=config.generator_replicas,
        max_ongoing_requests=64,
        ray_actor_options={"num_cpus": 0},
    )
    class Generator:
        def __init__(self) -> None:
            _apply_env(config.env)
            self.engine = Engine()
            self.live = 0  # live requests in this replica; campaign work waits for none

        @serve.multiplexed(max_num_models_per_replica=config.max_adapters)
        async def get_model(self, model_id: str) -> Any:
            return await asyncio.to_thread(self.engine.load_adapter, model_id)

        @serve.batch(max_batch_size=config.max_batch_size, batch_wait_timeout_s=config.batch_wait_s)
        async def render_one(self, jobs: list[ImageJob]) -> list[Rendered]:
            results: list[Rendered | None] = [None] * len(jobs)
            for indices in group(jobs):
                rendered = await asyncio.to_thread(self.engine.render, [jobs[i] for i in indices])
                for i, r in zip(indices, rendered, strict=True):
                    results[i] = r
            return [r for r in results if r is not None]

        async def generate(self, jobs: list[ImageJob], background: bool = False) -> list[Rendered]:
            """Render `jobs` (one model version). Live requests go first: campaign work
            (`background`) joins the batch queue only while no live request is waiting, so a
            campaign never starves the API; it still batches with itself and with live jobs."""
            model_id = serve.get_multiplexed_model_id()
            handle = await self.get_model(model_id)  # resident while this call runs
            if background:
                while self.live > 0:
                    await asyncio.sleep(0.005)
            else:
                self.live += 1
            try:
                out = await asyncio.gather(*(self.render_one(job) for job in jobs))
            finally:
                if not background:
                    self.live -= 1
            del handle
            return list(out)

        async def render_loop(self, job: ImageJob, frames: int, seed_to: int) -> list[bytes]:
            """The frames of a looping clip for a campaign (`Engine.render_loop`)."""
            handle = await self.get_model(serve.get_multiplexed_model_id())
            while self.live > 0:
                await asyncio.sleep(0.005)
            out = await asyncio.to_thread(
                self.engine.render_loop, job, frames=frames, seed_to=seed_to
            )
            del handle
            return out

        def resident(self) -> dict[str, list[str]]:
            return self.engine.resident()

    return Generator


# ---------------------------------------------------------------------------------------------
# Ingress

api = FastAPI(
    title="BrandForge",
    version="0.1.0",
    description="Brand-safe generative marketing visuals: generate on-brand images with the "
    "brand's production model, each scored for brand compliance.",
)


def ingress_deployment(config: ServeConfig) -> Any:
    @serve.deployment(name="Ingress", max_ongoing_requests=256)
    @serve.ingress(api)
    class Ingress:
        def __init__(self, generator: Any, runner: Any = None) -> None:
            from brandforge.settings import get_settings
            from serving.db.models import engine_for, init_db, session_factory
            from serving.api.prometheus import Metrics

            _apply_env(config.env)
            self.generator = generator
            self.runner = runner
            settings = get_settings()
            self.db = engine_for(settings.serving_db)
            init_db(self.db)
            self.sessions = session_factory(self.db)
            from serving.assets.store import AssetStore

            self.store = AssetStore.from_settings(settings)
            self.retention_days = settings.retention_days
            self.metrics = Metrics()
            from brandforge.params import RolloutParams
            from serving.rollout.controller import RolloutController

            self.rollout_params = RolloutParams(**config.rollout)
            self.rollouts = RolloutController(self.sessions, self.rollout_params)
            self._background: set[asyncio.Task[None]] = set()
            # The controller judges every running rollout on a timer; all of its state is in the
            # database, so a restarted server carries on where it was.
            self._stop = threading.Event()
            threading.Thread(target=self._control_loop, name="rollouts", daemon=True).start()
            self._aliases: dict[str, tuple[float, dict[str, str | None]]] = {}
            self._kits: dict[str, Any] = {}

        def _control_loop(self) -> None:
            while not self._stop.wait(self.rollout_params.check_every_s):
                try:
                    decisions = self.rollouts.evaluate_all()
                except Exception:  # noqa: BLE001 (logged; the next tick tries again)
                    log.exception("rollout controller")
                    continue
                if decisions:
                    self._aliases.clear()  # aliases may have moved

        # -- access ---------------------------------------------------------------------

        def _principal(self, request: Request, role: str, brand: str | None) -> str:
            """The caller's key name, after checking role and brand; raises 401/403."""
            return str(self._caller(request, role, brand).name)

        def _caller(self, request: Request, role: str, brand: str | None) -> Any:
            """The caller's `Principal` (name, roles, brands) after checking role and brand."""
            from serving.auth import AuthError, Principal, authenticate

            if config.dev:
                return Principal("dev", frozenset({"admin"}), frozenset({"*"}))
            header = request.headers.get("authorization", "")
            key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
            key = key or request.headers.get("x-api-key")
            with self.sessions() as session:
                try:
                    principal = authenticate(session, key)
                    session.commit()
                except AuthError as err:
                    raise HTTPException(401, str(err)) from None
            if principal is None:
                raise HTTPException(401, "missing or invalid API key (Authorization: Bearer <key>)")
            if not principal.can(role, brand):
                raise HTTPException(
                    403,
                    f"key {principal.name!r} may not {role}"
                    + (f" for brand {brand!r}" if brand else ""),
                )
            return principal

        # -- models ---------------------------------------------------------------------

        def _aliases_of(self, brand: str) -> dict[str, str | None]:
            """{"champion": v, "canary": v, "challenger": v} of a brand; 404 if unknown."""
            from registry.core import RegistryError, client, versions

            cached = self._aliases.get(brand)
            if cached and time.monotonic() - cached[0] < config.alias_ttl_s:
                return cached[1]
            name = f"brandforge-{brand}"
            try:
                found = versions(client(), name)
            except RegistryError:
                raise HTTPException(404, f"unknown brand {brand!r}: no model {name}") from None
            aliases: dict[str, str | None] = {a: None for a in ("champion", "canary", "challenger")}
            for v in found:
                for a in v.aliases:
                    aliases[a] = v.version
            self._aliases[brand] = (time.monotonic(), aliases)
            return aliases

        def _context(self, model_id: str) -> Any:
            """The version's brand kit, logo, font and dataset hash (`registry_context`)."""
            from serving.campaigns.worker import registry_context

            if model_id not in self._kits:
                self._kits[model_id] = registry_context(model_id)
            return self._kits[model_id]

        def _champion(self, brand: str) -> str:
            """The brand's champion version; 404 for an unknown brand, 409 without one."""
            champion = self._aliases_of(brand)["champion"]
            if champion is None:
                raise HTTPException(
                    409,
                    f"brand {brand!r} has no champion yet: promote a version with "
                    f"`brandforge registry promote brandforge-{brand} --to champion`",
                )
            return champion

        def _kit(self, model_id: str) -> Any:
            return self._context(model_id).kit

        # -- endpoints ------------------------------------------------------------------

        @api.get("/healthz", tags=["ops"])
        async def healthz(self) -> dict[str, str]:
            """The process is up."""
            return {"status": "ok"}

        @api.get("/readyz", tags=["ops"])
        async def readyz(self) -> JSONResponse:
            """The generator answers and the registry is reachable."""
            from registry.core import client, model_names

            try:
                resident = await asyncio.wait_for(self.generator.resident.remote(), 10)
                await asyncio.to_thread(lambda: model_names(client()))
            except Exception as err:  # noqa: BLE001 (any failure means "not ready")
                return JSONResponse({"status": "not ready", "reason": str(err)[:300]}, 503)
            return JSONResponse({"status": "ready", "resident": resident})

        @api.get("/metrics", tags=["ops"])
        async def prometheus(self, request: Request) -> PlainTextResponse:
            """Prometheus metrics: requests, latency, batch sizes, errors, compliance scores."""
            self._principal(request, "deploy", None)
            body, content_type = self.metrics.render()
            return PlainTextResponse(body, media_type=content_type)

        @api.get("/v1/models", tags=["models"])
        async def models(self, request: Request) -> dict[str, Any]:
            """Brands with their champion, canary and challenger versions."""
            from registry.core import client, model_names

            self._principal(request, "generate", None)
            names = await asyncio.to_thread(lambda: model_names(client()))
            brands = []
            for name in names:
                if not name.startswith("brandforge-") or name == "brandforge-bases":
                    continue
                brand = name.removeprefix("brandforge-")
                aliases = await asyncio.to_thread(self._aliases_of, brand)
                rollout = await asyncio.to_thread(self.rollouts.current, brand)
                state = None
                if rollout is not None:
                    state = {
                        "id": rollout.id,
                        "mode": rollout.mode,
                        "canary": rollout.canary_version,
                        "step": rollout.step_index,
                        "weight": self.rollouts.weight(rollout),
                    }
                ctr = await asyncio.to_thread(self._click_through, brand, None)
                brands.append(
                    {
                        "brand": brand,
                        "model": name,
                        **aliases,
                        "rollout": state,
                        "click_through": ctr,
                    }
                )
            return {"models": brands}

        @api.post("/v1/generate", tags=["generate"])
        async def generate(self, body: GenerateRequest, request: Request) -> dict[str, Any]:
            """Generate `n` images with the brand's champion (or, during a rollout, the canary
            for the rollout's share of clients); each image is scored and stored."""
            from serving.rollout.controller import assign_variant

            started = time.perf_counter()
            who = self._principal(request, "generate", body.brand)
            champion = await asyncio.to_thread(self._champion, body.brand)
            rollout = await asyncio.to_thread(self.rollouts.current, body.brand)
            variant, version = "champion", champion
            if rollout is not None and rollout.mode == "live":
                # Sticky per client: the X-Client-Id header, else the API key's name.
                client_id = request.headers.get("x-client-id") or who
                if assign_variant(client_id, rollout.id, self.rollouts.weight(rollout)) == "canary":
                    variant, version = "canary", rollout.canary_version
            base_seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
            jobs = self._jobs(body, f"brandforge-{body.brand}/{version}", base_seed)
            try:
                rendered = await self._render(body.brand, version, variant, jobs, rollout)
            except Exception as err:  # noqa: BLE001 (a failed canary falls back below)
                if variant != "canary":
                    raise self._failed(body.brand, version, variant, err) from None
                # The client gets an image from the champion; the canary gets the failure.
                variant, version = "champion", champion
                jobs = self._jobs(body, f"brandforge-{body.brand}/{version}", base_seed)
                try:
                    rendered = await self._render(body.brand, version, variant, jobs, rollout)
                except Exception as err2:  # noqa: BLE001
                    raise self._failed(body.brand, version, variant, err2) from None
            if rollout is not None and rollout.mode == "shadow":
                shadow = self._jobs(
                    body, f"brandforge-{body.brand}/{rollout.canary_version}", base_seed
                )
                task = asyncio.create_task(self._shadow(body, rollout, shadow))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            model_id = f"brandforge-{body.brand}/{version}"
            kit = await asyncio.to_thread(self._kit, model_id)
            request_id = uuid.uuid4().hex
            images = await asyncio.to_thread(
                self._store, body, rendered, kit, request_id, model_id, variant
            )
            scores = [
                i["compliance"]["score"] for i in images if i["compliance"]["score"] is not None
            ]
            passed = [
                bool(i["compliance"]["passed"])
                for i in images
                if i["compliance"]["passed"] is not None
            ]
            labels = {"brand": body.brand, "version": version, "variant": variant}
            for r in rendered:
                self.metrics.batch(labels, r.batch_size)
            for score in scores:
                self.metrics.compliance(labels, score)
            elapsed = time.perf_counter() - started
            self.metrics.request(labels, "ok", elapsed)
            await self._record(
                body.brand, version, variant, rollout, elapsed, len(images), scores, passed
            )
            return {
                "request_id": request_id,
                "model": {
                    "name": f"brandforge-{body.brand}",
                    "version": version,
                    "variant": variant,
                },
                "images": images,
            }

        def _jobs(self, body: GenerateRequest, model_id: str, base_seed: int) -> list[ImageJob]:
            return [
                ImageJob(
                    model_id=model_id,
                    prompt=body.prompt,
                    negative_prompt=body.negative_prompt or "",
                    seed=base_seed + i,
                    width=body.width,
                    height=body.height,
                    steps=body.steps or config.default_steps,
                    guidance=body.guidance
                    if body.guidance is not None
                    else config.default_guidance,
                )
                for i in range(body.n)
            ]

        async def _render(
            self, brand: str, version: str, variant: str, jobs: list[ImageJob], rollout: Any
        ) -> list[Rendered]:
            """Ask the generator; a failure is counted and recorded for this variant first."""
            started = time.perf_counter()
            try:
                rendered: list[Rendered] = await self.generator.options(
                    multiplexed_model_id=jobs[0].model_id
                ).generate.remote(jobs)
            except Exception as err:
                labels = {"brand": brand, "version": version, "variant": variant}
                self.metrics.error(labels, type(err).__name__)
                log.warning("generation failed for %s (%s): %s", jobs[0].model_id, variant, err)
                elapsed = time.perf_counter() - started
                await self._record(brand, version, variant, rollout, elapsed, 0, None, [])
                raise
            return rendered

        async def _record(
            self,
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
                self.rollouts.record_request,
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

        def _failed(self, brand: str, version: str, variant: str, err: Exception) -> HTTPException:
            cause = "model could not be loaded" if "ModelNotFound" in repr(err) else "error"
            return HTTPException(503, f"generation failed ({cause}): {str(err)[:300]}")

        async def _shadow(self, body: GenerateRequest, rollout: Any, jobs: list[ImageJob]) -> None:
            """Shadow mode: the canary renders a copy of the request; only measurements remain."""
            import numpy as np
            from PIL import Image

            from evaluation.compliance import compliance_report

            started = time.perf_counter()
            version = rollout.canary_version
            try:
                rendered = await self._render(body.brand, version, "canary", jobs, rollout)
            except Exception:  # noqa: BLE001 (recorded by _render; nobody waits for a shadow)
                return
            kit = await asyncio.to_thread(self._kit, jobs[0].model_id)
            scores: list[float] = []
            passed: list[bool] = []
            if kit is not None:
                for r in rendered:
                    pixels = np.asarray(Image.open(io.BytesIO(r.png)).convert("RGB"))
                    report = await asyncio.to_thread(compliance_report, pixels, kit)
                    scores.append(report.score)
                    passed.append(report.passed)
            elapsed = time.perf_counter() - started
            await self._record(
                body.brand, version, "canary", rollout, elapsed, len(rendered), scores, passed
            )

        def _store(
            self,
            body: GenerateRequest,
            rendered: list[Rendered],
            kit: Any,
            request_id: str,
            model_id: str,
            variant: str,
        ) -> list[dict[str, Any]]:
            import numpy as np
            from PIL import Image

            from evaluation.compliance import compliance_report
            from serving.assets.store import asset_key, expiry_for
            from serving.db.models import Asset, new_asset_id, utcnow
            from serving.delivery.formats import EXTENSIONS, encode_still
            from serving.delivery.manifest import build_manifest, manifest_xmp
            from serving.delivery.watermark import embed_watermark, watermark_payload
            from serving.delivery.redact import redact

            out = []
            name, version = model_id.rsplit("/", 1)
            dataset_hash = self._context(model_id).dataset_hash
            now = utcnow()
            rows = []
            for r in rendered:
                image = Image.open(io.BytesIO(r.png)).convert("RGB")
                if kit is not None:
                    report = compliance_report(np.asarray(image), kit).to_dict()
                    compliance = {k: report[k] for k in ("score", "passed", "violations")}
                else:
                    compliance = {
                        "score": None,
                        "passed": None,
                        "violations": [],
                        "reason": "the version has no brand kit",
                    }
                asset_id = new_asset_id()
                manifest = build_manifest(
                    asset_id=asset_id,
                    brand=body.brand,
                    model_name=name,
                    model_version=version,
                    variant=variant,
                    dataset_hash=dataset_hash,
                    created_at=now,
                )
                marked = embed_watermark(image, watermark_payload(asset_id))
                data = encode_still(marked, body.format, xmp=manifest_xmp(manifest))
                key = asset_key(body.brand, asset_id, EXTENSIONS[body.format])
                self.store.put(key, data)
                rows.append(
                    Asset(
                        id=asset_id,
                        request_id=request_id,
                        brand=body.brand,
                        model_name=name,
                        model_version=version,
                        variant=variant,
                        prompt=redact(body.prompt),
                        negative_prompt=redact(body.negative_prompt or ""),
                        seed=r.seed,
                        width=body.width,
                        height=body.height,
                        steps=body.steps or config.default_steps,
                        guidance=body.guidance
                        if body.guidance is not None
                        else config.default_guidance,
                        format=body.format,
                        path=key,
                        compliance=compliance,
                        provenance=manifest,
                        created_at=now,
                        expires_at=expiry_for(body.brand, now, self.retention_days),
                    )
                )
                out.append(
                    {
                        "asset_id": asset_id,
                        "url": f"/v1/assets/{asset_id}",
                        "seed": r.seed,
                        "compliance": compliance,
                    }
                )
            with self.sessions() as session:
                session.add_all(rows)
                session.commit()
            return out

        @api.post("/v1/rollouts", tags=["rollouts"], status_code=201)
        async def start_rollout(self, body: RolloutRequest, request: Request) -> dict[str, Any]:
            """Start a canary rollout of a version that passed its gates (the `canary` alias moves
            to it); the controller then walks it through the steps or rolls it back."""
            who = self._principal(request, "deploy", body.brand)
            try:
                await asyncio.to_thread(
                    self.rollouts.start,
                    body.brand,
                    body.version,
                    steps=body.steps,
                    min_requests=body.min_requests,
                    min_seconds=body.min_seconds,
                    mode=body.mode,
                    actor=who,
                )
            except ValueError as err:
                raise HTTPException(409, str(err)) from None
            self._aliases.pop(body.brand, None)
            return await asyncio.to_thread(self.rollouts.get, body.brand)

        @api.get("/v1/rollouts/{brand}", tags=["rollouts"])
        async def rollout_state(self, brand: str, request: Request) -> dict[str, Any]:
            """State, step, weight and the measurements behind every decision."""
            self._principal(request, "deploy", brand)
            state = await asyncio.to_thread(self.rollouts.get, brand)
            versions = [state.get("champion_version"), state.get("canary_version")]
            state["click_through"] = await asyncio.to_thread(self._click_through, brand, versions)
            return state

        def _click_through(self, brand: str, versions: list[Any] | None) -> dict[str, Any]:
            from serving.assets.events import click_through

            with self.sessions() as session:
                return click_through(session, brand, versions)

        @api.post("/v1/rollouts/{brand}/abort", tags=["rollouts"])
        async def abort_rollout(
            self, brand: str, body: AbortRequest, request: Request
        ) -> dict[str, Any]:
            """Roll back at once: the canary alias goes, all traffic to the champion."""
            who = self._principal(request, "deploy", brand)
            try:
                await asyncio.to_thread(self.rollouts.abort, brand, actor=who, reason=body.reason)
            except ValueError as err:
                raise HTTPException(409, str(err)) from None
            self._aliases.pop(brand, None)
            return await asyncio.to_thread(self.rollouts.get, brand)

        @api.get("/v1/assets/{asset_id}", tags=["generate"])
        async def asset(self, asset_id: str, request: Request) -> Response:
            """The stored file (keys with role `generate` or `review` for the asset's brand).
            Frequently fetched files come from the store's bounded cache."""
            from serving.assets.store import AssetMissing
            from serving.db.models import Asset
            from serving.delivery.formats import MEDIA_TYPES

            with self.sessions() as session:
                row = session.get(Asset, asset_id)
                found = None if row is None else (row.brand, row.path, row.format, row.status)
            role = "review" if self._has_role(request, "review") else "generate"
            if found is None:
                self._principal(request, role, None)
                raise HTTPException(404, f"no asset {asset_id!r}")
            brand, key, fmt, status = found
            self._principal(request, role, brand)
            if status == "deleted":
                raise HTTPException(410, f"asset {asset_id!r} was deleted (retention or erasure)")
            try:
                data = await asyncio.to_thread(self.store.get, key)
            except AssetMissing:
                raise HTTPException(410, f"asset {asset_id!r}: its file is gone") from None
            return Response(data, media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"))

        def _has_role(self, request: Request, role: str) -> bool:
            try:
                return bool(self._caller(request, role, None))
            except HTTPException:
                return False

        @api.post("/v1/assets/{asset_id}/events", tags=["generate"], status_code=201)
        async def asset_events(
            self, asset_id: str, body: EventsRequest, request: Request
        ) -> dict[str, Any]:
            """Record impressions and clicks of a delivered asset (for click-through rates per
            model version in /v1/models and the rollout analysis)."""
            from serving.db.models import Asset, AssetEvent

            with self.sessions() as session:
                row = session.get(Asset, asset_id)
                if row is None:
                    self._principal(request, "generate", None)
                    raise HTTPException(404, f"no asset {asset_id!r}")
                self._principal(request, "generate", row.brand)
                for kind, count in (("impression", body.impressions), ("click", body.clicks)):
                    if count:
                        session.add(
                            AssetEvent(
                                asset_id=asset_id,
                                brand=row.brand,
                                model_version=row.model_version,
                                variant=row.variant,
                                kind=kind,
                                count=count,
                            )
                        )
                session.commit()
            return {"asset_id": asset_id, "impressions": body.impressions, "clicks": body.clicks}

        # -- campaigns ------------------------------------------------------------------

        @api.post("/v1/campaigns", tags=["campaigns"], status_code=202)
        async def submit_campaign(self, body: CampaignSpec, request: Request) -> dict[str, Any]:
            """Queue a campaign: the template expanded over its variables, per aspect ratio and
            variant. The model versions are pinned now (the champion; during a live rollout the
            canary for the rollout's share of the items). Returns at once."""
            from serving.campaigns.queue import CampaignError, submit

            who = self._principal(request, "generate", body.brand)
            champion = await asyncio.to_thread(self._champion, body.brand)
            rollout = await asyncio.to_thread(self.rollouts.current, body.brand)
            canary = None
            if rollout is not None and rollout.mode == "live":
                canary = (rollout.canary_version, rollout.id, self.rollouts.weight(rollout))
            base_seed = body.seed if body.seed is not None else secrets.randbelow(2**62)

            def write() -> dict[str, Any]:
                from serving.auth import audit
                from serving.campaigns.queue import progress

                with self.sessions() as session:
                    try:
                        campaign, created = submit(
                            session,
                            body,
                            model_name=f"brandforge-{body.brand}",
                            champion_version=champion,
                            canary=canary,
                            actor=who,
                            base_seed=base_seed,
                        )
                        if created:
                            audit(
                                session,
                                who,
                                "campaign.submit",
                                body.brand,
                                campaign_id=campaign.id,
                                items=body.item_count(),
                            )
                        session.commit()
                    except CampaignError as err:
                        raise HTTPException(err.status, err.message) from None
                    state = progress(session, campaign.id, items=False)
                return {**state, "created": created, "status_url": f"/v1/campaigns/{campaign.id}"}

            return await asyncio.to_thread(write)

        def _campaign(self, request: Request, campaign_id: str, role: str) -> tuple[str, str]:
            """(brand, caller) of a campaign the caller may see; 404 for an unknown id."""
            from serving.db.models import Campaign

            with self.sessions() as session:
                row = session.get(Campaign, campaign_id)
                brand = None if row is None else row.brand
            if brand is None:
                self._principal(request, role, None)
                raise HTTPException(404, f"no campaign {campaign_id!r}")
            return brand, self._principal(request, role, brand)

        @api.get("/v1/campaigns/{campaign_id}", tags=["campaigns"])
        async def campaign_state(
            self, campaign_id: str, request: Request, items: bool = True
        ) -> dict[str, Any]:
            """Progress, counts per state, throughput, ETA and (unless `items=false`) every item
            with its model version, seed, attempts, compliance and assets."""
            from serving.campaigns.queue import progress

            self._campaign(request, campaign_id, "generate")

            def read() -> dict[str, Any]:
                with self.sessions() as session:
                    return progress(session, campaign_id, items=items)

            return await asyncio.to_thread(read)

        @api.delete("/v1/campaigns/{campaign_id}", tags=["campaigns"])
        async def cancel_campaign(self, campaign_id: str, request: Request) -> dict[str, Any]:
            """Cancel: pending items are dropped, items being drawn finish; delivered assets
            stay."""
            from serving.campaigns.queue import CampaignError, cancel, progress

            _, who = self._campaign(request, campaign_id, "generate")

            def write() -> dict[str, Any]:
                with self.sessions() as session:
                    try:
                        cancel(session, campaign_id, actor=who)
                    except CampaignError as err:
                        raise HTTPException(err.status, err.message) from None
                    return progress(session, campaign_id, items=False)

            return await asyncio.to_thread(write)

        # -- review ---------------------------------------------------------------------

        @api.get("/review", tags=["review"], response_class=HTMLResponse)
        async def review_page(self) -> HTMLResponse:
            """The review web page (it asks for a key with role `review`)."""
            from serving.assets.review import review_page, review_page_headers

            return HTMLResponse(review_page(), headers=review_page_headers())

        @api.get("/v1/review", tags=["review"])
        async def review_queue(
            self, request: Request, limit: int = 50, offset: int = 0
        ) -> dict[str, Any]:
            """Assets waiting for a person, oldest first, for the key's brands."""
            from serving.assets.review import review_queue

            caller = self._caller(request, "review", None)
            limit = max(1, min(limit, 200))

            def read() -> dict[str, Any]:
                with self.sessions() as session:
                    return review_queue(
                        session, brands=sorted(caller.brands), limit=limit, offset=max(offset, 0)
                    )

            return await asyncio.to_thread(read)

        @api.post("/v1/review/{asset_id}", tags=["review"])
        async def review_decision(
            self, asset_id: str, body: ReviewRequest, request: Request
        ) -> dict[str, Any]:
            """Approve or reject (with a reason) an asset waiting for review."""
            from serving.assets.review import ReviewError, decide

            caller = self._caller(request, "review", None)

            def write() -> dict[str, Any]:
                with self.sessions() as session:
                    try:
                        out = decide(
                            session,
                            asset_id,
                            approve=body.decision == "approve",
                            reason=body.reason,
                            actor=caller.name,
                            brands=sorted(caller.brands),
                        )
                        session.commit()
                    except ReviewError as err:
                        raise HTTPException(err.status, err.message) from None
                    return out

            return await asyncio.to_thread(write)

    return Ingress


# ---------------------------------------------------------------------------------------------
# Campaign runner


def campaign_runner_deployment(config: ServeConfig) -> Any:
    """Workers that drain the campaign queue through the generator (`serving.campaigns.worker`)."""

    @serve.deployment(
        name="CampaignRunner",
        num_replicas=max(config.campaign_workers, 1),
        max_ongoing_requests=8,
        ray_actor_options={"num_cpus": 0},
    )
    class CampaignRunner:
        def __init__(self, generator: Any) -> None:
            import socket

            from brandforge.settings import get_settings
            from serving.assets.store import AssetStore
            from serving.campaigns.worker import CampaignWorker
            from serving.db.models import engine_for, init_db, session_factory

            _apply_env(config.env)
            settings = get_settings()
            self.generator = generator
            db = engine_for(settings.serving_db)
            init_db(db)
            self.contexts: dict[str, Any] = {}
            self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
            self.worker = CampaignWorker(
                sessions=session_factory(db),
                store=AssetStore.from_settings(settings),
                render=self._render,
                render_loop=self._render_loop,
                context_for=self._context,
                owner=self.owner,
                lease_s=config.campaign_lease_s,
                default_steps=config.default_steps,
                default_guidance=config.default_guidance,
                retention_days=settings.retention_days,
                review_brands=frozenset(settings.review_brands),
            )
            self._stop = threading.Event()
            if config.campaign_workers > 0:
                threading.Thread(target=self._drain, name="campaigns", daemon=True).start()

        def _drain(self) -> None:
            while not self._stop.is_set():
                try:
                    n = self.worker.run_once(config.campaign_claim)
                except Exception:  # noqa: BLE001 (logged; the queue is durable, try again)
                    log.exception("campaign worker round failed")
                    n = 0
                if n == 0:
                    self._stop.wait(config.campaign_poll_s)

        def _render(self, jobs: list[ImageJob]) -> list[Rendered]:
            results: list[Rendered | None] = [None] * len(jobs)
            pending = []
            for indices in group(jobs):
                model_id = jobs[indices[0]].model_id
                call = self.generator.options(multiplexed_model_id=model_id).generate.remote(
                    [jobs[i] for i in indices], True
                )
                pending.append((indices, call))
            for indices, call in pending:
                for i, r in zip(indices, call.result(), strict=True):
                    results[i] = r
            return [r for r in results if r is not None]

        def _render_loop(self, job: ImageJob, frames: int, seed_to: int) -> list[bytes]:
            call = self.generator.options(multiplexed_model_id=job.model_id).render_loop.remote(
                job, frames, seed_to
            )
            out: list[bytes] = call.result()
            return out

        def _context(self, model_id: str) -> Any:
            from serving.campaigns.worker import registry_context

            if model_id not in self.contexts:
                self.contexts[model_id] = registry_context(model_id)
            return self.contexts[model_id]

        def owner_id(self) -> str:
            """This replica's lease owner name (tests kill a worker and check its items)."""
            return self.owner

    return CampaignRunner


def build_app(config: ServeConfig) -> Any:
    """The bound application: Ingress(Generator, CampaignRunner(Generator))."""
    generator = generator_deployment(config).bind()
    runner = campaign_runner_deployment(config).bind(generator)
    return ingress_deployment(config).bind(generator, runner)


__all__ = ["GenerateRequest", "ServeConfig", "build_app", "ModelNotFound"]
