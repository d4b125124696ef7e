"""C2PA content credentials through the real HTTP API on loopback: with a certificate in the
settings, a live generate delivers a file whose signed manifest c2pa validates, and /readyz
says so; without one, files are delivered unsigned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from serving.delivery.credentials import read_credentials
from serving.delivery.dev_certificate import dev_certificate_chain
from serving.delivery.manifest import DIGITAL_SOURCE_TYPE

BODY: dict[str, Any] = {"brand": "acme", "prompt": "acme banner", "steps": 2, "format": "jpeg"}


@pytest.fixture
def signing_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """BRANDFORGE_C2PA_CERT and _KEY naming a fresh development chain; yields its CA (PEM)."""
    from brandforge.settings import get_settings

    chain = dev_certificate_chain(days=2)
    (tmp_path / "chain.pem").write_bytes(chain.chain)
    (tmp_path / "key.pem").write_bytes(chain.key)
    monkeypatch.setenv("BRANDFORGE_C2PA_CERT", str(tmp_path / "chain.pem"))
    monkeypatch.setenv("BRANDFORGE_C2PA_KEY", str(tmp_path / "key.pem"))
    get_settings.cache_clear()
    yield chain.ca.decode()
    monkeypatch.undo()
    get_settings.cache_clear()


def _generate(loopback) -> tuple[dict, bytes]:
    answer = requests.post(
        f"{loopback.url}/v1/generate", json=BODY, headers=loopback.auth("app"), timeout=120
    )
    assert answer.status_code == 200, answer.text
    image = answer.json()["images"][0]
    data = requests.get(f"{loopback.url}{image['url']}", headers=loopback.auth("app"), timeout=30)
    return image, data.content


def test_live_generate_delivers_a_file_with_valid_c2pa_credentials(loopback, signing_settings):
    ready = requests.get(f"{loopback.url}/readyz", timeout=60).json()
    assert ready["content_credentials"]["signing"] is True
    assert "C2PA signer" in ready["content_credentials"]["subject"]
    image, data = _generate(loopback)
    found = read_credentials(data, trust_anchors=signing_settings)
    assert found["status"] == "valid" and found["trusted"] is True
    assert found["actions"] == [
        {"action": "c2pa.created", "digital_source_type": DIGITAL_SOURCE_TYPE}
    ]
    lineage = found["lineage"]
    assert lineage["asset_id"] == image["asset_id"] and lineage["brand"] == "acme"
    assert lineage["model_name"] == "brandforge-acme" and lineage["model_version"] == "1"


def test_without_a_certificate_files_are_delivered_unsigned(loopback):
    ready = requests.get(f"{loopback.url}/readyz", timeout=60).json()
    assert ready["content_credentials"] == {"signing": False}
    _, data = _generate(loopback)
    assert read_credentials(data)["status"] == "none"
