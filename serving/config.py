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
    batch_wait_s: float = 0.05
    generator_replicas: int = 1
    default_steps: int = 20
    default_guidance: float = 2.0
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
