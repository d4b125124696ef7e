"""Where a generate request's time went: the stages of the `Server-Timing` header and of the
`brandforge_request_stage_seconds` histogram.

    queue   the images waited in the generator replica's queue (`serving.scheduler`)
    render  the generator drew them (`serving.generator.Engine.render`)
    score   compliance scoring against the brand kit      ┐
    encode  watermark, manifest, encoding, C2PA signature ├ `serving.delivery.deliver_live`
    store   files to the asset store, rows to the database┘
    total   the whole request in the ingress (header only: `brandforge_request_seconds` has it)

The stages do not add up to `total`: admission, the catalog and the trip to the generator and
back are in `total` only. Pure functions; the route measures and records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from serving.generator import Rendered

STAGES = ("queue", "render", "score", "encode", "store")


def generator_stages(rendered: Sequence[Rendered]) -> dict[str, float]:
    """`queue` and `render` (s) of a request's images: those of the image that was ready last
    (all of a request's images are queued at once, so its wait plus its drawing is the
    generator's share of the request; images drawn in several batches are not summed)."""
    if not rendered:
        return {"queue": 0.0, "render": 0.0}
    last = max(rendered, key=lambda r: r.queued_s + r.seconds)
    return {"queue": max(last.queued_s, 0.0), "render": max(last.seconds, 0.0)}


def server_timing(stages: Mapping[str, float], total_s: float) -> str:
    """The `Server-Timing` header value (RFC: `name;dur=<ms>`), stages in `STAGES` order and
    then `total`."""
    parts = [(name, stages.get(name, 0.0)) for name in STAGES] + [("total", total_s)]
    return ", ".join(f"{name};dur={max(seconds, 0.0) * 1000:.1f}" for name, seconds in parts)
