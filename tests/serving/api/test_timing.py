"""Where a generate request's time went: the `Server-Timing` header of every answer and the
`brandforge_request_stage_seconds` histogram on /metrics (`serving.api.timing`)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.api.timing import STAGES, generator_stages, server_timing
from serving.generator import Rendered

GEN = {"brand": "acme", "prompt": "acme banner", "steps": 2}


def parse_server_timing(value: str) -> dict[str, float]:
    """`name;dur=12.3, ...` → {name: ms}."""
    found = {}
    for part in value.split(","):
        name, _, param = part.strip().partition(";")
        key, _, dur = param.partition("=")
        assert key == "dur", part
        found[name] = float(dur)
    return found


def stage_counts(text: str, brand: str) -> dict[str, float]:
    """Observations of each stage's histogram for `brand`, from the exposition `text`."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "brandforge_request_stage_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels["brand"] == brand:
                stage = sample.labels["stage"]
                counts[stage] = counts.get(stage, 0.0) + sample.value
    return counts


def check_timing(header: str | None, images: int = 1) -> dict[str, float]:
    assert header is not None
    timing = parse_server_timing(header)
    assert list(timing) == [*STAGES, "total"]
    assert all(ms >= 0 for ms in timing.values())
    # The stages that run one after another fit in the total (each part is rounded to 0.1 ms:
    # together they may pass it by that much each). `score` is summed over the images' scorings,
    # which run beside encoding and storing (serving.delivery.deliver_live), so it is not part
    # of that sum; each scoring still ends within the request.
    in_turn = ("queue", "render", "encode", "store")
    assert sum(timing[s] for s in in_turn) <= timing["total"] + 0.05 * len(in_turn)
    assert timing["score"] <= timing["total"] * images + 0.05
    return timing


@pytest.mark.e2e
def test_a_generate_answer_says_where_its_time_went_and_metrics_count_the_stages(api):
    before = stage_counts(api.client.get("/metrics", headers=api.auth("ops")).text, "acme")
    r = api.client.post("/v1/generate", json={**GEN, "n": 2}, headers=api.auth("app"))
    assert r.status_code == 200, r.text
    timing = check_timing(r.headers.get("server-timing"), images=2)
    assert timing["render"] > 0 and timing["encode"] > 0 and timing["store"] > 0
    after = stage_counts(api.client.get("/metrics", headers=api.auth("ops")).text, "acme")
    assert set(after) == set(STAGES)
    assert all(after[s] == before.get(s, 0.0) + 1 for s in STAGES)


@pytest.mark.e2e
def test_the_header_reaches_a_client_over_http(loopback):
    r = httpx.post(
        f"{loopback.url}/v1/generate", json=GEN, headers=loopback.auth("app"), timeout=120
    )
    assert r.status_code == 200, r.text
    check_timing(r.headers.get("server-timing"))


def test_the_generator_share_is_the_image_ready_last_and_the_header_is_in_ms():
    rendered = [
        Rendered(np.zeros((1, 1, 3), np.uint8), 1, 1, seconds=0.5, queued_s=0.0),
        Rendered(
            np.zeros((1, 1, 3), np.uint8), 2, 1, seconds=0.25, queued_s=0.5
        ),  # drawn after the first: ready last
    ]
    assert generator_stages(rendered) == {"queue": 0.5, "render": 0.25}
    assert generator_stages([]) == {"queue": 0.0, "render": 0.0}
    stages = {"queue": 0.0123, "render": 1.5, "score": 0.002, "encode": 0.01, "store": 0.0}
    assert server_timing(stages, 2.0) == (
        "queue;dur=12.3, render;dur=1500.0, score;dur=2.0, encode;dur=10.0, store;dur=0.0, "
        "total;dur=2000.0"
    )
