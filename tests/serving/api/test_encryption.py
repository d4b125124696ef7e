"""Encryption at rest through the real server: the API's own services with an encrypted asset
store, served by uvicorn on 127.0.0.1. A generated image is ciphertext on disk and the image
over HTTP; a file that fails to decrypt is a 500 with a request id that names no key."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from serving.assets.crypto import KeyRing, decrypt
from serving.assets.store import AssetStore
from serving.db.models import Asset
from tests.serving.api.conftest import build_services, serve_loopback

PROMPT = "acme summer banner for jane.doe@example.com"


def ring(*ids: str) -> KeyRing:
    return KeyRing({i: (i.encode() * 32)[:32] for i in ids}, newest=ids[-1])


def test_generate_then_get_over_http_while_the_file_on_disk_is_ciphertext(
    api, tmp_path: Path, caplog
) -> None:
    from serving.api.create import create_api
    from serving.auth import create_key

    services = build_services(tmp_path)  # the registry of `api`, a database of its own
    services.renderer, services.catalog = api.services.renderer, api.services.catalog  # warm
    root = tmp_path / "encrypted"
    services.store = AssetStore(str(root), keys=ring("k1"), cache_bytes=0)
    with services.sessions() as session:
        key, _ = create_key(session, name="app", roles=["generate"], brands=["acme"])
        session.commit()
    auth = {"Authorization": f"Bearer {key}"}
    body: dict[str, Any] = {"brand": "acme", "prompt": PROMPT, "steps": 2}

    with serve_loopback(create_api(services)) as url:
        made = requests.post(f"{url}/v1/generate", json=body, headers=auth, timeout=60)
        assert made.status_code == 200, made.text
        asset_id = made.json()["images"][0]["asset_id"]
        with services.sessions() as session:
            row = session.get(Asset, asset_id)
            assert row is not None and row.key_id == "k1"
            path = root / row.path
        on_disk = path.read_bytes()
        assert b"PNG" not in on_disk and b"summer" not in on_disk and b"acme" not in on_disk

        got = requests.get(f"{url}/v1/assets/{asset_id}", headers=auth, timeout=30)
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        assert got.content == decrypt(on_disk, ring=ring("k1"), store_key=row.path)
        assert Image.open(io.BytesIO(got.content)).size == (32, 32)

        # Served by a ring without the file's key, then with the file altered: a server-side
        # problem, answered with a request id; the log names the store key and key id.
        for store_ring, change in ((ring("k2"), None), (ring("k1"), len(on_disk) // 2)):
            services.store = AssetStore(str(root), keys=store_ring, cache_bytes=0)
            if change is not None:
                path.write_bytes(
                    on_disk[:change] + bytes([on_disk[change] ^ 1]) + on_disk[change + 1 :]
                )
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="serving.api.errors"):
                broken = requests.get(f"{url}/v1/assets/{asset_id}", headers=auth, timeout=30)
            assert broken.status_code == 500
            answer = broken.json()
            assert answer["request_id"] == broken.headers["x-request-id"]
            assert answer["request_id"] in answer["detail"] and "decrypted" in answer["detail"]
            assert "k1" not in broken.text and row.path not in broken.text
            logged = " ".join(r.getMessage() for r in caplog.records)
            assert row.path in logged and "'k1'" in logged and answer["request_id"] in logged

        # A clear file put in place of the encrypted one (its row records key id k1) is
        # refused, not served, even when the store's cache already holds the clear bytes.
        services.store = AssetStore(str(root), keys=ring("k1"))
        path.write_bytes(got.content)
        assert services.store.get(row.path) == got.content  # a reader that expects no key
        replaced = requests.get(f"{url}/v1/assets/{asset_id}", headers=auth, timeout=30)
        assert replaced.status_code == 500 and "decrypted" in replaced.json()["detail"]
