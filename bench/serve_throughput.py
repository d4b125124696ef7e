"""Serving throughput and overhead: the Ray Serve app against the pipeline called directly.

Prints images per second at concurrency 1, 4 and 16 through `POST /v1/generate` (one image per
request, batching on) against calling the same engine directly one request at a time; the p50
latency overhead of the HTTP/Ray path at concurrency 1; and the memory of a replica's engine
holding the champion alone against champion + a second version (the canary case).

Needs a registered brand with a champion in the tracking store (`MLFLOW_TRACKING_URI`, default
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brand", default="acme")
    ap.add_argument("--second-version", help="another version of the brand, for the memory figure")
    ap.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    ap.add_argument("--size", type=int, default=32, help="image width and height")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    from registry.core import alias_version, client
    from serving.generator import Engine, ImageJob

    name = f"brandforge-{args.brand}"
    champion = alias_version(client(), name, "champion")
    if champion is None:
        raise SystemExit(
            f"{name} has no champion; `brandforge registry promote {name} --to champion`"
        )
    model_id = f"{name}/{champion.version}"
    job = ImageJob(model_id, f"{args.brand} banner", "", 0, args.size, args.size, args.steps, 2.0)

    # Direct: the same engine in this process, one request at a time.
    gc.collect()
    before = _rss_mb()
    engine = Engine()
    handle = engine.load_adapter(model_id)
    alone = _rss_mb()
    engine.render([job])  # warm-up
    direct = []
    for i in range(args.requests):
        t = time.perf_counter()
        engine.render([ImageJob(**{**job.__dict__, "seed": i})])
        direct.append(time.perf_counter() - t)
    second = None
    if args.second_version:
        other = engine.load_adapter(f"{name}/{args.second_version}")
        second = _rss_mb()
        del other
    del handle, engine
    gc.collect()

    # Through the server.
    import requests

    from serving.app import ServeConfig
    from serving.runtime import served_environment, start, stop

    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BRANDFORGE_SERVING_DB"] = f"sqlite:///{Path(tmp) / 'serving.db'}"
        os.environ["BRANDFORGE_ASSET_DIR"] = str(Path(tmp) / "assets")
        # Throughput, not admission: no per-minute limit on the benchmark's requests.
        os.environ["BRANDFORGE_RATE_PER_MINUTE"] = "0"
        from brandforge.settings import get_settings

        get_settings.cache_clear()
        from serving.db.migrate import upgrade

        upgrade(get_settings().serving_db)  # what `brandforge serve` does before the replicas
        start(ServeConfig(dev=True, max_batch_size=16, env=served_environment()), port=port)
        url = f"http://127.0.0.1:{port}/v1/generate"
        body = {
            "brand": args.brand,
            "prompt": job.prompt,
            "n": 1,
            "width": args.size,
            "height": args.size,
            "steps": args.steps,
        }
        try:
            requests.post(url, json=body, timeout=300).raise_for_status()  # warm-up: load
            results = {}
            for concurrency in (1, 4, 16):
                latencies: list[float] = []

                def call(i: int, lat: list[float] = latencies) -> None:
                    t = time.perf_counter()
                    r = requests.post(url, json={**body, "seed": i}, timeout=300)
                    r.raise_for_status()
                    lat.append(time.perf_counter() - t)

                t0 = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    list(pool.map(call, range(args.requests)))
                results[concurrency] = (args.requests / (time.perf_counter() - t0), latencies)
        finally:
            stop()

    direct_ips = len(direct) / sum(direct)
    print(
        f"model {model_id}, {args.size}x{args.size} px, {args.steps} steps, "
        f"{args.requests} requests per level, {os.cpu_count()} CPUs"
    )
    print(
        f"direct, one at a time:        {direct_ips:6.2f} images/s   "
        f"p50 {statistics.median(direct) * 1000:7.1f} ms"
    )
    for concurrency, (ips, lat) in results.items():
        print(
            f"server, concurrency {concurrency:>2}:      {ips:6.2f} images/s   "
            f"p50 {statistics.median(lat) * 1000:7.1f} ms"
        )
    overhead = statistics.median(results[1][1]) - statistics.median(direct)
    print(
        f"p50 overhead at concurrency 1: {overhead * 1000:7.1f} ms "
        "(HTTP, Ray routing, compliance scoring, asset storage)"
    )
    print(f"engine memory: base + champion {alone - before:7.1f} MB", end="")
    if second is not None:
        print(f"; + a second version {second - alone:6.1f} MB (champion + canary)")
    else:
        print(" (pass --second-version for champion + canary)")


if __name__ == "__main__":
    main()
