"""The HTTP API as a careless or hostile client meets it: every route checks role and brand,
held assets stay with reviewers, bad input is a 4xx naming the field, never a 5xx."""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.e2e

GEN = {"brand": "acme", "prompt": "acme banner", "steps": 2}


def _post_raw(api, path: str, raw: str, key: str = "app"):
    headers = {**api.auth(key), "Content-Type": "application/json"}
    return api.client.post(path, content=raw.encode("utf-8", "surrogatepass"), headers=headers)


# -- structure --------------------------------------------------------------------------------


def test_each_api_has_its_own_routes(api):
    from serving.api.create import create_api

    first = create_api(api.services)
    count = len(first.routes)
    second = create_api(api.services)
    assert len(first.routes) == count == len(second.routes)  # nothing registered twice
    assert first.openapi()["paths"] == second.openapi()["paths"]


def test_openapi_documents_security_and_error_answers(api):
    spec = api.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert {"apiKey", "apiKeyHeader"} <= set(schemes)
    generate = spec["paths"]["/v1/generate"]["post"]
    assert generate["security"]
    assert {"401", "403", "404", "409", "422"} <= set(generate["responses"])
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


# -- generate ---------------------------------------------------------------------------------


def test_generate_defaults_to_the_versions_native_size(api):
    import io

    from PIL import Image

    r = api.client.post("/v1/generate", json=GEN, headers=api.auth("app"))
    assert r.status_code == 200, r.text
    image_id = r.json()["images"][0]["asset_id"]
    data = api.client.get(f"/v1/assets/{image_id}", headers=api.auth("app")).content
    assert Image.open(io.BytesIO(data)).size == (32, 32)  # the tiny base's resolution


def test_generate_above_the_versions_limit_is_a_422_naming_it(api):
    limits = api.services.catalog.sizes("brandforge-acme/1")
    too_big = (limits.max_side // 8 + 1) * 8
    if too_big > 2048:
        pytest.skip("the version allows the absolute maximum")
    r = api.client.post("/v1/generate", json={**GEN, "width": too_big}, headers=api.auth("app"))
    assert r.status_code == 422
    assert "width" in r.text and str(limits.max_side) in r.text


@pytest.mark.parametrize(
    "raw",
    [
        '{"brand": "acme", "prompt": "x", "guidance": NaN}',
        '{"brand": "acme", "prompt": "x", "guidance": Infinity}',
        '{"brand": "acme", "prompt": "x \\ud800"}',
        '{"brand": "acme", "prompt": "x\\u0000y"}',
        '{"brand": "acme", "prompt": "   \\n  "}',
        '{"brand": "acme", "prompt": "x", "n": true}',
        '{"brand": "acme", "prompt": "x", "width": "32"}',
        '{"brand": "acme", "prompt": "x", "steps": 2.5}',
        '{"brand": "Acme", "prompt": "x"}',
        '{"brand": "bases", "prompt": "x"}',
        '{"brand": "acme", "prompt": "x", "extra": 1}',
        '{"brand": "acme", "prompt": "x", "seed": 9223372036854775806, "n": 3}',
        "not json",
    ],
)
def test_bad_generate_input_is_a_422(api, raw):
    files_before = sorted((api.root / "assets").rglob("*"))
    r = _post_raw(api, "/v1/generate", raw)
    assert r.status_code == 422, (raw, r.status_code, r.text)
    body = r.json()
    assert body["request_id"] and body["detail"]
    assert sorted((api.root / "assets").rglob("*")) == files_before  # nothing stored


def test_a_huge_body_is_a_413_before_it_is_read(api):
    raw = json.dumps({**GEN, "prompt": "x" * (20 * 1024 * 1024)})
    r = _post_raw(api, "/v1/generate", raw)
    assert r.status_code == 413
    assert "larger than" in r.json()["detail"]


def test_generate_needs_a_key_with_role_and_brand(api):
    assert api.client.post("/v1/generate", json=GEN).status_code == 401
    assert (
        api.client.post("/v1/generate", json=GEN, headers=api.auth("reviewer")).status_code == 403
    )
    other = api.client.post("/v1/generate", json=GEN, headers=api.auth("initech-app"))
    assert other.status_code == 403 and "acme" in other.json()["detail"]


# -- listings are filtered by the key's brands ------------------------------------------------


def test_models_lists_only_the_keys_brands(api):
    mine = api.client.get("/v1/models", headers=api.auth("initech-app")).json()["models"]
    assert [m["brand"] for m in mine] == ["initech"]
    every = api.client.get("/v1/models", headers=api.auth("ops")).json()["models"]
    assert {"acme", "initech"} <= {m["brand"] for m in every}
    assert "bases" not in {m["brand"] for m in every}


def test_models_report_each_versions_share_of_images_passing_the_kit(api):
    def acme() -> dict:
        models = api.client.get("/v1/models", headers=api.auth("app")).json()["models"]
        (mine,) = models
        return mine["brand_kit"].get(mine["champion"], {"images": 0, "passed": 0})

    before = acme()
    r = api.client.post("/v1/generate", json={**GEN, "n": 3}, headers=api.auth("app"))
    assert r.status_code == 200, r.text
    passed = sum(bool(i["compliance"]["passed"]) for i in r.json()["images"])
    after = acme()
    assert after["images"] - before["images"] == 3
    assert after["passed"] - before["passed"] == passed
    assert after["pass_rate"] == round(after["passed"] / after["images"], 4)
    others = api.client.get("/v1/models", headers=api.auth("initech-app")).json()["models"]
    assert [m["brand"] for m in others] == ["initech"]  # no acme figures for initech's key


def test_metrics_show_only_the_keys_brands(api):
    for key in ("app", "initech-app"):
        assert (
            api.client.post(
                "/v1/generate", json={**GEN, "brand": key_brand(key)}, headers=api.auth(key)
            ).status_code
            == 200
        )
    acme_ops = api.client.get("/metrics", headers=api.auth("acme-ops"))
    assert acme_ops.status_code == 200
    assert 'brand="acme"' in acme_ops.text and 'brand="initech"' not in acme_ops.text
    everything = api.client.get("/metrics", headers=api.auth("ops")).text
    assert 'brand="acme"' in everything and 'brand="initech"' in everything
    assert api.client.get("/metrics", headers=api.auth("app")).status_code == 403


def key_brand(key: str) -> str:
    return "initech" if key.startswith("initech") else "acme"


# -- held assets ------------------------------------------------------------------------------


def _asset_with_status(api, status: str) -> str:
    from serving.db.models import Asset

    r = api.client.post("/v1/generate", json=GEN, headers=api.auth("app"))
    asset_id = r.json()["images"][0]["asset_id"]
    with api.services.sessions() as session:
        session.get(Asset, asset_id).status = status
        session.commit()
    return asset_id


@pytest.mark.parametrize("status", ["review", "rejected"])
def test_a_held_asset_goes_to_reviewers_only(api, status):
    asset_id = _asset_with_status(api, status)
    got = api.client.get(f"/v1/assets/{asset_id}", headers=api.auth("app"))
    assert got.status_code == 403 and "review" in got.json()["detail"]
    assert api.client.get(f"/v1/assets/{asset_id}", headers=api.auth("reviewer")).status_code == 200
    events = api.client.post(
        f"/v1/assets/{asset_id}/events", json={"clicks": 1}, headers=api.auth("app")
    )
    assert events.status_code == 409


def test_events_are_bounded_per_call(api):
    asset_id = _asset_with_status(api, "delivered")
    url = f"/v1/assets/{asset_id}/events"
    big = api.client.post(url, json={"clicks": 1_000_000}, headers=api.auth("app"))
    assert big.status_code == 422
    ok = api.client.post(url, json={"impressions": 10, "clicks": 2}, headers=api.auth("app"))
    assert ok.status_code == 201
    foreign = api.client.post(url, json={"clicks": 1}, headers=api.auth("initech-app"))
    assert foreign.status_code == 403


# -- rollouts and review ----------------------------------------------------------------------


def test_rollout_state_of_an_unknown_or_reserved_brand(api):
    assert api.client.get("/v1/rollouts/nobody", headers=api.auth("ops")).status_code == 404
    assert api.client.get("/v1/rollouts/bases", headers=api.auth("ops")).status_code == 422
    assert api.client.get("/v1/rollouts/acme", headers=api.auth("ops")).status_code == 200


@pytest.mark.parametrize(
    "override",
    [
        {"min_requests": 1e24},
        {"min_requests": 10**24},
        {"min_seconds": math.inf},
        {"steps": [50, 10, 100]},
        {"steps": [10, 50]},
    ],
)
def test_rollout_overrides_are_bounded(api, override):
    body = {"brand": "acme", "version": "2", **override}
    raw = json.dumps(body)  # Infinity for math.inf
    r = _post_raw(api, "/v1/rollouts", raw, key="acme-ops")
    assert r.status_code == 422, r.text


def test_rollout_start_checks_the_brand(api):
    r = api.client.post(
        "/v1/rollouts", json={"brand": "x" * 100, "version": "2"}, headers=api.auth("ops")
    )
    assert r.status_code == 422


@pytest.mark.parametrize("query", ["offset=100000000000000000000", "limit=0", "offset=-1"])
def test_review_paging_is_bounded(api, query):
    r = api.client.get(f"/v1/review?{query}", headers=api.auth("reviewer"))
    assert r.status_code == 422


def test_an_internal_error_is_a_500_with_a_request_id_and_no_traceback(api, monkeypatch):
    def broken(key: str) -> bytes:
        raise RuntimeError("disk on fire at /secret/path")

    asset_id = _asset_with_status(api, "delivered")
    monkeypatch.setattr(api.services.store, "get", broken)
    r = api.client.get(f"/v1/assets/{asset_id}", headers=api.auth("app"))
    assert r.status_code == 500
    body = r.json()
    assert body["request_id"] and body["request_id"] in body["detail"]
    assert "secret" not in r.text and "Traceback" not in r.text


# -- campaigns --------------------------------------------------------------------------------

CAMPAIGN = {
    "brand": "acme",
    "template": "{brand} {product} banner",
    "variables": {"product": ["shoes"]},
    "formats": ["png"],
    "generation_size": 32,
}


@pytest.mark.parametrize(
    "template",
    ["{brand:d} banner", "{brand!z} banner", "{brand: >100000} banner", "{nope} banner", "  "],
)
def test_a_bad_campaign_template_is_a_422(api, template):
    r = api.client.post(
        "/v1/campaigns", json={**CAMPAIGN, "template": template}, headers=api.auth("app")
    )
    assert r.status_code == 422, r.text


def test_a_campaign_above_the_versions_size_is_a_422(api):
    limit = api.services.catalog.sizes("brandforge-acme/1").max_side
    if limit >= 2048:
        pytest.skip("the version allows the absolute maximum")
    body = {**CAMPAIGN, "generation_size": (limit // 8 + 1) * 8}
    r = api.client.post("/v1/campaigns", json=body, headers=api.auth("app"))
    assert r.status_code == 422 and "generation_size" in r.text


def test_personal_data_in_a_campaign_is_never_stored_or_returned(api):
    from sqlalchemy import select

    from serving.db.models import Campaign, CampaignItem

    body = {**CAMPAIGN, "variables": {"product": ["mail ann@example.com or +44 20 7946 0958"]}}
    r = api.client.post("/v1/campaigns", json=body, headers=api.auth("app"))
    assert r.status_code == 202, r.text
    campaign_id = r.json()["campaign_id"]
    state = api.client.get(f"/v1/campaigns/{campaign_id}", headers=api.auth("app")).text
    with api.services.sessions() as session:
        stored = repr(session.get(Campaign, campaign_id).spec) + repr(
            [i.prompt for i in session.scalars(select(CampaignItem))]
        )
    for text in (state, stored):
        assert "ann@example.com" not in text and "7946" not in text
    other = api.client.get(f"/v1/campaigns/{campaign_id}", headers=api.auth("initech-app"))
    assert other.status_code == 403
