"""Abuse: one key floods the server with maximum-cost requests while another key sends small
requests one at a time.

Prints the small requests' p50/p95 with the server idle and then under the flood (side by side,
in the same run, on the same server), the flood's answers by status (200, 429 rate limit or
quota, 503 queue full, 504 deadline), the slowest `/healthz` answer during the flood, and the
memory (RSS) of the serve processes (this driver and every Ray process it started). Goal (issue
12): the small requests' p95 stays within 3x idle and the server answers throughout.

Bounded and loopback only: the server listens on 127.0.0.1 with a fresh serving database, the
flood lasts as long as the small requests do, and every request has a timeout. A "maximum-cost"
request is the served version's largest side at as many steps as its cost limit allows (one
image). Needs a registered brand with a champion (`MLFLOW_TRACKING_URI`, as
bench/serve_throughput.py):

    python bench/abuse.py --brand acme [--small 20] [--flood-clients 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_rss_mb() -> float:
    """RSS of this process and every process it started (Ray's GCS, raylet, replicas)."""
    import psutil

    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


class Flood:
    """`clients` threads sending `body` as one key until stopped; a refused client pauses
    `pause_s` (a tight loop of refusals would only measure this machine's two cores)."""

    def __init__(self, url: str, key: str, body: dict[str, Any], clients: int, pause_s: float):
        self.url, self.key, self.body, self.pause_s = url, key, body, pause_s
        self.answers: Counter[str] = Counter()
        self.in_flight = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        import requests

        headers = {"Authorization": f"Bearer {self.key}"}
        while not self.stop.is_set():
            self.in_flight += 1
            try:
                r = requests.post(self.url, json=self.body, headers=headers, timeout=120)
                status = str(r.status_code)
            except requests.RequestException as err:
                status = type(err).__name__
            finally:
                self.in_flight -= 1
            if not self.stop.is_set():
                self.answers[status] += 1
            if status != "200":
                self.stop.wait(self.pause_s)


class Watch:
    """Probes /healthz and samples the serve processes' memory until stopped."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.health: list[float] = []
        self.failures = 0
        self.rss: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import requests

        while not self.stop.wait(0.25):
            t = time.perf_counter()
            try:
                ok = requests.get(f"{self.base}/healthz", timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            self.health.append(time.perf_counter() - t)
            self.failures += not ok
            self.rss.append(_serve_rss_mb())


def _small_requests(url: str, key: str, body: dict[str, Any], count: int) -> list[float]:
    import requests

    latencies = []
    for i in range(count):
        t = time.perf_counter()
        r = requests.post(
            url, json={**body, "seed": i}, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        if r.status_code != 200:
            raise SystemExit(f"a small request got {r.status_code}: {r.text[:300]}")
        latencies.append(time.perf_counter() - t)
    return latencies


def _flood_body(brand: str, model_id: str) -> dict[str, Any]:
    """The largest request the version admits: its largest side, one image, as many steps as
    its cost limit allows (at most 150)."""
    from serving.catalog import Catalog

    limits = Catalog().sizes(model_id)
    side = limits.max_side
    steps = min(150, int(limits.max_cost // ((side / limits.native) ** 2)))
    while steps < 1:
        side //= 2
        steps = min(150, int(limits.max_cost // ((side / limits.native) ** 2)))
    prompt = f"{brand} banner"
    return {"brand": brand, "prompt": prompt, "n": 1, "width": side, "height": side, "steps": steps}


def _keys(brand: str) -> dict[str, str]:
    from brandforge.settings import get_settings
    from serving.auth import create_key
    from serving.db.engine import engine_for, session_factory
    from serving.db.migrate import upgrade

    engine = engine_for(get_settings().serving_db)
    upgrade(engine)  # what `brandforge serve` does before the replicas start
    keys = {}
    with session_factory(engine)() as session:
        for name in ("flood", "small"):
            keys[name], _ = create_key(session, name=name, roles=["generate"], brands=[brand])
        session.commit()
    engine.dispose()
    return keys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brand", default="acme")
    ap.add_argument("--small", type=int, default=20, help="small requests per phase")
    ap.add_argument("--small-steps", type=int, default=20)
    ap.add_argument("--flood-clients", type=int, default=24, help="concurrent flood clients")
    ap.add_argument("--flood-pause-s", type=float, default=0.2, help="a refused client's pause")
    args = ap.parse_args()

    from registry.core import alias_version, client

    name = f"brandforge-{args.brand}"
    champion = alias_version(client(), name, "champion")
    if champion is None:
        raise SystemExit(f"{name} has no champion; `brandforge registry promote {name} ...`")
    model_id = f"{name}/{champion.version}"

    from brandforge.settings import get_settings
    from serving.app import ServeConfig
    from serving.runtime import served_environment, start, stop

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/v1/generate"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BRANDFORGE_SERVING_DB"] = f"sqlite:///{Path(tmp) / 'serving.db'}"
        os.environ["BRANDFORGE_ASSET_DIR"] = str(Path(tmp) / "assets")
        get_settings.cache_clear()
        keys = _keys(args.brand)
        config = ServeConfig(env=served_environment())
        start(config, port=port)
        try:
            report = _run(args, url, base, keys, model_id)
        finally:
            stop()
    _print(args, model_id, config, report)


def _run(
    args: argparse.Namespace, url: str, base: str, keys: dict[str, str], model_id: str
) -> dict[str, Any]:
    small = {"brand": args.brand, "prompt": f"{args.brand} poster", "n": 1}
    small["steps"] = args.small_steps
    flood_body = _flood_body(args.brand, model_id)
    _small_requests(url, keys["small"], small, 2)  # warm-up: the adapter loads
    idle_rss = _serve_rss_mb()
    idle = _small_requests(url, keys["small"], small, args.small)

    flood = Flood(url, keys["flood"], flood_body, args.flood_clients, args.flood_pause_s)
    watch = Watch(base)
    watch.thread.start()
    for thread in flood.threads:
        thread.start()
    time.sleep(3)  # the flood fills the queue first
    started = time.perf_counter()
    loaded = _small_requests(url, keys["small"], small, args.small)
    seconds = time.perf_counter() - started + 3
    flood.stop.set()
    watch.stop.set()
    watch.thread.join()
    from ray import serve

    from serving.runtime import APP_NAME

    queue = serve.get_deployment_handle("Generator", app_name=APP_NAME).stats.remote().result()
    return {
        "queue": queue,
        "small": small,
        "flood_body": flood_body,
        "idle": idle,
        "loaded": loaded,
        "answers": dict(flood.answers),
        "in_flight": flood.in_flight,
        "seconds": seconds,
        "health": watch.health,
        "failures": watch.failures,
        "idle_rss": idle_rss,
        "peak_rss": max(watch.rss, default=idle_rss),
    }


def _print(args: argparse.Namespace, model_id: str, config: Any, r: dict[str, Any]) -> None:
    f = r["flood_body"]
    print(
        f"model {model_id}; {os.cpu_count()} CPUs; generator queue {config.max_queued_images} "
        f"images, {config.max_queued_images_per_key} per key, batches of {config.max_batch_size}"
    )
    print(
        f"small: native size, {r['small']['steps']} steps, 1 image, one at a time, "
        f"{args.small} per phase"
    )
    print(
        f"flood: {f['width']}x{f['height']} px, {f['steps']} steps, 1 image (the cost limit), "
        f"{args.flood_clients} clients of one key"
    )
    print("                         p50 ms    p95 ms    max ms")
    for label, lat in (("small, idle", r["idle"]), ("small, under the flood", r["loaded"])):
        print(f"{label:<24} {_p(lat, 0.5):8.0f}  {_p(lat, 0.95):8.0f}  {max(lat) * 1000:8.0f}")
    ratio = _p(r["loaded"], 0.95) / _p(r["idle"], 0.95)
    print(f"small p95 under the flood / idle: {ratio:.2f}x (goal: at most 3x)")
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["answers"].items()))
    print(
        f"flood answers in {r['seconds']:.0f} s: {answers or 'none'}; "
        f"{r['in_flight']} still waiting at the end"
    )
    q, small_images = r["queue"], 2 + 2 * args.small
    print(
        f"generator: {q['drawn'] - small_images} flood images drawn, {q['drawn_aside']} "
        f"batches drawn aside (a flood batch paused at a step), {q['dropped_gone']} images "
        f"dropped for gone clients, {q['dropped_expired']} past their deadline"
    )
    health = r["health"]
    print(
        f"/healthz during the flood: {len(health)} probes, p50 {_p(health, 0.5):.0f} ms, "
        f"slowest {max(health, default=0) * 1000:.0f} ms, {r['failures']} failed"
    )
    print(
        f"serve processes RSS: {r['idle_rss']:.0f} MB idle, {r['peak_rss']:.0f} MB peak "
        "under the flood"
    )


if __name__ == "__main__":
    main()
