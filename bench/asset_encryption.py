"""Measure what encryption at rest costs the asset store, and how fast a key rotation runs.

    python bench/asset_encryption.py [--files 500] [--kb 200]

In a temporary folder (local disk) with a fresh SQLite serving database: writes `--files`
random files of `--kb` kB in clear and encrypted (each write is atomic and fsynced), reads one
back uncached, then adds a key and times `rotate_keys` re-wrapping them all. Prints ms per file
and files per second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

from serving.assets.crypto import append_key, read_key_file
from serving.assets.rotation import rotate_keys
from serving.assets.store import AssetStore, asset_key
from serving.db.engine import engine_for, session_factory
from serving.db.migrate import upgrade
from serving.db.models import Asset, new_asset_id, utcnow


def timed_puts(store: AssetStore, data: bytes, n: int) -> tuple[float, list[tuple[str, str]]]:
    """Seconds to put `data` `n` times; the (asset id, store key) of each."""
    written = []
    start = time.perf_counter()
    for _ in range(n):
        asset_id = new_asset_id()
        key = asset_key("acme", asset_id, "png")
        store.put(key, data)
        written.append((asset_id, key))
    return time.perf_counter() - start, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500, choices=range(1, 100_001), metavar="N")
    parser.add_argument("--kb", type=int, default=200, choices=range(1, 100_001), metavar="KB")
    args = parser.parse_args()
    data = os.urandom(args.kb * 1000)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        key_file = root / "asset.keys"
        append_key(key_file, "k1")
        clear_s, _ = timed_puts(AssetStore(str(root / "clear"), cache_bytes=0), data, args.files)
        store = AssetStore(str(root / "assets"), keys=read_key_file(key_file), cache_bytes=0)
        enc_s, written = timed_puts(store, data, args.files)
        start = time.perf_counter()
        assert store.get(written[0][1]) == data
        read_s = time.perf_counter() - start

        engine = engine_for(f"sqlite:///{root / 'serving.db'}")
        upgrade(engine)
        sessions = session_factory(engine)
        with sessions() as session:
            session.add_all(_row(asset_id, key) for asset_id, key in written)
            session.commit()
        append_key(key_file, "k2")
        rotating = AssetStore(str(root / "assets"), keys=read_key_file(key_file), cache_bytes=0)
        start = time.perf_counter()
        with sessions() as session:
            result = rotate_keys(session, rotating)
        rotate_s = time.perf_counter() - start
        engine.dispose()

    n = args.files
    print(f"{n} files of {args.kb} kB on local disk")
    print(f"  put in clear:    {clear_s / n * 1e3:7.2f} ms/file")
    print(f"  put encrypted:   {enc_s / n * 1e3:7.2f} ms/file")
    print(f"  get + decrypt:   {read_s * 1e3:7.2f} ms (one file, uncached)")
    rate = f"{n / rotate_s:.0f} files/s"
    print(f"  rotate-key:      {rotate_s:7.2f} s for {result.rewrapped} files ({rate})")


def _row(asset_id: str, key: str) -> Asset:
    return Asset(
        id=asset_id,
        request_id=uuid.uuid4().hex,
        brand="acme",
        model_name="brandforge-acme",
        model_version="1",
        variant="champion",
        prompt="bench",
        seed=0,
        width=32,
        height=32,
        steps=1,
        guidance=1.0,
        format="png",
        path=key,
        created_at=utcnow(),
        status="delivered",
        key_id="k1",
    )


if __name__ == "__main__":
    main()
