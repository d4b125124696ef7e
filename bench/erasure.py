"""Erasure: how long finding and erasing one data subject takes as the serving database grows.

Fills a fresh serving database (SQLite in a temporary folder, or `--db postgresql://...`, which
must be empty) with `--assets` asset rows written by the real `Delivery` code path's row
builder and reference recorder, one in `--every` mentioning the subject (an e-mail address),
the others a different address, with a small file each in a local asset store; then times the
plan (the hash lookup, and the clear-text scan of every stored prompt) and the erasure, and
prints both with the counts:

    python bench/erasure.py [--assets 10000] [--every 100] [--db URL]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=100, help="one asset in N is the subject's")
    parser.add_argument("--db", default=None, help="an empty database URL (default: SQLite)")
    args = parser.parse_args()
    os.environ.setdefault("BRANDFORGE_PRIVACY_KEY", "bench-only-privacy-key-0123456789")

    from serving.assets.store import AssetStore, asset_key
    from serving.db.engine import engine_for, session_factory
    from serving.db.migrate import upgrade
    from serving.db.models import Asset, new_asset_id, utcnow
    from serving.delivery.redact import redact
    from serving.privacy.erasure import erase, plan_erasure
    from serving.privacy.subjects import record_subjects, subjects_in

    folder = Path(tempfile.mkdtemp(prefix="bench-erasure-"))
    engine = engine_for(args.db or f"sqlite:///{folder / 'serving.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    store = AssetStore(str(folder / "assets"), cache_bytes=0)
    subject = "jane.doe@example.com"
    started = time.perf_counter()
    with sessions() as session:
        for i in range(args.assets):
            who = subject if i % args.every == 0 else f"user{i}@example.com"
            prompt = f"spring banner {i}, questions to {who}"
            asset_id = new_asset_id()
            key = asset_key("acme", asset_id, "png")
            store.put(key, b"\x89PNG bench")
            session.add(_row(Asset, asset_id, key, redact(prompt), utcnow()))
            record_subjects(
                session, subjects_in(prompt), kind="asset", object_id=asset_id, brand="acme"
            )
        session.commit()
    print(f"filled {args.assets} assets in {time.perf_counter() - started:.1f} s ({engine.url})")

    with sessions() as session:
        t0 = time.perf_counter()
        plan = plan_erasure(session, subject, brands=None)
        t1 = time.perf_counter()
        result = erase(session, store, plan, actor="bench")
        t2 = time.perf_counter()
    print(f"plan:  {(t1 - t0) * 1000:8.1f} ms  ({len(plan.targets)} objects)")
    print(f"erase: {(t2 - t1) * 1000:8.1f} ms  ({result.files_deleted} files deleted)")
    engine.dispose()


def _row(model: type, asset_id: str, key: str, prompt: str, now: object) -> object:
    return model(
        id=asset_id,
        request_id="bench",
        brand="acme",
        model_name="brandforge-acme",
        model_version="1",
        variant="champion",
        prompt=prompt,
        seed=1,
        width=32,
        height=32,
        steps=2,
        guidance=2.0,
        format="png",
        path=key,
        created_at=now,
    )


if __name__ == "__main__":
    main()
