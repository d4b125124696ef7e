"""The sampler settings a registered version was evaluated with, which serving uses by default.

The A/B evaluation and its gate judge a version's images drawn at `eval.num_inference_steps`
and `eval.guidance_scale`; the same adapter drawn at other settings can look quite different (on
the embedded demo model, 58 % of the eval images passed the brand kit at guidance 2 and 21 % at
guidance 4.5). So `register` records the evaluated settings on the version, and serving draws a
request that names no steps or guidance with them, so live traffic gets what the gate measured:

- `brandforge.sampler.steps`: denoising steps (an integer, 1..200);
- `brandforge.sampler.guidance`: classifier-free guidance scale (finite, 0..30).

Which settings a drawing uses (`sampling`): the request's (or campaign spec's), else a
server-wide override where one is configured, else the version's, else 20 steps at guidance 2
(a version registered before these tags, or with a tag that does not parse).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

STEPS_TAG = "brandforge.sampler.steps"
GUIDANCE_TAG = "brandforge.sampler.guidance"
MAX_STEPS = 200
MAX_GUIDANCE = 30.0
FALLBACK_STEPS = 20
FALLBACK_GUIDANCE = 2.0


@dataclass(frozen=True)
class Sampler:
    steps: int | None  # None: the server's default
    guidance: float | None


def sampling(*choices: Sampler) -> tuple[int, float]:
    """Steps and guidance: for each, the first of `choices` that gives it (most specific
    first: request, server override, version), else the fallback."""
    steps = next((c.steps for c in choices if c.steps), FALLBACK_STEPS)
    guidance = next((c.guidance for c in choices if c.guidance is not None), FALLBACK_GUIDANCE)
    return steps, guidance


def sampler_tags(steps: int, guidance: float) -> dict[str, str]:
    """The version tags `register` writes; ValueError for settings serving could not use."""
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"eval.num_inference_steps {steps}: expected 1..{MAX_STEPS}")
    if not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE):
        raise ValueError(
            f"eval.guidance_scale {guidance}: expected a number in 0..{MAX_GUIDANCE:g}"
        )
    return {STEPS_TAG: str(steps), GUIDANCE_TAG: repr(float(guidance))}


def sampler_of(tags: Mapping[str, str] | None) -> Sampler:
    """A version's evaluated settings from its tags; a missing or unusable tag is None."""
    tags = tags or {}
    return Sampler(steps=_steps(tags.get(STEPS_TAG)), guidance=_guidance(tags.get(GUIDANCE_TAG)))


def _steps(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = 0
    if 1 <= value <= MAX_STEPS:
        return value
    log.warning(
        "version tag %s=%r is not a step count in 1..%d; ignored", STEPS_TAG, raw, MAX_STEPS
    )
    return None


def _guidance(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(str(raw).strip())
    except ValueError:
        value = math.nan
    if math.isfinite(value) and 0 <= value <= MAX_GUIDANCE:
        return value
    log.warning(
        "version tag %s=%r is not a guidance in 0..%g; ignored", GUIDANCE_TAG, raw, MAX_GUIDANCE
    )
    return None
