"""Campaign throughput: items per minute through the real Ray Serve app, batching on and off.

Starts the serving application twice on loopback, each time with a fresh serving database and
asset folder: once with batching (the generator batches up to --batch images, a campaign worker
draws --batch items per round) and once without (batch size 1, one item per round). Submits the
same campaign (variables x ratios x variants, composed with the headline and CTA, PNG) and times
it from submission to the last item. Prints items per minute for both and the speed-up, and the
p50 latency of live `POST /v1/generate` requests (one at a time) before the campaign and while it
runs: campaign work only joins the generator's batches while no live request waits. And the
share of items that passed the brand kit (delivered) against those held for review.

Needs a registered brand with a champion in the tracking store (`MLFLOW_TRACKING_URI`, default
`sqlite:///mlflow.db`). After `make demo`:

    brandforge registry promote brandforge-acme --to champion --reason benchmark
    python bench/campaign_throughput.py --brand acme [--variants 4] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_once(args: argparse.Namespace, *, batch: int, folder: Path) -> tuple[float, dict]:
    """Seconds from submission to the campaign's end, and its final state."""
    import requests

    from brandforge.params import RolloutParams
    from brandforge.settings import get_settings
    from serving.app import ServeConfig
    from serving.auth import create_key
    from serving.db.engine import engine_for, session_factory
    from serving.db.migrate import upgrade
    from serving.runtime import served_environment, start, stop

    os.environ["BRANDFORGE_SERVING_DB"] = f"sqlite:///{folder / 'serving.db'}"
    os.environ["BRANDFORGE_ASSET_DIR"] = str(folder / "assets")
    get_settings.cache_clear()
    db = engine_for(None)
    upgrade(db)
    with session_factory(db)() as session:
        # Throughput, not admission: limits the benchmark never reaches.
        key, _ = create_key(
            session,
            name="bench",
            roles=["generate"],
            brands=["*"],
            rate_per_minute=1_000_000,
            daily_images=1_000_000_000,
        )
        session.commit()
    port = _free_port()
    config = ServeConfig(
        max_batch_size=batch,
        batch_wait_s=0.05 if batch > 1 else 0.0,
        campaign_claim=batch,
        campaign_poll_s=0.1,
        rollout=RolloutParams().model_dump(),
        env=served_environment(),
    )
    start(config, port=port)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        spec = {
            "brand": args.brand,
            "template": "{brand} {product} banner",
            "variables": {"product": ["shoes", "bags"]},
            "ratios": ["1:1", "9:16"],
            "variants": args.variants,
            "formats": ["png"],
            "headline": "New {product}",
            "cta": "Shop now",
            "size": args.size,
            "generation_size": args.generation_size,
            "steps": args.steps,
            "max_regenerations": 0,
            "seed": 1,
        }
        # warm-up: the adapter loads on the first item
        warm = requests.post(
            f"{url}/v1/campaigns",
            json={**spec, "variants": 1, "ratios": ["1:1"]},
            headers=headers,
            timeout=60,
        ).json()
        _wait(url, headers, warm["campaign_id"])
        live = {
            "brand": args.brand,
            "prompt": f"{args.brand} banner",
            "n": 1,
            "width": 32,
            "height": 32,
            "steps": args.steps,
        }
        idle = [_generate(url, headers, live) for _ in range(args.live)]
        started = time.perf_counter()
        submitted = requests.post(f"{url}/v1/campaigns", json=spec, headers=headers, timeout=60)
        submitted.raise_for_status()
        # live requests while the campaign drains: they go ahead of campaign work
        busy = [_generate(url, headers, live) for _ in range(args.live)]
        state = _wait(url, headers, submitted.json()["campaign_id"])
        seconds = time.perf_counter() - started
        state["live_p50_idle_ms"] = statistics.median(idle) * 1000 if idle else None
        state["live_p50_during_ms"] = statistics.median(busy) * 1000 if busy else None
        return seconds, state
    finally:
        stop()


def _generate(url: str, headers: dict, body: dict) -> float:
    import requests

    t = time.perf_counter()
    requests.post(f"{url}/v1/generate", json=body, headers=headers, timeout=120).raise_for_status()
    return time.perf_counter() - t


def _wait(url: str, headers: dict, campaign_id: str) -> dict:
    import requests

    while True:
        state = requests.get(
            f"{url}/v1/campaigns/{campaign_id}?items=false", headers=headers, timeout=60
        ).json()
        if state["state"] not in ("queued", "running"):
            return state
        time.sleep(0.1)


def kit_line(counts: dict[str, int]) -> str:
    """Delivered against held for review: the share of campaign items that passed the kit
    (an item goes to review when its asset fails the brand kit, or when asked)."""
    done, review = counts.get("done", 0), counts.get("review", 0)
    finished = done + review
    share = f"{done / finished:.0%}" if finished else "n/a"
    return f"passed the brand kit: {done} delivered, {review} held for review ({share} passed)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brand", default="acme")
    ap.add_argument("--variants", type=int, default=4, help="seeds per combination and ratio")
    ap.add_argument("--batch", type=int, default=8, help="batch size with batching on")
    ap.add_argument("--size", type=int, default=256, help="long side of the delivered asset")
    ap.add_argument("--generation-size", type=int, default=32, help="long side the model draws")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument(
        "--live", type=int, default=5, help="live requests timed before and during the campaign"
    )
    args = ap.parse_args()

    results = {}
    for label, batch in (("batching on", args.batch), ("batching off", 1)):
        with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
            seconds, state = run_once(args, batch=batch, folder=Path(tmp))
        items = state["total"]
        results[label] = items / seconds * 60
        print(
            f"{label:13s} (batch {batch}): {items} items in {seconds:6.1f} s = "
            f"{results[label]:6.1f} items/min  {state['counts']}"
        )
        print(f"{'':13s} {kit_line(state['counts'])}")
        if state["live_p50_idle_ms"] is not None:
            print(
                f"{'':13s} live /v1/generate p50: {state['live_p50_idle_ms']:.0f} ms idle, "
                f"{state['live_p50_during_ms']:.0f} ms while the campaign runs"
            )
    print(f"speed-up from batching: {results['batching on'] / results['batching off']:.2f}x")


if __name__ == "__main__":
    main()
