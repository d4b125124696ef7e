"""Prometheus metrics of the ingress, labelled by brand, model version and variant."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

LABELS = ("brand", "version", "variant")


class Metrics:
    """One registry per ingress replica (not the process-global default registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "brandforge_requests",
            "Generate requests answered",
            [*LABELS, "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "brandforge_request_seconds",
            "Generate request latency (s)",
            LABELS,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "brandforge_batch_size",
            "Images per generator batch",
            LABELS,
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=self.registry,
        )
        self.errors = Counter(
            "brandforge_errors",
            "Failed generate requests",
            [*LABELS, "kind"],
            registry=self.registry,
        )
        self.compliance_score = Histogram(
            "brandforge_compliance_score",
            "Compliance score of generated images",
            LABELS,
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "brandforge_request_stage_seconds",
            "Time a generate request spent in each stage: queue, render, score, encode, store (s)",
            [*LABELS, "stage"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

    def stage(self, labels: dict[str, str], stage: str, seconds: float) -> None:
        """One stage of a generate request (`serving.api.timing.STAGES`: bounded values)."""
        self.stage_seconds.labels(**labels, stage=stage).observe(seconds)

    def request(self, labels: dict[str, str], status: str, seconds: float) -> None:
        self.requests.labels(**labels, status=status).inc()
        self.latency.labels(**labels).observe(seconds)

    def error(self, labels: dict[str, str], kind: str) -> None:
        self.errors.labels(**labels, kind=kind).inc()
        self.requests.labels(**labels, status="error").inc()

    def batch(self, labels: dict[str, str], size: int) -> None:
        self.batch_size.labels(**labels).observe(size)

    def compliance(self, labels: dict[str, str], score: float) -> None:
        self.compliance_score.labels(**labels).observe(score)

    def render(self, brands: Iterable[str] | None = None) -> tuple[bytes, str]:
        """The exposition text; with `brands`, only the series labelled with one of them
        (a brand's key sees its own brands' series, never another brand's)."""
        if brands is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        view = CollectorRegistry()
        view.register(_BrandFilter(self.registry, frozenset(brands)))
        return generate_latest(view), CONTENT_TYPE_LATEST


class _BrandFilter(Collector):
    """The metrics of `source`, keeping only samples whose `brand` label is in `brands`."""

    def __init__(self, source: CollectorRegistry, brands: frozenset[str]) -> None:
        self.source = source
        self.brands = brands

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [s for s in family.samples if s.labels.get("brand") in self.brands]
            yield kept
