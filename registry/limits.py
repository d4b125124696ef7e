"""The image sizes a registered version serves: its native size and the largest it accepts.

A diffusion model draws best at the resolution it was trained at, and its cost grows with the
pixel count: the embedded 32 px base asked for 512 px draws a 256x larger latent (minutes on a
CPU). So `register` records both on every version, and serving defaults a request's width and
height to the native size and refuses a side above the limit:

- `brandforge.native_size`: the training resolution (32 for the embedded base, 512 for SD 1.5,
  1024 for SDXL), in pixels;
- `brandforge.max_size`: the largest width or height, in pixels; by default 4x native, capped
  at 2048 (never below native), or `register.max_size` from params.yaml;
- `brandforge.max_cost`: the largest cost of one request, in cost units (`register.max_cost`).

Cost units (`serving.admission.request_cost`): one unit is one image at the version's native
size for one denoising step, so a request costs `width x height / native**2 x steps x n`.
Normalising to the native size makes one unit roughly the same work on any base of the same
family, and a limit in units means the same thing whether the base draws at 32 or 1024 px.

Versions registered before these tags existed fall back to their base model's resolution, else
512 (SD 1.5, the most common base).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

NATIVE_SIZE_TAG = "brandforge.native_size"
MAX_SIZE_TAG = "brandforge.max_size"
MAX_COST_TAG = "brandforge.max_cost"
# A version without tags or a base reference: SD 1.5's resolution.
FALLBACK_NATIVE_SIZE = 512
# Default limit: this many times native per side (16x the pixels), and never above the cap: a
# 2048 px side is already 16x SD 1.5's pixels, more than one replica should take per image.
MAX_UPSCALE = 4
MAX_SIZE_CAP = 2048
# Default largest request, in cost units: 100 native images at 20 steps (e.g. 8 images at 2x
# native side and 60 steps). The request that stalled a server for minutes in issue 12 (512 px
# on the 32 px base at 20 steps, 5,120 units) is 2.5x over it.
DEFAULT_MAX_COST = 2000


@dataclass(frozen=True)
class SizeLimits:
    native: int  # the default width and height, pixels
    max: int  # the largest width or height a request may ask for, pixels
    max_cost: int = DEFAULT_MAX_COST  # the largest cost of one request, cost units


def default_max_size(native: int) -> int:
    """4x native, capped at 2048 px, never below native (a base larger than the cap keeps it)."""
    return max(native, min(MAX_UPSCALE * native, MAX_SIZE_CAP))


def size_tags(native: int, *, max_size: int | None = None) -> dict[str, str]:
    """The version tags `register` writes; ValueError when the sizes make no sense."""
    if native < 1:
        raise ValueError(f"native size {native}: expected a positive number of pixels")
    limit = default_max_size(native) if max_size is None else max_size
    if limit < native:
        raise ValueError(
            f"register.max_size {limit} is below the version's native size {native}: "
            "it could not even draw at its own resolution"
        )
    return {NATIVE_SIZE_TAG: str(native), MAX_SIZE_TAG: str(limit)}


def cost_tags(max_cost: int = DEFAULT_MAX_COST) -> dict[str, str]:
    """The cost-limit tag `register` writes; ValueError for a limit below one unit."""
    if max_cost < 1:
        raise ValueError(f"register.max_cost {max_cost}: expected at least 1 cost unit")
    return {MAX_COST_TAG: str(max_cost)}


def _positive_int(tags: Mapping[str, str], key: str) -> int | None:
    raw = tags.get(key)
    if raw is None:
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = 0
    if value < 1:
        log.warning("version tag %s=%r is not a positive number; ignored", key, raw)
        return None
    return value


def size_limits(tags: Mapping[str, str] | None, base_resolution: int | None = None) -> SizeLimits:
    """A version's native size and limit, from its tags.

    Without the tags (versions registered before them), `base_resolution` (the resolution in
    the version's base reference, when the caller knows it) is the native size, else 512; the
    limit is then the default for that size. A limit below native is raised to native. A
    version without the cost tag gets `DEFAULT_MAX_COST`.
    """
    tags = tags or {}
    native = _positive_int(tags, NATIVE_SIZE_TAG)
    if native is None:
        native = base_resolution if base_resolution and base_resolution > 0 else None
    if native is None:
        native = FALLBACK_NATIVE_SIZE
    limit = _positive_int(tags, MAX_SIZE_TAG)
    if limit is None:
        limit = default_max_size(native)
    max_cost = _positive_int(tags, MAX_COST_TAG) or DEFAULT_MAX_COST
    return SizeLimits(native=native, max=max(limit, native), max_cost=max_cost)
