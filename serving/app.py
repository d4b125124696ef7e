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
import json
import logging
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from serving.generator import Engine, ImageJob, ModelNotFound, Rendered, group

log = logging.getLogger(__name__)

FORMATS = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}


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
    format: Literal["png", "jpeg", "webp"] = "png"


class RolloutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    brand: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=32, pattern=r"^[0-9]+$")
    steps: list[int] | None = None  # default: params.yaml rollout.steps
    min_requests: int | None = Field(None, ge=1)
    min_seconds: float | None = Field(None, ge=0)
    mode: Literal["live", "shadow"] = "live"


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

        async def generate(self, jobs: list[ImageJob]) -> list[Rendered]:
            model_id = serve.get_multiplexed_model_id()
            handle = await self.get_model(model_id)  # resident while this call runs
            out = await asyncio.gather(*(self.render_one(job) for job in jobs))
            del handle
            return list(out)

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
        def __init__(self, generator: Any) -> None:
            from brandforge.settings import get_settings
            from serving.db import engine_for, init_db, session_factory
            from serving.metrics import Metrics

            _apply_env(config.env)
            self.generator = generator
            settings = get_settings()
            self.db = engine_for(settings.serving_db)
            init_db(self.db)
            self.sessions = session_factory(self.db)
            self.asset_dir = Path(settings.asset_dir).resolve()
            self.metrics = Metrics()
            from brandforge.params import RolloutParams
            from serving.rollout import RolloutController

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
            from serving.auth import AuthError, authenticate

            if config.dev:
                return "dev"
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
            return principal.name

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

        def _kit(self, model_id: str) -> Any:
            from brandforge.brandkit import BrandKit
            from registry.core import client, get_version

            if model_id not in self._kits:
                name, version = model_id.rsplit("/", 1)
                raw = get_version(client(), name, version).tags.get("brandforge.brand_kit")
                self._kits[model_id] = BrandKit.model_validate(json.loads(raw)) if raw else None
            return self._kits[model_id]

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
                brands.append({"brand": brand, "model": name, **aliases, "rollout": state})
            return {"models": brands}

        @api.post("/v1/generate", tags=["generate"])
        async def generate(self, body: GenerateRequest, request: Request) -> dict[str, Any]:
            """Generate `n` images with the brand's champion (or, during a rollout, the canary
            for the rollout's share of clients); each image is scored and stored."""
            from serving.rollout import assign_variant

            started = time.perf_counter()
            who = self._principal(request, "generate", body.brand)
            aliases = await asyncio.to_thread(self._aliases_of, body.brand)
            champion = aliases["champion"]
            if champion is None:
                raise HTTPException(
                    409,
                    f"brand {body.brand!r} has no champion yet: promote a version with "
                    f"`brandforge registry promote brandforge-{body.brand} --to champion`",
                )
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
            from serving.db import Asset

            out = []
            name, version = model_id.rsplit("/", 1)
            folder = self.asset_dir / body.brand
            folder.mkdir(parents=True, exist_ok=True)
            with self.sessions() as session:
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
                    asset_id = secrets.token_urlsafe(16)
                    pil_format, _ = FORMATS[body.format]
                    path = folder / f"{asset_id}.{body.format}"
                    image.save(
                        path, format=pil_format, **({"quality": 92} if body.format != "png" else {})
                    )
                    session.add(
                        Asset(
                            id=asset_id,
                            request_id=request_id,
                            brand=body.brand,
                            model_name=name,
                            model_version=version,
                            variant=variant,
                            prompt=body.prompt,
                            negative_prompt=body.negative_prompt or "",
                            seed=r.seed,
                            width=body.width,
                            height=body.height,
                            steps=body.steps or config.default_steps,
                            guidance=body.guidance
                            if body.guidance is not None
                            else config.default_guidance,
                            format=body.format,
                            path=str(path.relative_to(self.asset_dir)),
                            compliance=compliance,
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
            return await asyncio.to_thread(self.rollouts.get, brand)

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
        async def asset(self, asset_id: str, request: Request) -> FileResponse:
            """The stored image file."""
            from serving.db import Asset

            with self.sessions() as session:
                row = session.get(Asset, asset_id)
                found = None if row is None else (row.brand, row.path, row.format)
            if found is None:
                self._principal(request, "generate", None)
                raise HTTPException(404, f"no asset {asset_id!r}")
            brand, rel, fmt = found
            self._principal(request, "generate", brand)
            path = self.asset_dir / rel
            if not path.is_file():
                raise HTTPException(410, f"asset {asset_id!r} was deleted")
            return FileResponse(path, media_type=FORMATS[fmt][1])

    return Ingress


def build_app(config: ServeConfig) -> Any:
    """The bound application: Ingress(Generator)."""
    generator = generator_deployment(config).bind()
    return ingress_deployment(config).bind(generator)


__all__ = ["GenerateRequest", "ServeConfig", "build_app", "ModelNotFound"]
