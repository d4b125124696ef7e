"""The catalog: which registered model serves a brand, which versions hold its aliases, and what
a version brings with it (brand kit, logo, font, lineage, image sizes).

Every part of the serving tier that turns a brand into a model goes through here, so the model
name follows the configured prefix (`BRANDFORGE_EXPERIMENT_PREFIX`, as training and the registry
do) and the registry's own model of base models (`<prefix>-bases`) is never a brand.
Aliases are cached for `ttl_s`: generate asks on every request, the registry need not answer
every time; anything that moves an alias through this server (a rollout) calls `forget`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from brandforge.names import brand_problem
from serving.errors import Conflict, NotFound, Unavailable

log = logging.getLogger(__name__)

ALIASES = ("champion", "canary", "challenger")


def model_name(brand: str) -> str:
    """The registered model of `brand` under the configured prefix (`brandforge-acme`)."""
    from brandforge.tracking import registered_model_name

    return registered_model_name(brand)


def brand_of(name: str) -> str | None:
    """The brand a registered model name serves, or None for a model that serves no brand
    (another prefix, the base-model store, a name no brand could have)."""
    from brandforge.tracking import registered_model_name

    prefix = registered_model_name("")
    if not name.startswith(prefix):
        return None
    brand = name.removeprefix(prefix)
    return brand if brand_problem(brand) is None else None


def model_id(brand: str, version: str) -> str:
    """The multiplexed model id the generator loads: `<model name>/<version>`."""
    return f"{model_name(brand)}/{version}"


@dataclass(frozen=True)
class SizeLimits:
    """A version's native image size (the default), the largest side a request may ask for,
    and the largest cost of one request in cost units (`serving.admission`)."""

    native: int
    max_side: int
    max_cost: int = 2000  # registry.limits.DEFAULT_MAX_COST


class Catalog:
    """Brand → model → versions, with a short-lived alias cache and a per-version context cache.

    `context_for` is injected (tests and the campaign worker pass their own); by default it reads
    the registry (`registry_context`).
    """

    def __init__(self, *, ttl_s: float = 2.0, context_for: Callable[[str], Any] | None = None):
        self.ttl_s = ttl_s
        self._context_for = context_for
        self._aliases: dict[str, tuple[float, dict[str, str | None]]] = {}
        self._contexts: dict[str, Any] = {}
        self._versions: dict[str, tuple[SizeLimits, Any]] = {}  # sizes and sampler, per version
        self._lock = threading.Lock()

    # -- brands and aliases ---------------------------------------------------------------

    def brands(self) -> list[str]:
        """Every brand with a registered model, sorted."""
        from registry.core import client, model_names

        try:
            names = model_names(client())
        except Exception as err:  # noqa: BLE001 (any registry failure: the caller gets a 503)
            raise Unavailable(f"the model registry did not answer: {str(err)[:200]}") from None
        return sorted(b for b in map(brand_of, names) if b is not None)

    def aliases(self, brand: str) -> dict[str, str | None]:
        """{"champion": v, "canary": v, "challenger": v} of a brand; NotFound for no model."""
        from registry.core import RegistryError, client, versions

        with self._lock:
            cached = self._aliases.get(brand)
        if cached and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        name = model_name(brand)
        try:
            found = versions(client(), name)
        except RegistryError:
            raise NotFound(f"unknown brand {brand!r}: no registered model {name}") from None
        aliases: dict[str, str | None] = dict.fromkeys(ALIASES)
        for v in found:
            for a in v.aliases:
                if a in aliases:
                    aliases[a] = v.version
        with self._lock:
            self._aliases[brand] = (time.monotonic(), aliases)
        return aliases

    def champion(self, brand: str) -> str:
        """The brand's champion version; NotFound for an unknown brand, Conflict without one."""
        champion = self.aliases(brand)["champion"]
        if champion is None:
            raise Conflict(
                f"brand {brand!r} has no champion yet: promote a version with "
                f"`brandforge registry promote {model_name(brand)} --to champion`"
            )
        return champion

    def forget(self, brand: str | None = None) -> None:
        """Drop cached aliases (of one brand, or all): they moved."""
        with self._lock:
            if brand is None:
                self._aliases.clear()
            else:
                self._aliases.pop(brand, None)

    # -- versions -------------------------------------------------------------------------

    def context(self, model_id: str) -> Any:
        """The version's brand kit, logo, font and dataset hash (cached: versions are immutable)."""
        if model_id not in self._contexts:
            if self._context_for is not None:
                context = self._context_for(model_id)
            else:
                context = registry_context(model_id)
            self._contexts[model_id] = context
        return self._contexts[model_id]

    def sizes(self, model_id: str) -> SizeLimits:
        """The version's native size, largest allowed side and cost limit (recorded at
        registration)."""
        return self._version(model_id)[0]

    def sampler(self, model_id: str) -> Any:
        """The steps and guidance the version was evaluated with (`registry.sampler.Sampler`;
        None where it records none), which a request that names neither draws with."""
        return self._version(model_id)[1]

    def _version(self, model_id: str) -> tuple[SizeLimits, Any]:
        # One registry read per version for both (a cold replica's first requests wait on it).
        if model_id not in self._versions:
            self._versions[model_id] = _read_version(model_id)
        return self._versions[model_id]


def _read_version(model_id: str) -> tuple[SizeLimits, Any]:
    """A version's sizes and evaluated sampler, from one registry read."""
    from registry.core import RegistryError, client, get_version
    from registry.sampler import sampler_of

    name, version = model_id.rsplit("/", 1)
    c = client()
    try:
        info = get_version(c, name, version)
    except RegistryError as err:
        raise NotFound(f"{model_id}: {err}") from None
    return _sizes_of(c, info), sampler_of(info.tags)


def _sizes_of(c: Any, info: Any) -> SizeLimits:
    """A version's sizes from its tags (`registry.limits`), or from its training run's
    `base.resolution` for a version registered before the size tags."""
    from registry.limits import NATIVE_SIZE_TAG, size_limits

    trained_at = None
    if NATIVE_SIZE_TAG not in info.tags and info.run_id:
        # Registered before the size tags: the training run's `base.resolution` param.
        raw = c.get_run(info.run_id).data.params.get("base.resolution")
        trained_at = int(raw) if raw and raw.isdigit() else None
    limits = size_limits(info.tags, trained_at)
    return SizeLimits(native=limits.native, max_side=limits.max, max_cost=limits.max_cost)


@dataclass
class BrandContext:
    """What composing and scoring a version's outputs needs: its brand kit (None: the version
    was registered without one), logo image and font file, and the lineage for provenance."""

    kit: Any
    logo: Image.Image | None = None
    font: Any = None  # a Path, or None for the bundled font
    dataset_hash: str | None = None
    native_size: int = 512  # what the version draws at by default (registry.limits)
    # the steps and guidance it was evaluated with (registry.sampler); None: the server's
    steps: int | None = None
    guidance: float | None = None


def registry_context(model_id: str) -> BrandContext:
    """A registered version's brand kit (the one it was registered with), logo and font (the
    brand files logged with its run, when there are any), dataset hash, native size and the
    sampler settings it was evaluated with."""
    import json
    from pathlib import Path

    from brandforge.brandkit import BrandKit
    from registry.core import client, get_version
    from registry.sampler import sampler_of

    name, version = model_id.rsplit("/", 1)
    c = client()
    info = get_version(c, name, version)
    raw = info.tags.get("brandforge.brand_kit")
    kit = BrandKit.model_validate(json.loads(raw)) if raw else None
    logo, font = None, None
    if kit is not None and info.run_id:
        logo, font = _brand_files(info.run_id, kit)
    return BrandContext(
        kit=kit,
        logo=logo,
        font=font and Path(font),
        dataset_hash=info.tags.get("brandforge.dataset_hash"),
        native_size=_sizes_of(c, info).native,  # one registry read for both
        steps=sampler_of(info.tags).steps,
        guidance=sampler_of(info.tags).guidance,
    )


def _brand_files(run_id: str, kit: Any) -> tuple[Image.Image | None, str | None]:
    """The logo image and font file the register stage logged under `brand/` (None when the
    kit names none or the run has none)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    logo = font = None
    wanted = {
        "logo": kit.logo.file if kit.logo is not None else None,
        "font": getattr(kit, "font_file", None),
    }
    for what, rel in wanted.items():
        if not rel:
            continue
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"brand/{rel}")
        except (MlflowException, OSError) as err:
            log.warning(
                "%s %s of run %s not available (%s); composing without it", what, rel, run_id, err
            )
            continue
        if what == "logo":
            logo = Image.open(local).convert("RGBA")
        else:
            font = local
    return logo, font
