"""Banned terms and erasure through the real server on loopback (uvicorn over `create_api`).

Banned terms: a served version's brand kit (the demo kit: "cheapest", "guaranteed", "miracle")
and the server's list refuse live prompts, negative prompts and campaign texts with a 422
naming the term and the field, audited without the prompt. Erasure: a prompt with an e-mail
address is generated, then erased through `POST /v1/privacy/erase`; its file and row are gone.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import select

from serving.db.models import AuditLog, SubjectRef
from tests.serving.api.conftest import Loopback, serve_loopback


def _audit(services, action: str) -> list[AuditLog]:
    with services.sessions() as session:
        query = select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
        return list(session.scalars(query))


def _generate(loopback: Loopback, key: str, prompt: str, brand: str = "acme") -> str:
    r = requests.post(
        f"{loopback.url}/v1/generate",
        json={"brand": brand, "prompt": prompt},
        headers=loopback.auth(key),
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["images"][0]["asset_id"])


# --------------------------------------------------------------------------------------------
# Banned terms
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kit_server(loopback: Loopback) -> Iterator[str]:
    """The loopback services, with every version carrying the demo brand kit."""
    from brandforge.brandkit import BrandKit
    from serving.api.create import create_api
    from serving.catalog import BrandContext, Catalog
    from training.demo_brand import demo_brand_kit

    kit = BrandKit.model_validate(demo_brand_kit("acme"))
    catalog = Catalog(ttl_s=0.0, context_for=lambda mid: BrandContext(kit=kit, native_size=32))
    services = dataclasses.replace(loopback.services, catalog=catalog)
    with serve_loopback(create_api(services)) as url:
        yield url


def test_a_banned_term_of_the_kit_is_a_422_naming_term_and_field_audited_without_the_prompt(
    loopback: Loopback, kit_server: str
) -> None:
    headers = loopback.auth("app")
    cases = [
        ({"prompt": "the CHEAPEST  sofa, call jane@example.com"}, "prompt", "cheapest"),
        (
            {"prompt": "a sofa", "negative_prompt": "no mira\u200bcle look"},
            "negative_prompt",
            "miracle",
        ),
    ]
    for extra, field, term in cases:
        r = requests.post(
            f"{kit_server}/v1/generate",
            json={"brand": "acme", **extra},
            headers=headers,
            timeout=60,
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith(f"{field} uses the banned term {term!r}")
        assert "brand kit of acme v1" in r.json()["detail"]
    rows = _audit(loopback.services, "policy.refused")[-2:]
    assert [(r.actor, r.brand, r.detail["field"], r.detail["term"]) for r in rows] == [
        ("app", "acme", "prompt", "cheapest"),
        ("app", "acme", "negative_prompt", "miracle"),
    ]
    assert "sofa" not in json.dumps([r.detail for r in rows])  # never the prompt
    ok = requests.post(  # "miracles" is another word: no false hit
        f"{kit_server}/v1/generate",
        json={"brand": "acme", "prompt": "small miracles banner"},
        headers=headers,
        timeout=120,
    )
    assert ok.status_code == 200, ok.text


def test_a_campaign_with_a_banned_term_in_any_expansion_is_refused_at_submission(
    loopback: Loopback, kit_server: str
) -> None:
    spec = {
        "brand": "acme",
        "template": "{brand} {adj} {noun} banner",
        "variables": {"adj": ["calm", "bold"], "noun": ["sofa", "Guaranteed!"]},
    }
    r = requests.post(
        f"{kit_server}/v1/campaigns", json=spec, headers=loopback.auth("app"), timeout=60
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("variables.noun[1] uses the banned term 'guaranteed'")
    assert _audit(loopback.services, "policy.refused")[-1].detail["route"] == "campaigns"


def test_the_servers_policy_list_holds_for_every_brand(
    loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brandforge.settings import get_settings

    monkeypatch.setenv("BRANDFORGE_BANNED_TERMS", '["free money"]')
    get_settings.cache_clear()
    try:
        r = requests.post(
            f"{loopback.url}/v1/generate",
            json={"brand": "initech", "prompt": "FREE-money poster"},
            headers=loopback.auth("initech-app"),
            timeout=60,
        )
    finally:
        get_settings.cache_clear()
    assert r.status_code == 422, r.text
    assert "'free money' (the server's policy list)" in r.json()["detail"]


# --------------------------------------------------------------------------------------------
# Erasure
# --------------------------------------------------------------------------------------------


def _erase(loopback: Loopback, key: str, **body: object) -> requests.Response:
    return requests.post(
        f"{loopback.url}/v1/privacy/erase", json=body, headers=loopback.auth(key), timeout=60
    )


def test_a_generated_asset_of_a_subject_is_erased_through_the_api(loopback: Loopback) -> None:
    email = f"jane.{uuid.uuid4().hex[:8]}@example.com"
    asset_id = _generate(loopback, "app", f"spring banner for {email}")
    other = _generate(loopback, "app", "spring banner for nobody")
    url = f"{loopback.url}/v1/assets/{asset_id}"
    assert requests.get(url, headers=loopback.auth("app"), timeout=30).status_code == 200

    assert _erase(loopback, "app", subject=email).status_code == 403  # admin only
    dry = _erase(loopback, "ops", subject=email.upper(), dry_run=True)
    assert dry.status_code == 200, dry.text
    assert dry.json()["objects"] == [
        {"kind": "asset", "id": asset_id, "brand": "acme", "action": "delete"}
    ]
    done = _erase(loopback, "ops", subject=email)
    assert done.status_code == 200, done.text
    answer = done.json()
    assert (answer["assets"], answer["files_deleted"], answer["dry_run"]) == (1, 1, False)

    assert requests.get(url, headers=loopback.auth("app"), timeout=30).status_code == 404
    other_url = f"{loopback.url}/v1/assets/{other}"
    assert requests.get(other_url, headers=loopback.auth("app"), timeout=30).status_code == 200
    row = _audit(loopback.services, "privacy.erase")[-1]
    assert row.actor == "ops" and row.detail["subject_hash"] == answer["subject_hash"]
    assert row.detail["assets"] == 1 and row.detail["files_deleted"] == 1
    assert email not in json.dumps(row.detail)
    with loopback.services.sessions() as session:
        refs = session.scalars(select(SubjectRef).where(SubjectRef.object_id == asset_id)).all()
    assert refs == []


def test_an_admin_of_one_brand_erases_only_that_brand(loopback: Loopback) -> None:
    from serving.auth import create_key

    email = f"john.{uuid.uuid4().hex[:8]}@example.com"
    with loopback.services.sessions() as session:
        name = f"acme-admin-{uuid.uuid4().hex[:6]}"
        key, _ = create_key(session, name=name, roles=["admin"], brands=["acme"])
        session.commit()
    loopback.keys[name] = key
    acme = _generate(loopback, "app", f"card for {email}")
    initech = _generate(loopback, "initech-app", f"card for {email}", brand="initech")

    assert _erase(loopback, name, subject=email, brand="initech").status_code == 403
    answer = _erase(loopback, name, subject=email).json()
    assert [o["id"] for o in answer["objects"]] == [acme] and answer["brands"] == ["acme"]
    gone = requests.get(
        f"{loopback.url}/v1/assets/{acme}", headers=loopback.auth("app"), timeout=30
    )
    kept = requests.get(
        f"{loopback.url}/v1/assets/{initech}", headers=loopback.auth("initech-app"), timeout=30
    )
    assert (gone.status_code, kept.status_code) == (404, 200)
    assert _audit(loopback.services, "privacy.erase")[-1].brand == "acme"


def test_an_erasure_request_is_bounded(loopback: Loopback) -> None:
    for body in ({"subject": ""}, {"subject": "x" * 255}, {"subject": "  "}, {"subject": 5}):
        assert _erase(loopback, "ops", **body).status_code == 422
