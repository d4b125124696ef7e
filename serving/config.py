"""Settings of one running serving application (`brandforge serve` options and environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServeConfig:
    """What every deployment of the application is built with; Ray ships it to each replica."""

    dev: bool = False  # no API key needed (refused unless asked for)
    max_adapters: int = 4  # resident adapters per generator replica (LRU)
    max_batch_size: int = 4
    batch_wait_s: float = 0.5  # at most; see serving.scheduler.fill_plan
    # Threads torch draws with in each generator replica; 0: one per core of its machine. Ray
    # would otherwise leave a replica without a CPU reservation at one thread (OMP_NUM_THREADS).
    generator_threads: int = 0
    generator_replicas: int = 1
    # HTTP ingress replicas: each scores, marks, encodes and stores its requests' images in its
    # own process (its own GIL), so the work between two batches spreads over the cores.
    ingress_replicas: int = 1
    # A server-wide override of the steps and guidance a request that names none draws with;
    # None: each version's own, those it was evaluated with (registry.sampler).
    default_steps: int | None = None
    default_guidance: float | None = None
    max_steps: int = 150  # denoising steps a request may ask for (a 422 names the limit above)
    alias_ttl_s: float = 2.0  # how long a resolved champion is trusted before asking again
    env: tuple[tuple[str, str], ...] = ()  # tracking URI, stores: what every replica must see
    rollout: dict[str, Any] = field(default_factory=dict)  # params.yaml `rollout:` (thresholds)
    campaign_workers: int = 1  # CampaignRunner replicas (0: campaigns queue but nothing runs)
    campaign_claim: int = 4  # items a worker takes per round (they render as one batch)
    campaign_poll_s: float = 0.5  # how often an idle worker looks at the queue
    campaign_lease_s: float = 120.0  # an item a dead worker held goes back after this
    # The largest request body read: a campaign spec of 5,000 items fits in a few hundred KB;
    # anything larger is refused (413) before it is read whole.
    max_body_bytes: int = 1 << 20
    # Live images waiting per generator replica, and per API key, before new requests get 503
    # with Retry-After (serving.scheduler); campaign work is not counted.
    max_queued_images: int = 32
    max_queued_images_per_key: int = 8
    # How long a live request may take (queue + drawing) before it is dropped with 504; a
    # client may ask for less or more with X-Request-Deadline-Ms, within [1 s, max_deadline_s].
    deadline_s: float = 60.0
    max_deadline_s: float = 300.0
