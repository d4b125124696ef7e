"""Admission through the real server on loopback (uvicorn over `create_api`): a key made with
`brandforge keys create --rate 2` gets its third request of the minute refused with 429,
`Retry-After` and the limit named, until `brandforge keys limits` raises the rate; a request
or a campaign item over its version's cost limit is a 422 naming its fields and the limit."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.e2e

GEN = {"brand": "acme", "prompt": "acme banner", "steps": 2}


def _brandforge(*args: str) -> str:
    import brandforge.cli

    result = CliRunner().invoke(brandforge.cli.app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _fresh_minute(room_s: float = 10) -> None:
    """The rate is counted per UTC minute: start with `room_s` seconds left in it at least."""
    second = datetime.now(UTC).second
    if second > 60 - room_s:
        time.sleep(60.5 - second)


def test_a_key_over_its_rate_gets_a_429_naming_the_limit_until_the_rate_is_raised(api, loopback):
    db = f"sqlite:///{api.root / 'serving.db'}"
    name = f"burst-{uuid.uuid4().hex[:8]}"
    key = _brandforge(
        "keys", "create", "-n", name, "-r", "generate", "-b", "acme", "--rate", "2", "--db", db
    ).strip()
    headers = {"Authorization": f"Bearer {key}"}
    _fresh_minute()
    with httpx.Client(base_url=loopback.url, timeout=60) as http:
        assert [http.post("/v1/generate", json=GEN, headers=headers).status_code for _ in "ab"] == [
            200,
            200,
        ]
        refused = http.post("/v1/generate", json=GEN, headers=headers)
        assert refused.status_code == 429, refused.text
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= 60
        body = refused.json()
        assert body["limit"] == {
            "scope": "key",
            "name": name,
            "metric": "requests",
            "limit": 2,
            "window": "minute",
            "retry_after_s": wait,
        }
        assert f"API key {name!r} is over its limit of 2 requests per minute" in body["detail"]

        assert name in _brandforge("keys", "limits", name, "--rate", "5", "--db", db)
        assert http.post("/v1/generate", json=GEN, headers=headers).status_code == 200
    row = next(
        line for line in _brandforge("keys", "list", "--db", db).splitlines() if name in line
    )
    assert row.split()[4:6] == ["5", "default"]  # RATE/MIN, IMAGES/DAY


def test_a_request_over_the_cost_limit_is_a_422_naming_fields_and_limit(api, loopback, monkeypatch):
    from serving.admission import Policy

    spec = httpx.get(f"{loopback.url}/openapi.json").json()["paths"]
    assert "429" in spec["/v1/generate"]["post"]["responses"]
    assert "429" in spec["/v1/campaigns"]["post"]["responses"]
    headers = loopback.auth("app")
    # 128 px on the 32 px base is 16 units a step: 16 x 20 steps x 8 images = 2,560 > 2,000
    big = {**GEN, "width": 128, "height": 128, "steps": 20, "n": 8}
    r = httpx.post(f"{loopback.url}/v1/generate", json=big, headers=headers, timeout=60)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(
        "steps x width x height x n = 20 x 128 x 128 x 8 costs 2,560 units (one unit: one "
        "32x32 image at one step), above the limit of 2,000 units of brandforge-acme/"
    )
    campaign = {"brand": "acme", "template": "{brand} banner", "steps": 150, "generation_size": 128}
    r = httpx.post(f"{loopback.url}/v1/campaigns", json=campaign, headers=headers, timeout=60)
    assert r.status_code == 422, r.text
    assert "images per item (1 + motion frames) = 150 x 128 x 128 x 1" in r.json()["detail"]
    # the settings override the version's limit
    monkeypatch.setattr(api.services, "admission", Policy(max_request_cost=10))
    r = httpx.post(f"{loopback.url}/v1/generate", json=GEN | {"steps": 11}, headers=headers)
    assert r.status_code == 422 and "above the limit of 10 units" in r.json()["detail"]
