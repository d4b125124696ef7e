"""Generation on one replica: one base pipeline, many adapters, batched calls.

The base weights are loaded once per replica (per base identity: normally one). Each registered
version's LoRA adapter is added to that pipeline under its own adapter name the first time it is
asked for and kept while it is among the `max_adapters` most recently used (Ray Serve's model
multiplexing decides which replica holds which version and evicts the least recently used);
switching between resident adapters is `set_adapters`, which reloads nothing. A batch holds
images of one version and one set of settings; each image has its own seeded generator, so an
image depends only on its own seed and prompt, batched or not.

This module has no Ray in it: `serving.app` wraps it in deployments. Tests drive it directly too.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serving.scheduler import Interrupted, Scheduler

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageJob:
    """One image to draw: what the batcher groups and the pipeline renders."""

    model_id: str  # "<registered model>/<version>"
    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    steps: int
    guidance: float
    client: str = ""  # the API key's name: live work is served round-robin across keys
    deadline: float | None = None  # time.time() after which nobody waits for this image
    native: int = 0  # the version's native side, px (0: unknown): caps a batch's pixels

    def batch_key(self) -> tuple[Any, ...]:
        return (self.model_id, self.width, self.height, self.steps, self.guidance)


@dataclass
class Rendered:
    """One drawn image as it travels back to its caller. The pixels themselves, not a PNG:
    the caller scores, marks and encodes them in the requested format anyway, so encoding a
    PNG here and decoding it there was codec work for nothing (Ray sends a numpy array
    without copying it through pickle)."""

    pixels: np.ndarray  # height x width x 3, uint8 RGB
    seed: int
    batch_size: int
    seconds: float  # drawing its batch took (wall clock, from the first step to the last)
    queued_s: float = 0.0  # it waited in the replica's queue before its batch began (scheduler)

    def image(self) -> Image.Image:
        """The pixels as an RGB picture (shares their memory)."""
        from PIL import Image

        return Image.fromarray(self.pixels, "RGB")


class ModelNotFound(LookupError):
    """The registered version (or its base) cannot be loaded."""


@dataclass
class _Base:
    pipe: Any
    adapters: set[str] = field(default_factory=set)
    # Re-entrant: a batch paused at a step boundary draws another one in the same thread.
    lock: threading.RLock = field(default_factory=threading.RLock)
    drawing: list[str] = field(default_factory=list)  # adapters of the batches in progress
    aside: Any = None  # a second pipeline over the same modules, for the batch drawn aside

    def pipe_for_next(self) -> Any:
        """The pipeline for a new batch: the main one, or, while a batch is paused in it,
        a second one sharing its modules (a pipeline call keeps its state, and its
        scheduler's, on the objects, so two calls must not share them)."""
        if not self.drawing:
            return self.pipe
        if self.aside is None:
            import copy

            parts = {**self.pipe.components, "scheduler": copy.deepcopy(self.pipe.scheduler)}
            self.aside = type(self.pipe)(**parts)
            self.aside.set_progress_bar_config(disable=True)
        return self.aside


def adapter_name(model_id: str) -> str:
    # PEFT adapter names must be valid module attribute names.
    return "v_" + "".join(ch if ch.isalnum() else "_" for ch in model_id)


class AdapterHandle:
    """What multiplexing caches per version; `__del__` (called by Ray on eviction) removes the
    adapter from the shared pipeline so memory stays bounded."""

    def __init__(self, engine: Engine, model_id: str, base_key: str) -> None:
        self.engine, self.model_id, self.base_key = engine, model_id, base_key

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.unload_adapter(self.model_id, self.base_key)
            self.engine = None  # type: ignore[assignment]


class Engine:
    """Bases and adapters of one replica, and the batched render call."""

    def __init__(self, *, device: str = "cpu") -> None:
        self.device = device
        self._bases: dict[str, _Base] = {}
        self._model_base: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------

    def load_adapter(self, model_id: str) -> AdapterHandle:
        """Make `model_id` resident (its base too, if this replica has not loaded it yet)."""
        from mlflow.exceptions import MlflowException

        from registry.bases import IDENTITY_TAG, stored_base_dir
        from registry.core import RegistryError, client, get_version

        name, version = model_id.rsplit("/", 1)
        try:
            info = get_version(client(), name, version)
            adapter = _load_adapter(name, version)
            location = stored_base_dir(info.tags) or adapter.base_model
        except (RegistryError, MlflowException, OSError) as err:
            raise ModelNotFound(f"{model_id}: {err}") from err
        identity = info.tags.get(IDENTITY_TAG, "unknown")
        with self._lock:
            base = self._bases.get(identity)
            if base is None:
                base = _Base(pipe=_load_pipeline(str(location), self.device))
                self._bases[identity] = base
        with base.lock:
            key = adapter_name(model_id)
            if key not in base.adapters:
                t = time.perf_counter()
                kwargs = {"weight_name": adapter.weight_name} if adapter.weight_name else {}
                base.pipe.load_lora_weights(adapter.adapter_path, adapter_name=key, **kwargs)
                base.adapters.add(key)
                log.info("adapter %s loaded in %.2f s", model_id, time.perf_counter() - t)
        self._model_base[model_id] = identity
        return AdapterHandle(self, model_id, identity)

    def unload_adapter(self, model_id: str, base_key: str) -> None:
        base = self._bases.get(base_key)
        if base is None:
            return
        with base.lock:
            key = adapter_name(model_id)
            if key in base.adapters:
                base.pipe.delete_adapters(key)
                base.adapters.discard(key)
                log.info("adapter %s evicted", model_id)

    def resident(self) -> dict[str, list[str]]:
        """Base identity → adapter names loaded on it (for /readyz and the memory benchmark)."""
        return {k: sorted(b.adapters) for k, b in self._bases.items()}

    # -- rendering -------------------------------------------------------------------------

    def render(
        self,
        jobs: list[ImageJob],
        *,
        should_stop: Callable[[], bool] | None = None,
        between_steps: Callable[[], bool] | None = None,
    ) -> list[Rendered]:
        """Render jobs that share a batch key in one pipeline call; results in job order.

        After every denoising step, `should_stop` is asked: when it says yes the pipeline skips
        its remaining steps (diffusers' `_interrupt`) and `Interrupted` is raised. Otherwise
        `between_steps` runs: it may draw another batch right then, in this thread (this method
        again, on a second pipeline over the same modules), and says whether it did; then this
        batch's adapter is set again before its next step, so its images do not change."""
        import torch

        if not jobs:
            return []
        keys = {j.batch_key() for j in jobs}
        if len(keys) != 1:
            raise ValueError(f"one batch must share model and settings, got {len(keys)} groups")
        first = jobs[0]
        base = self._bases[self._model_base[first.model_id]]
        started = time.perf_counter()
        stopped = False
        name = adapter_name(first.model_id)

        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> Any:
            nonlocal stopped
            if should_stop is not None and should_stop():
                stopped = pipe._interrupt = True
            elif between_steps is not None and between_steps():
                base.pipe.set_adapters([name])  # the batch drawn aside may have set its own
            return tensors

        with base.lock, torch.inference_mode():
            pipe = base.pipe_for_next()
            base.pipe.set_adapters([name])
            base.drawing.append(name)
            try:
                out = pipe(
                    prompt=[j.prompt for j in jobs],
                    negative_prompt=[j.negative_prompt for j in jobs],
                    num_inference_steps=first.steps,
                    guidance_scale=first.guidance,
                    width=first.width,
                    height=first.height,
                    generator=[torch.Generator("cpu").manual_seed(j.seed) for j in jobs],
                    output_type="pil",
                    callback_on_step_end=on_step_end,
                )
            finally:
                base.drawing.pop()
        if stopped:
            raise Interrupted(f"a batch of {len(jobs)} stopped: nobody waits for its images")
        seconds = time.perf_counter() - started
        return [
            Rendered(_rgb_pixels(image), job.seed, len(jobs), seconds)
            for job, image in zip(jobs, out.images, strict=True)
        ]

    def render_loop(self, job: ImageJob, *, frames: int, seed_to: int) -> list[bytes]:
        """The frames (PNG) of a seamless loop: the starting noise walks once around the circle
        through `job.seed`'s and `seed_to`'s noise (z = a cos t + b sin t keeps the noise's
        variance, unlike a straight line), all frames drawn in one batched call."""
        import math

        import torch

        base = self._bases[self._model_base[job.model_id]]
        pipe = base.pipe
        shape = (
            pipe.unet.config.in_channels,
            job.height // pipe.vae_scale_factor,
            job.width // pipe.vae_scale_factor,
        )
        a = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(job.seed))
        b = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed_to))
        angles = [2 * math.pi * k / frames for k in range(frames)]
        latents = torch.stack([a * math.cos(t) + b * math.sin(t) for t in angles])
        with base.lock, torch.inference_mode():
            pipe.set_adapters([adapter_name(job.model_id)])
            out = pipe(
                prompt=[job.prompt] * frames,
                negative_prompt=[job.negative_prompt] * frames,
                num_inference_steps=job.steps,
                guidance_scale=job.guidance,
                width=job.width,
                height=job.height,
                latents=latents.to(pipe.device, dtype=pipe.unet.dtype),
                output_type="pil",
            )
        frames_png = []
        for image in out.images:
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            frames_png.append(buf.getvalue())
        return frames_png


def _rgb_pixels(image: Image.Image) -> np.ndarray:
    import numpy as np

    return np.asarray(image.convert("RGB"))


def _load_adapter(name: str, version: str) -> Any:
    import mlflow.diffusers

    return mlflow.diffusers.load_model(f"models:/{name}/{version}")


def _load_pipeline(location: str, device: str) -> Any:
    from brandforge.pipeline import load_pipeline

    pipe = load_pipeline(location, device=device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def group(jobs: list[ImageJob]) -> list[list[int]]:
    """Indices of `jobs` grouped by batch key, in first-seen order."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.batch_key(), []).append(i)
    return list(groups.values())


class LocalRenderer:
    """Draws in this process: the `serving.api.services.Renderer` of tools and tests that run
    the HTTP API without Ray. Adapters stay resident (no LRU); the queue is the replica's own
    (`serving.scheduler`: bounded, fair across keys, deadlines), without a wait to fill a
    batch."""

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        max_batch_size: int = 8,
        max_queued: int = 32,
        max_queued_per_key: int = 8,
    ) -> None:
        self.engine = engine or Engine()
        self._handles: dict[str, AdapterHandle] = {}
        self.scheduler = Scheduler(
            self._draw,
            max_batch_size=max_batch_size,
            max_queued=max_queued,
            max_queued_per_key=max_queued_per_key,
        )

    async def render(self, jobs: list[ImageJob]) -> list[Rendered]:
        return await self.scheduler.submit(jobs)

    def _draw(
        self,
        jobs: list[ImageJob],
        should_stop: Callable[[], bool],
        between_steps: Callable[[], bool] | None,
    ) -> list[Rendered]:
        model = jobs[0].model_id
        if model not in self._handles:
            self._handles[model] = self.engine.load_adapter(model)
        return self.engine.render(jobs, should_stop=should_stop, between_steps=between_steps)

    async def resident(self) -> dict[str, list[str]]:
        return self.engine.resident()
