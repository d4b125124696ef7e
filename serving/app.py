"""The Ray Serve application graph: which deployments exist and how they are wired.

    client ──HTTP──► Ingress (serving.api: auth, validation, catalog, delivery, metrics)
                        │  renderer → Generator.options(multiplexed_model_id="brandforge-acme/3")
                        ▼
                     Generator replicas (one base pipeline each, LRU of adapters, @serve.batch)
                        ▲
    CampaignRunner ─────┘ (drains the campaign queue; live requests go first)
    RolloutJudge: one replica that walks every running rollout through its steps

Deployments hold no logic of their own: they build the Ray-free parts (`serving.generator`,
`serving.api`, `serving.campaigns.worker`, `serving.rollout.controller`) on their replica and
connect them through Ray handles. The database schema is migrated once by `brandforge serve`
before this graph starts; replicas only check that it is current.
"""

# No `from __future__ import annotations` here: Ray pickles the deployment classes by value.
import asyncio
import logging
import os
import threading
import uuid
from typing import Any

from ray import serve

from serving.config import ServeConfig
from serving.generator import Engine, ImageJob, Rendered, group
from serving.scheduler import Scheduler, admission_error

log = logging.getLogger(__name__)


def _replica_setup(config: ServeConfig) -> Any:
    """What every replica does first: the served environment, redacted logs, the serving
    database (checked to be at this release's schema revision, never altered), and the C2PA
    signing certificate (loaded and tried once per process)."""
    from brandforge.settings import get_settings
    from serving.db.engine import engine_for
    from serving.db.migrate import require_current
    from serving.delivery.credentials import credentials_from_settings
    from serving.delivery.redact import install_log_redaction

    os.environ.update(dict(config.env))
    get_settings.cache_clear()
    install_log_redaction()
    engine = engine_for(get_settings().serving_db)
    require_current(engine)
    credentials_from_settings()  # a C2PA certificate that cannot sign stops the replica here
    return engine


# ---------------------------------------------------------------------------------------------
# Generator


def draw_threads(threads: int) -> int:
    """Set how many threads torch draws with in this process (0: one per core) and return it.
    Ray starts an actor that reserves no CPU with OMP_NUM_THREADS=1, which would leave the
    generator drawing on one core of many."""
    import torch

    count = threads or os.cpu_count() or 1
    torch.set_num_threads(count)
    return count


def generator_deployment(config: ServeConfig) -> Any:
    """The generator deployment class, with the multiplexing, batching and queue sizes
    configured. Each replica's own queue (`serving.scheduler`) bounds, orders and drops the
    images; Ray's `max_queued_requests` only bounds calls waiting at a caller for a slot."""

    @serve.deployment(
        name="Generator",
        num_replicas=config.generator_replicas,
        max_ongoing_requests=64,
        max_queued_requests=config.max_queued_images,
        ray_actor_options={"num_cpus": 0},
    )
    class Generator:
        def __init__(self) -> None:
            from serving.delivery.redact import install_log_redaction

            os.environ.update(dict(config.env))
            install_log_redaction()
            draw_threads(config.generator_threads)
            self.engine = Engine()
            self.queue = Scheduler(
                lambda jobs, stop, between: self.engine.render(
                    jobs, should_stop=stop, between_steps=between
                ),
                max_batch_size=config.max_batch_size,
                batch_wait_s=config.batch_wait_s,
                max_queued=config.max_queued_images,
                max_queued_per_key=config.max_queued_images_per_key,
            )

        @serve.multiplexed(max_num_models_per_replica=config.max_adapters)
        async def get_model(self, model_id: str) -> Any:
            return await asyncio.to_thread(self.engine.load_adapter, model_id)

        async def generate(self, jobs: list[ImageJob], background: bool = False) -> list[Rendered]:
            """Render `jobs` (one model version) through the replica's queue: live images
            round-robin across keys, within their bounds and deadlines; campaign work
            (`background`) only while no live image waits, batching with live images of the
            same settings. When the caller is cancelled (its HTTP client went away, or its
            deadline passed in the ingress), its images are dropped."""
            handle = await self.get_model(serve.get_multiplexed_model_id())  # resident meanwhile
            try:
                return await self.queue.submit(jobs, background=background)
            finally:
                del handle

        async def render_loop(self, job: ImageJob, frames: int, seed_to: int) -> list[bytes]:
            """The frames of a looping clip for a campaign (`Engine.render_loop`)."""
            handle = await self.get_model(serve.get_multiplexed_model_id())
            while self.queue.live_pending() > 0:
                await asyncio.sleep(0.005)
            out = await asyncio.to_thread(
                self.engine.render_loop, job, frames=frames, seed_to=seed_to
            )
            del handle
            return out

        def resident(self) -> dict[str, list[str]]:
            return self.engine.resident()

        def stats(self) -> dict[str, int]:
            """The queue's counters: images drawn, dropped (gone, expired), batches
            interrupted, requests refused, and what waits now."""
            return self.queue.stats()

    return Generator


# ---------------------------------------------------------------------------------------------
# Ingress


class RayRenderer:
    """`serving.api.services.Renderer` over the generator deployment's handle."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator

    async def render(self, jobs: list[ImageJob]) -> list[Rendered]:
        from ray.serve.exceptions import BackPressureError

        from serving.errors import Overloaded

        call = self.generator.options(multiplexed_model_id=jobs[0].model_id).generate
        response = call.remote(jobs)
        try:
            rendered: list[Rendered] = await response
        except asyncio.CancelledError:
            response.cancel()  # the client left or its deadline passed: the replica drops it
            raise
        except BackPressureError as err:
            raise Overloaded(f"the generator is busy ({err})", retry_after_s=1) from None
        except Exception as err:
            refused = admission_error(err)  # the queue's 503 or 504, unwrapped from Ray's error
            if refused is not None:
                raise refused from None
            raise
        return rendered

    async def resident(self) -> dict[str, list[str]]:
        resident: dict[str, list[str]] = await self.generator.resident.remote()
        return resident


def ingress_deployment(config: ServeConfig) -> Any:
    """The HTTP ingress: `serving.api.create_api` over this replica's services."""

    @serve.deployment(
        name="Ingress", num_replicas=config.ingress_replicas, max_ongoing_requests=256
    )
    @serve.ingress()
    class Ingress:
        def __init__(self, generator: Any, runner: Any = None, judge: Any = None) -> None:
            # `runner` and `judge` are bound here only so that the graph deploys them.
            from brandforge.params import RolloutParams
            from brandforge.settings import get_settings
            from serving.api.prometheus import Metrics
            from serving.api.services import Services
            from serving.assets.store import AssetStore
            from serving.catalog import Catalog
            from serving.db.engine import session_factory
            from serving.rollout.controller import RolloutController

            engine = _replica_setup(config)
            settings = get_settings()
            sessions = session_factory(engine)
            self.services = Services(
                config=config,
                sessions=sessions,
                store=AssetStore.from_settings(settings),
                catalog=Catalog(ttl_s=config.alias_ttl_s),
                rollouts=RolloutController(sessions, RolloutParams(**config.rollout)),
                metrics=Metrics(),
                renderer=RayRenderer(generator),
                retention_days=settings.retention_days,
            )

        def __serve_build_asgi_app__(self) -> Any:
            from serving.api.create import create_api

            return create_api(self.services)

    return Ingress


# ---------------------------------------------------------------------------------------------
# Rollout judge


def rollout_judge_deployment(config: ServeConfig) -> Any:
    """One replica that judges every running rollout on a timer (promote, step, roll back).
    All rollout state is in the database, so a restarted server carries on where it was."""

    @serve.deployment(name="RolloutJudge", num_replicas=1, ray_actor_options={"num_cpus": 0})
    class RolloutJudge:
        def __init__(self) -> None:
            from brandforge.params import RolloutParams
            from serving.db.engine import session_factory
            from serving.rollout.controller import RolloutController

            engine = _replica_setup(config)
            self.params = RolloutParams(**config.rollout)
            self.rollouts = RolloutController(session_factory(engine), self.params)
            self._stop = threading.Event()
            threading.Thread(target=self._loop, name="rollouts", daemon=True).start()

        def _loop(self) -> None:
            while not self._stop.wait(self.params.check_every_s):
                try:
                    self.rollouts.evaluate_all()
                except Exception:  # noqa: BLE001 (logged; the next tick tries again)
                    log.exception("rollout judge")

        def check_health(self) -> None:
            if not any(t.name == "rollouts" and t.is_alive() for t in threading.enumerate()):
                raise RuntimeError("the rollout judge's thread died")

    return RolloutJudge


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
            from serving.catalog import Catalog
            from serving.db.engine import session_factory

            db = _replica_setup(config)
            settings = get_settings()
            self.generator = generator
            self.catalog = Catalog(ttl_s=config.alias_ttl_s)
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
            return self.catalog.context(model_id)

        def owner_id(self) -> str:
            """This replica's lease owner name (tests kill a worker and check its items)."""
            return self.owner

    return CampaignRunner


def build_app(config: ServeConfig) -> Any:
    """The bound application: Ingress(Generator), CampaignRunner(Generator), RolloutJudge."""
    generator = generator_deployment(config).bind()
    runner = campaign_runner_deployment(config).bind(generator)
    judge = rollout_judge_deployment(config).bind()
    return ingress_deployment(config).bind(generator, runner, judge)


__all__ = ["ServeConfig", "build_app"]
