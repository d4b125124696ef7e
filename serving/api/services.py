"""What the routes work with: one `Services` object per ingress replica.

The Ray application builds it with the generator deployment's handle behind `Renderer`; tests
build it with an in-process `Engine`. Routes never see Ray.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from serving.admission import Policy
    from serving.api.prometheus import Metrics
    from serving.assets.store import AssetStore
    from serving.catalog import Catalog
    from serving.config import ServeConfig
    from serving.generator import ImageJob, Rendered
    from serving.rollout.controller import RolloutController


class Renderer(Protocol):
    """Draws images of one model version (all `jobs` share `model_id`)."""

    async def render(self, jobs: list[ImageJob]) -> list[Rendered]: ...

    async def resident(self) -> dict[str, list[str]]: ...


def _admission_policy() -> Policy:
    from serving.admission import Policy

    return Policy.from_settings()


@dataclass
class Services:
    config: ServeConfig
    sessions: sessionmaker[Session]
    store: AssetStore
    catalog: Catalog
    rollouts: RolloutController
    metrics: Metrics
    renderer: Renderer
    retention_days: dict[str, float] | None = None
    # rate limits, quotas and cost limits (serving.admission); default: from the settings
    admission: Policy = field(default_factory=_admission_policy)
    # shadow renders in flight (kept referenced until done)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
