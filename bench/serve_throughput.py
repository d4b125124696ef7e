"""Serving against the bare engine: what the HTTP + Ray path costs, measured side by side.

In one run, on one machine, with the same model, size and steps:

    engine, one at a time   `Engine.render` of one image in this process (p50 latency)
    engine, batches of 16   `Engine.render` of 16 images in one call (images/s)
    server, concurrency C   `POST /v1/generate` (one image per request, batching on) from C
                            client threads, for C in 1, 4 and 16 (images/s and p50 latency)

and prints the two ratios the serving tier is held to:

    p50 ratio         server p50 at concurrency 1 / engine p50 one at a time (target <= 1.10)
    throughput ratio  server images/s at concurrency 16 / engine batch-16 images/s (>= 0.90)

with the median of each `Server-Timing` stage (queue, render, score, encode, store, total) per
concurrency, so the gap is attributed; and the memory of the engine holding the champion alone
against champion + a second version (the canary case).

Needs a brand with a champion in the tracking store (`MLFLOW_TRACKING_URI`, default
`sqlite:///mlflow.db`). After `make demo`:

    brandforge registry promote brandforge-acme --to champion --reason benchmark
    python bench/serve_throughput.py --brand acme [--second-version 2] [--requests 32]
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONCURRENCY = (1, 4, 16)
ENGINE_BATCH = 16
STAGES = ("queue", "render", "score", "encode", "store", "total")


@dataclass
class Level:
    """One load level's figures: images per second, latencies, Server-Timing stages (ms)."""

    images_per_s: float
    latencies: list[float]
    stages: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of the server's loads at this level
    batch_sum: float = 0.0  # batch sizes the images were drawn in (brandforge_batch_size)
    batch_count: float = 0.0

    @property
    def batch(self) -> float:
        return self.batch_sum / self.batch_count if self.batch_count else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_server_timing(header: str) -> dict[str, float]:
    """`queue;dur=1.2, render;dur=300.0, ...` -> {"queue": 1.2, "render": 300.0, ...} (ms)."""
    stages = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            stages[name] = float(rest[4:])
    return stages


class EngineSide:
    """The engine in this process, with the champion loaded: the bare pipeline."""

    def __init__(self, model_id: str, job: Any, second: str | None) -> None:
        from serving.generator import Engine

        gc.collect()
        self.job = job
        self.memory = {"before": _rss_mb()}
        self.engine = Engine()
        self.handle = self.engine.load_adapter(model_id)
        self.memory["alone"] = _rss_mb()
        if second:
            other = self.engine.load_adapter(second)
            self.memory["second"] = _rss_mb()
            del other
        self.engine.render([job])  # warm-up

    def draw(self, seeds: range) -> float:
        """Seconds to draw one image per seed in one `Engine.render` call."""
        from serving.generator import ImageJob

        jobs = [ImageJob(**{**self.job.__dict__, "seed": s}) for s in seeds]
        t = time.perf_counter()
        self.engine.render(jobs)
        return time.perf_counter() - t


@contextmanager
def server_side(body: dict[str, Any], threads: int, ingresses: int) -> Iterator[str]:
    """A local Ray Serve app on a free port, warmed up; yields its generate URL."""
    import requests as http

    from brandforge.settings import get_settings
    from serving.app import ServeConfig
    from serving.db.migrate import upgrade
    from serving.runtime import served_environment, start, stop

    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1/generate"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BRANDFORGE_SERVING_DB"] = f"sqlite:///{Path(tmp) / 'serving.db'}"
        os.environ["BRANDFORGE_ASSET_DIR"] = str(Path(tmp) / "assets")
        # Throughput, not admission: no per-minute limit on the benchmark's requests.
        os.environ["BRANDFORGE_RATE_PER_MINUTE"] = "0"
        get_settings.cache_clear()
        upgrade(get_settings().serving_db)  # what `brandforge serve` does before the replicas
        # One client drives every level: its fair-share cap must hold the deepest level.
        config = ServeConfig(
            dev=True,
            max_batch_size=ENGINE_BATCH,
            max_queued_images_per_key=max(CONCURRENCY),
            generator_threads=threads,
            ingress_replicas=ingresses,
            env=served_environment(),
        )
        start(config, port=port)
        try:
            warm = http.post(url, json=body, timeout=300)  # warm-up: the model loads
            if warm.status_code != 200:
                raise SystemExit(f"the server answered {warm.status_code}: {warm.text[:500]}")
            yield url
        finally:
            stop()


def measure(
    engine: EngineSide, url: str, body: dict[str, Any], requests: int
) -> tuple[Level, Level, dict[int, Level]]:
    """Engine and server in alternation, so both see the same machine at the same moments:
    one image at a time (engine, then the same seed through the server, `requests` times);
    then rounds of one engine batch of 16 beside 2 x 16 server requests from 16 clients; the
    middle concurrency levels are the server's alone."""
    import requests as http

    one: list[float] = []
    server = {c: Level(0.0, []) for c in CONCURRENCY}
    for i in range(requests):
        one.append(engine.draw(range(i, i + 1)))
        _load(url, body, 1, 1, http.post, server[1])
    for c in CONCURRENCY[1:-1]:
        _load(url, body, requests, c, http.post, server[c])
    top = CONCURRENCY[-1]
    batches: list[float] = []
    for r in range(max(1, requests // (2 * top))):
        batches.append(engine.draw(range(r * ENGINE_BATCH, (r + 1) * ENGINE_BATCH)))
        _load(url, body, 2 * top, top, http.post, server[top])
    for level in server.values():
        level.images_per_s = len(level.latencies) / level.seconds
    single = Level(len(one) / sum(one), one)
    batched = Level(ENGINE_BATCH * len(batches) / sum(batches), batches)
    return single, batched, server


def _batch_totals(metrics: str) -> tuple[float, float]:
    """Sum and count of `brandforge_batch_size` (one observation per image) over all labels."""
    totals = [0.0, 0.0]
    for line in metrics.splitlines():
        for i, name in enumerate(("brandforge_batch_size_sum", "brandforge_batch_size_count")):
            if line.startswith(name + "{") or line.startswith(name + " "):
                totals[i] += float(line.rsplit(" ", 1)[1])
    return totals[0], totals[1]


def _load(
    url: str,
    body: dict[str, Any],
    requests: int,
    concurrency: int,
    post: Callable[..., Any],
    level: Level,
) -> None:
    """`requests` generate calls from `concurrency` client threads, added to `level`: their
    latencies, Server-Timing stages, wall seconds and the batch sizes they were drawn in."""
    import requests as http

    metrics = url.replace("/v1/generate", "/metrics")
    before = _batch_totals(http.get(metrics, timeout=30).text)

    def call(i: int) -> None:
        t = time.perf_counter()
        r = post(url, json={**body, "seed": 1000 + i}, timeout=300)
        if r.status_code != 200:
            raise RuntimeError(f"concurrency {concurrency}: {r.status_code} {r.text[:300]}")
        level.latencies.append(time.perf_counter() - t)
        for name, ms in parse_server_timing(r.headers.get("server-timing", "")).items():
            level.stages.setdefault(name, []).append(ms)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, range(requests)))
    level.seconds += time.perf_counter() - t0
    after = _batch_totals(http.get(metrics, timeout=30).text)
    level.batch_sum += after[0] - before[0]
    level.batch_count += after[1] - before[1]


def report(
    single: Level, batched: Level, server: dict[int, Level], memory: dict[str, float]
) -> None:
    print(
        f"engine, one at a time:     {single.images_per_s:6.2f} images/s   "
        f"p50 {single.p50_ms:7.1f} ms"
    )
    print(f"engine, batches of {ENGINE_BATCH}:     {batched.images_per_s:6.2f} images/s")
    for c, level in server.items():
        print(
            f"server, concurrency {c:>2}:    {level.images_per_s:6.2f} images/s   "
            f"p50 {level.p50_ms:7.1f} ms   batch {level.batch:4.1f}"
        )
    print("Server-Timing medians (ms):  " + "  ".join(f"{s:>7}" for s in STAGES))
    for c, level in server.items():
        medians = [
            statistics.median(level.stages[s]) if level.stages.get(s) else 0.0 for s in STAGES
        ]
        print(f"  concurrency {c:>2}:           " + "  ".join(f"{m:7.1f}" for m in medians))
    p50_ratio = server[1].p50_ms / single.p50_ms
    throughput_ratio = server[CONCURRENCY[-1]].images_per_s / batched.images_per_s
    print(
        f"p50 ratio, server at concurrency 1 / engine one at a time:   {p50_ratio:5.2f}x "
        "(target <= 1.10)"
    )
    print(
        f"throughput ratio, server at concurrency {CONCURRENCY[-1]} / engine batches of "
        f"{ENGINE_BATCH}: {throughput_ratio:5.2f}x (target >= 0.90)"
    )
    print(f"engine memory: base + champion {memory['alone'] - memory['before']:7.1f} MB", end="")
    if "second" in memory:
        print(
            f"; + a second version {memory['second'] - memory['alone']:6.1f} MB (champion + canary)"
        )
    else:
        print(" (pass --second-version for champion + canary)")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--brand", default="acme")
    ap.add_argument("--second-version", help="another version of the brand, for the memory figure")
    ap.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    ap.add_argument("--size", type=int, default=32, help="image width and height")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--ingress-replicas", type=int, default=1, help="as `brandforge serve`")
    ap.add_argument(
        "--generator-threads", type=int, default=0, help="as `brandforge serve` (0: one per core)"
    )
    args = ap.parse_args()

    from brandforge.tracking import registered_model_name
    from registry.core import alias_version, client
    from serving.generator import ImageJob

    name = registered_model_name(args.brand)
    champion = alias_version(client(), name, "champion")
    if champion is None:
        raise SystemExit(
            f"{name} has no champion; `brandforge registry promote {name} --to champion`"
        )
    model_id = f"{name}/{champion.version}"
    prompt = f"{args.brand} banner"
    job = ImageJob(model_id, prompt, "", 0, args.size, args.size, args.steps, 2.0)
    second = f"{name}/{args.second_version}" if args.second_version else None
    engine = EngineSide(model_id, job, second)
    body = {
        "brand": args.brand,
        "prompt": prompt,
        "n": 1,
        "width": args.size,
        "height": args.size,
        "steps": args.steps,
        "guidance": 2.0,
    }
    with server_side(body, args.generator_threads, args.ingress_replicas) as url:
        single, batched, server = measure(engine, url, body, args.requests)
    print(
        f"model {model_id}, {args.size}x{args.size} px, {args.steps} steps, {args.requests} "
        f"requests per level, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    report(single, batched, server, engine.memory)


if __name__ == "__main__":
    main()
