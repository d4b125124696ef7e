"""The real Ray Serve application on loopback, serving the tiny registered models.

One application per module (Ray and Serve take ~15 s to start): brand `acme` has a champion
(v1) and a challenger (v2); brand `globex` has a version but no champion. Keys: `app` may
generate for acme only, `reviewer` may only review, `ops` is admin for every brand.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from PIL import Image

from registry import core
from registry.core import client, promote
from tests.registry.test_registry import Project

pytestmark = [pytest.mark.e2e, pytest.mark.ray]

_RUNNING: dict = {}  # the module's server: its config and port, for the restart test
# Steps and guidance named: the rollout thresholds below were calibrated on images drawn at
# guidance 2 (without them, each version's evaluated sampler applies: registry/sampler.py).
BODY = {
    "brand": "acme",
    "prompt": "acme banner",
    "n": 2,
    "width": 32,
    "height": 32,
    "steps": 3,
    "guidance": 2.0,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    ray_turn,
    served_registry,
    tmp_path_factory,
    tiny_sd_dir,
    adapter_dir,
    blank_adapter_dir,
    palette_adapters,
):
    from brandforge.settings import get_settings
    from serving.app import ServeConfig
    from serving.auth import create_key
    from serving.db.engine import engine_for, session_factory
    from serving.db.migrate import upgrade
    from serving.runtime import served_environment, start, stop

    tmp = tmp_path_factory.mktemp("serve")
    env = {
        **served_registry.env,
        "BRANDFORGE_SERVING_DB": f"sqlite:///{tmp / 'serving.db'}",
        "BRANDFORGE_ASSET_DIR": str(tmp / "assets"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        get_settings.cache_clear()
        mlflow.set_tracking_uri(served_registry.tracking_uri)
        globex = Project(tmp / "globex", "globex", adapter_dir, tiny_sd_dir)
        globex.train()
        globex.register()  # a challenger, no champion
        # Brands for rollouts: v1 is the champion, v2 the canary to roll out.
        canaries = {
            "steady": adapter_dir,
            "resume": adapter_dir,
            "shadowy": adapter_dir,
            "blackout": blank_adapter_dir,
            "broken": adapter_dir,
        }
        for brand, canary in canaries.items():
            p = Project(tmp / brand, brand, adapter_dir, tiny_sd_dir)
            p.train()
            p.register()
            p.adapter = canary
            p.train()
            p.register()
            promote(client(), p.name, "champion", version="1", why="rollout tests")
        # `offbrand`: on the colour-VAE base, v1 trained on the brand's images, v2 on the same
        # images recoloured off-palette.
        p = Project(
            tmp / "offbrand",
            "offbrand",
            palette_adapters.good,
            palette_adapters.base,
            identity="tiny-colour-0",
        )
        p.train()
        p.register()
        p.adapter = palette_adapters.bad
        p.train()
        p.register()
        promote(client(), p.name, "champion", version="1", why="rollout tests")
        # `broken`: v2's weights are damaged in the artifact store, so loading it raises.
        source = core.get_version(client(), "brandforge-broken", "2").source
        weights = Path(mlflow.artifacts.download_artifacts(source)) / "adapter_weights"
        for f in weights.glob("*.safetensors"):
            f.write_bytes(b"not a safetensors file")

        db = engine_for(None)
        upgrade(db)
        keys = {}
        # Limits the tests never reach (rollouts drive hundreds of requests a minute):
        # admission has its own tests (tests/serving/test_admission.py, api/test_admission.py).
        high = {"rate_per_minute": 100_000, "daily_images": 100_000_000}
        with session_factory(db)() as session:
            for name, roles, brands in (
                ("app", ["generate"], ["acme"]),
                ("reviewer", ["review"], ["*"]),
                ("ops", ["admin"], ["*"]),
            ):
                keys[name], _ = create_key(session, name=name, roles=roles, brands=brands, **high)
            session.commit()
        port = _free_port()
        config = ServeConfig(
            max_batch_size=4,
            batch_wait_s=0.2,
            env=served_environment(),
            # A handful of requests per step: the canary's first request also loads its adapter,
            # and two cores are shared with the rest of the suite, so p95 latency over a few
            # requests is noise here; every other check keeps its production threshold.
            rollout={
                "check_every_s": 0.3,
                "min_seconds": 0,
                "min_requests": 2,
                # after `stop()`/`start()` the canary answers from cold replicas (5-15 s p95
                # measured on 2026-12-05) against the warm champion: latency is judged in
                # tests/serving/rollout, not here
                "max_p95_latency_ratio": 1000.0,
            },
            # a killed campaign worker's items come back to the queue after this
            campaign_lease_s=5.0,
            campaign_poll_s=0.2,
        )
        start(config, port=port)
        _RUNNING.update(config=config, port=port)
        try:
            yield f"http://127.0.0.1:{port}", keys, tmp
        finally:
            stop()
            get_settings.cache_clear()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_health_needs_no_key_and_readiness_reports_the_generator(server):
    url, _, _ = server
    assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert requests.get(f"{url}/docs", timeout=10).status_code == 200
    assert "/v1/generate" in requests.get(f"{url}/openapi.json", timeout=10).json()["paths"]


def test_generate_returns_scored_images_that_can_be_fetched(server):
    url, keys, tmp = server
    r = requests.post(
        f"{url}/v1/generate", json={**BODY, "seed": 40}, headers=_auth(keys["app"]), timeout=120
    )
    assert r.status_code == 200, r.text
    # the replica's queue and drawing times came back through Ray with the pixels
    timing = dict(p.strip().split(";dur=") for p in r.headers["Server-Timing"].split(","))
    assert list(timing) == ["queue", "render", "score", "encode", "store", "total"]
    assert float(timing["render"]) > 0 and float(timing["total"]) >= float(timing["render"])
    out = r.json()
    assert out["model"] == {"name": "brandforge-acme", "version": "1", "variant": "champion"}
    assert [i["seed"] for i in out["images"]] == [40, 41]
    for image in out["images"]:
        assert set(image["compliance"]) == {"score", "passed", "violations"}
        assert 0 <= image["compliance"]["score"] <= 1
        got = requests.get(f"{url}{image['url']}", headers=_auth(keys["app"]), timeout=10)
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(got.content)).size == (32, 32)
    # same seed, same image
    again = requests.post(
        f"{url}/v1/generate",
        json={**BODY, "n": 1, "seed": 40},
        headers=_auth(keys["app"]),
        timeout=120,
    ).json()
    first = requests.get(f"{url}{out['images'][0]['url']}", headers=_auth(keys["app"]), timeout=10)
    second = requests.get(
        f"{url}{again['images'][0]['url']}", headers=_auth(keys["app"]), timeout=10
    )
    # the files differ (each carries its own asset id in its manifest); the pictures do not
    # (32 px is below the watermark's minimum size, so nothing else is added)
    assert first.content != second.content
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(first.content))),
        np.asarray(Image.open(io.BytesIO(second.content))),
    )


@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_every_format_opens_in_a_real_decoder(server, fmt, pil):
    url, keys, _ = server
    r = requests.post(
        f"{url}/v1/generate",
        json={**BODY, "n": 1, "format": fmt},
        headers=_auth(keys["app"]),
        timeout=120,
    )
    assert r.status_code == 200, r.text
    got = requests.get(
        f"{url}{r.json()['images'][0]['url']}", headers=_auth(keys["app"]), timeout=10
    )
    image = Image.open(io.BytesIO(got.content))
    assert image.format == pil and image.size == (32, 32)


def test_access_is_checked_by_key_role_and_brand(server):
    url, keys, _ = server
    assert requests.post(f"{url}/v1/generate", json=BODY, timeout=10).status_code == 401
    wrong = requests.post(f"{url}/v1/generate", json=BODY, headers=_auth("bf_nope"), timeout=10)
    assert wrong.status_code == 401
    reviewer = requests.post(
        f"{url}/v1/generate", json=BODY, headers=_auth(keys["reviewer"]), timeout=10
    )
    assert reviewer.status_code == 403 and "generate" in reviewer.json()["detail"]
    other_brand = requests.post(
        f"{url}/v1/generate",
        json={**BODY, "brand": "globex"},
        headers=_auth(keys["app"]),
        timeout=10,
    )
    assert other_brand.status_code == 403 and "globex" in other_brand.json()["detail"]
    assert requests.get(f"{url}/metrics", headers=_auth(keys["app"]), timeout=10).status_code == 403
    assert requests.get(f"{url}/v1/models", timeout=10).status_code == 401


def test_bad_requests_name_the_field_and_unknown_or_unready_brands_say_what_to_do(server):
    url, keys, _ = server
    ops = _auth(keys["ops"])
    too_many = requests.post(f"{url}/v1/generate", json={**BODY, "n": 9}, headers=ops, timeout=10)
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["loc"] == ["body", "n"]
    odd = requests.post(f"{url}/v1/generate", json={**BODY, "width": 33}, headers=ops, timeout=10)
    assert odd.status_code == 422 and odd.json()["detail"][0]["loc"] == ["body", "width"]
    extra = requests.post(
        f"{url}/v1/generate", json={**BODY, "colour": "red"}, headers=ops, timeout=10
    )
    assert extra.status_code == 422
    unknown = requests.post(
        f"{url}/v1/generate", json={**BODY, "brand": "nobody"}, headers=ops, timeout=10
    )
    assert unknown.status_code == 404 and "unknown brand" in unknown.json()["detail"]
    no_champion = requests.post(
        f"{url}/v1/generate", json={**BODY, "brand": "globex"}, headers=ops, timeout=10
    )
    assert no_champion.status_code == 409
    assert "promote" in no_champion.json()["detail"]
    missing = requests.get(f"{url}/v1/assets/nope", headers=ops, timeout=10)
    assert missing.status_code == 404


def test_models_lists_champions_and_challengers(server):
    url, keys, _ = server
    models = requests.get(f"{url}/v1/models", headers=_auth(keys["ops"]), timeout=30).json()
    by_brand = {m["brand"]: m for m in models["models"]}
    assert by_brand["acme"]["champion"] == "1" and by_brand["acme"]["challenger"] == "2"
    assert by_brand["globex"]["champion"] is None


def test_concurrent_requests_are_batched_and_metrics_show_it(server):
    url, keys, _ = server
    body = {**BODY, "n": 1, "seed": 7}

    def call(_: int) -> int:
        return requests.post(
            f"{url}/v1/generate", json=body, headers=_auth(keys["app"]), timeout=120
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(call, range(8))) == [200] * 8
    text = requests.get(f"{url}/metrics", headers=_auth(keys["ops"]), timeout=10).text
    count = _metric(text, "brandforge_batch_size_count")
    total = _metric(text, "brandforge_batch_size_sum")
    assert total > count, "some batch held more than one image"
    assert _metric(text, "brandforge_requests_total") >= 8
    assert _metric(text, "brandforge_compliance_score_count") >= 8
    assert 'brand="acme"' in text and 'variant="champion"' in text


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_the_server_refuses_to_start_without_keys_unless_dev(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from brandforge.cli import app

    monkeypatch.setenv("BRANDFORGE_SERVING_DB", f"sqlite:///{tmp_path / 'empty.db'}")
    from brandforge.settings import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["serve", "--port", "1"])
    get_settings.cache_clear()
    assert result.exit_code == 2 and "no API key" in result.output


# ---------------------------------------------------------------------------------------------
# Canary rollouts


def _drive(
    url: str, key: str, brand: str, until: set[str], timeout: float = 120, n: int = 1
) -> dict:
    """Send traffic from many clients until the rollout's state is in `until`; return it."""
    deadline = time.monotonic() + timeout
    i = 0
    body = {**BODY, "brand": brand, "n": n}
    while time.monotonic() < deadline:

        def call(j: int) -> int:
            r = requests.post(
                f"{url}/v1/generate",
                json={**body, "seed": j},
                headers={**_auth(key), "X-Client-Id": f"client-{j}"},
                timeout=120,
            )
            return r.status_code

        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(call, range(i, i + 8)))
        assert codes == [200] * 8, codes  # no client request fails, whatever the canary does
        i += 8
        state = requests.get(f"{url}/v1/rollouts/{brand}", headers=_auth(key), timeout=10).json()
        if state["state"] in until:
            return state
    raise AssertionError(f"rollout of {brand} did not reach {until}: {state}")


def _start(url: str, key: str, brand: str, **extra) -> requests.Response:
    return requests.post(
        f"{url}/v1/rollouts",
        json={"brand": brand, "version": "2", **extra},
        headers=_auth(key),
        timeout=60,
    )


def test_rollouts_need_the_deploy_role(server):
    url, keys, _ = server
    assert _start(url, keys["app"], "acme").status_code == 403
    assert (
        requests.get(f"{url}/v1/rollouts/acme", headers=_auth(keys["app"]), timeout=10).status_code
        == 403
    )


def test_a_healthy_canary_is_promoted_through_every_step(server):
    url, keys, _ = server
    started = _start(url, keys["ops"], "steady", steps=[5, 25, 50, 100])
    assert started.status_code == 201, started.text
    assert started.json()["weight"] == 5
    assert core.alias_version(client(), "brandforge-steady", "canary").version == "2"
    state = _drive(url, keys["ops"], "steady", {"promoted", "rolled_back", "aborted"})
    assert state["state"] == "promoted", state
    passes = [d for d in state["decisions"] if d["decision"] == "pass"]
    assert [d["weight"] for d in passes] == [5, 25, 50, 100]
    assert all(d["measurements"] for d in passes)
    assert core.alias_version(client(), "brandforge-steady", "champion").version == "2"
    assert core.alias_version(client(), "brandforge-steady", "canary") is None
    history = [e for _, e in core.get_version(client(), "brandforge-steady", "2").history()]
    assert any("rollout" in e for e in history)


def test_a_canary_drawing_blank_frames_is_rolled_back_on_compliance(server):
    url, keys, _ = server
    assert _start(url, keys["ops"], "blackout", steps=[50, 100]).status_code == 201
    state = _drive(url, keys["ops"], "blackout", {"promoted", "rolled_back", "aborted"})
    assert state["state"] == "rolled_back", state
    assert "compliance" in state["reason"]
    assert core.alias_version(client(), "brandforge-blackout", "champion").version == "1"
    assert core.alias_version(client(), "brandforge-blackout", "canary") is None


def test_a_canary_trained_on_off_palette_images_is_rolled_back_on_compliance(server):
    url, keys, _ = server
    # 16 requests of 2 images per side: the drop (~0.12) stands well above the per-image noise
    # (sd ~0.09), so the 50 % step judges it, not luck.
    assert _start(url, keys["ops"], "offbrand", steps=[50, 100], min_requests=16).status_code == 201
    state = _drive(url, keys["ops"], "offbrand", {"promoted", "rolled_back", "aborted"}, n=2)
    assert state["state"] == "rolled_back", state
    assert "compliance drop" in state["reason"], state["reason"]
    assert [d["decision"] for d in state["decisions"]] == ["start", "fail", "rollback"]
    judged = state["decisions"][1]["measurements"]
    assert judged["canary"]["compliance_mean"] < judged["champion"]["compliance_mean"] - 0.05
    assert judged["canary"]["error_rate"] == 0  # it draws fine; it draws off-brand
    assert core.alias_version(client(), "brandforge-offbrand", "champion").version == "1"
    assert core.alias_version(client(), "brandforge-offbrand", "canary") is None


def test_a_canary_that_raises_is_rolled_back_and_no_client_request_fails(server):
    url, keys, _ = server
    assert _start(url, keys["ops"], "broken", steps=[50, 100]).status_code == 201
    state = _drive(url, keys["ops"], "broken", {"promoted", "rolled_back", "aborted"})
    assert state["state"] == "rolled_back", state
    assert "error" in state["reason"]
    assert core.alias_version(client(), "brandforge-broken", "champion").version == "1"


def _one_by_one(
    url: str, key: str, brand: str, done: Callable[[dict], bool], timeout: float = 120
) -> tuple[dict, set[str]]:
    """One request at a time, each from a new client, until `done(rollout state)`; returns the
    last state and the variants that answered."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    variants: set[str] = set()
    j = 0
    while time.monotonic() < deadline:
        r = requests.post(
            f"{url}/v1/generate",
            json={**BODY, "brand": brand, "n": 1},
            headers={**_auth(key), "X-Client-Id": f"{brand}-{j}"},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        variants.add(r.json()["model"]["variant"])
        j += 1
        state = requests.get(f"{url}/v1/rollouts/{brand}", headers=_auth(key), timeout=10).json()
        if done(state):
            break
    return state, variants


def test_a_restarted_server_resumes_the_rollout_where_it_was(server):
    from serving.runtime import start, stop

    url, keys, _ = server
    assert _start(url, keys["ops"], "resume", steps=[50, 100], min_requests=6).status_code == 201
    # one request at a time until the first step has passed
    state, _ = _one_by_one(
        url, keys["ops"], "resume", lambda st: st["step_index"] == 1 or st["state"] != "running"
    )
    assert state["state"] == "running" and state["step_index"] == 1, state

    stop()  # the whole Ray Serve application goes away
    start(_RUNNING["config"], port=_RUNNING["port"])
    after = requests.get(f"{url}/v1/rollouts/resume", headers=_auth(keys["ops"]), timeout=60).json()
    assert (after["id"], after["state"], after["step_index"], after["weight"]) == (
        state["id"],
        "running",
        1,
        100,
    )
    done = _drive(url, keys["ops"], "resume", {"promoted", "rolled_back", "aborted"})
    assert done["state"] == "promoted", (done.get("reason"), done["decisions"][-3:])


def test_shadow_mode_answers_from_the_champion_and_measures_the_canary(server):
    url, keys, _ = server
    assert _start(url, keys["ops"], "shadowy", steps=[100], mode="shadow").status_code == 201
    state, variants = _one_by_one(url, keys["ops"], "shadowy", lambda st: st["state"] != "running")
    assert variants == {"champion"}  # clients never see the canary's images
    assert state["state"] == "promoted", state
    judged = [d for d in state["decisions"] if d["decision"] == "pass"][-1]
    assert judged["measurements"]["canary"]["requests"] >= 2


# ---------------------------------------------------------------------------------------------
# Campaigns and review


CAMPAIGN = {
    "brand": "acme",
    "template": "{brand} {product} banner",
    "variables": {"product": ["shoes", "bags"]},
    "ratios": ["1:1", "9:16"],
    "formats": ["png", "jpeg"],
    "headline": "New {product}",
    "cta": "Shop now",
    "size": 192,
    "generation_size": 32,
    "steps": 2,
    "max_regenerations": 1,
}


def _wait_campaign(url: str, key: str, campaign_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = requests.get(f"{url}/v1/campaigns/{campaign_id}", headers=_auth(key), timeout=30)
        assert r.status_code == 200, r.text
        state = r.json()
        if state["state"] not in ("queued", "running"):
            return state
        time.sleep(0.5)
    raise AssertionError(f"campaign {campaign_id} did not finish: {state['counts']}")


def test_a_campaign_is_queued_drawn_checked_and_sent_to_review(server):
    url, keys, _ = server
    r = requests.post(f"{url}/v1/campaigns", json=CAMPAIGN, headers=_auth(keys["app"]), timeout=30)
    assert r.status_code == 202, r.text
    submitted = r.json()
    assert submitted["total"] == 4 and submitted["model"]["champion"] == "1"
    assert (
        requests.get(
            f"{url}/v1/campaigns/{submitted['campaign_id']}",
            headers=_auth(keys["reviewer"]),
            timeout=10,
        ).status_code
        == 403
    )

    state = _wait_campaign(url, keys["app"], submitted["campaign_id"])
    # The tiny random model draws noise: every item fails the brand kit, is drawn once more
    # with a new seed, then waits for a person instead of being delivered.
    assert state["state"] == "done" and state["counts"]["review"] == 4, state["counts"]
    for item in state["items"]:
        assert item["attempts"] == 2 and len(item["assets"]) == 2
        assert item["compliance"]["passed"] is False
        for a in item["assets"]:
            # waiting for review: not for the brand's generate key, only for reviewers
            held = requests.get(f"{url}{a['url']}", headers=_auth(keys["app"]), timeout=10)
            assert held.status_code == 403 and "review" in held.json()["detail"]
            got = requests.get(f"{url}{a['url']}", headers=_auth(keys["reviewer"]), timeout=10)
            assert got.status_code == 200
            image = Image.open(io.BytesIO(got.content))
            assert image.format in ("PNG", "JPEG")
            assert image.size == ((192, 192) if item["ratio"] == "1:1" else (112, 192))

    queue = requests.get(f"{url}/v1/review", headers=_auth(keys["reviewer"]), timeout=10).json()
    ids = {a["asset_id"] for item in state["items"] for a in item["assets"]}
    assert ids <= {i["asset_id"] for i in queue["items"]}
    first = sorted(ids)[0]
    decided = requests.post(
        f"{url}/v1/review/{first}",
        json={"decision": "reject", "reason": "off-brand noise"},
        headers=_auth(keys["reviewer"]),
        timeout=10,
    )
    assert decided.status_code == 200 and decided.json()["status"] == "rejected"
    again = requests.post(
        f"{url}/v1/review/{first}",
        json={"decision": "approve"},
        headers=_auth(keys["reviewer"]),
        timeout=10,
    )
    assert again.status_code == 409
    assert (
        requests.post(
            f"{url}/v1/review/{first}",
            json={"decision": "approve"},
            headers=_auth(keys["app"]),
            timeout=10,
        ).status_code
        == 403
    )


def test_the_review_page_in_headless_chromium_approves_an_asset(server):
    from tests.serving.api.test_review_page import CHROMIUM, drive_review_page

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (.ci/run installs Debian's chromium)")
    url, keys, _ = server
    before = requests.get(f"{url}/v1/review", headers=_auth(keys["reviewer"]), timeout=10).json()
    if before["total"] < 3:
        r = requests.post(
            f"{url}/v1/campaigns",
            json={**CAMPAIGN, "formats": ["png"], "ratios": ["1:1"], "variants": 2},
            headers=_auth(keys["app"]),
            timeout=30,
        )
        _wait_campaign(url, keys["app"], r.json()["campaign_id"])
        before = requests.get(
            f"{url}/v1/review", headers=_auth(keys["reviewer"]), timeout=10
        ).json()
    walk = drive_review_page(f"{url}/review", keys["reviewer"])
    after = requests.get(f"{url}/v1/review", headers=_auth(keys["reviewer"]), timeout=10).json()
    assert "401" in walk.wrong_key_error or "key" in walk.wrong_key_error.lower()
    assert len(walk.cards) == min(before["total"], 50)
    assert all(walk.thumb_widths[c] > 0 for c in walk.cards)  # thumbnails really loaded
    assert walk.approved not in {i["asset_id"] for i in after["items"]}
    assert walk.rejected not in {i["asset_id"] for i in after["items"]}
    assert after["total"] == before["total"] - 2  # one approved, one rejected on the page
    assert len(walk.cards_after_reload) == len(walk.cards) - 2
    statuses = {}
    for asset_id in (walk.approved, walk.rejected):
        from serving.db.engine import engine_for, session_factory
        from serving.db.models import Asset

        with session_factory(engine_for(None))() as session:
            statuses[asset_id] = session.get(Asset, asset_id).status
    assert statuses == {walk.approved: "approved", walk.rejected: "rejected"}


def test_a_killed_campaign_worker_loses_nothing_and_duplicates_nothing(server):
    import ray
    from sqlalchemy import func, select

    from serving.db.engine import engine_for, session_factory
    from serving.db.models import Asset, CampaignItem

    url, keys, tmp = server
    spec = {**CAMPAIGN, "variants": 3, "formats": ["png"], "max_regenerations": 0}
    r = requests.post(f"{url}/v1/campaigns", json=spec, headers=_auth(keys["app"]), timeout=30)
    campaign_id = r.json()["campaign_id"]
    total = r.json()["total"]
    assert total == 12

    # kill the worker once it has delivered something and still has work left
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = requests.get(
            f"{url}/v1/campaigns/{campaign_id}?items=false",
            headers=_auth(keys["app"]),
            timeout=10,
        ).json()["counts"]
        if counts["review"] + counts["done"] >= 1:
            break
        time.sleep(0.05)
    replicas = [
        a for a in ray.util.list_named_actors(all_namespaces=True) if "CampaignRunner" in a["name"]
    ]
    assert replicas, ray.util.list_named_actors(all_namespaces=True)
    for a in replicas:
        ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]), no_restart=True)
    killed_at = counts
    assert killed_at["pending"] + killed_at["running"] > 0, "the worker finished before the kill"

    state = _wait_campaign(url, keys["app"], campaign_id, timeout=240)
    assert state["state"] == "done"
    assert state["counts"]["review"] + state["counts"]["done"] == total
    db = engine_for(None)
    with session_factory(db)() as session:
        per_item = session.execute(
            select(Asset.item_id, func.count())
            .where(Asset.campaign_id == campaign_id)
            .group_by(Asset.item_id)
        ).all()
        keys_ = session.scalars(
            select(CampaignItem.key).where(CampaignItem.campaign_id == campaign_id)
        ).all()
    assert len(keys_) == len(set(keys_)) == total
    assert len(per_item) == total and all(n == 1 for _, n in per_item)
    for item in state["items"]:
        assert [a["asset_id"] for a in item["assets"]] and len(item["assets"]) == 1


def test_impressions_and_clicks_give_the_click_through_rate_per_version(server):
    url, keys, _ = server
    r = requests.post(
        f"{url}/v1/generate", json={**BODY, "n": 1}, headers=_auth(keys["app"]), timeout=120
    )
    asset_id = r.json()["images"][0]["asset_id"]
    version = r.json()["model"]["version"]
    before = _ctr(url, keys["app"]).get(version, {"impressions": 0, "clicks": 0})
    for body in ({"impressions": 40, "clicks": 3}, {"impressions": 10, "clicks": 2}):
        posted = requests.post(
            f"{url}/v1/assets/{asset_id}/events", json=body, headers=_auth(keys["app"]), timeout=10
        )
        assert posted.status_code == 201, posted.text
    after = _ctr(url, keys["app"])[version]
    assert after["impressions"] - before["impressions"] == 50
    assert after["clicks"] - before["clicks"] == 5
    assert after["ctr"] == round(after["clicks"] / after["impressions"], 4)
    bad = requests.post(
        f"{url}/v1/assets/{asset_id}/events",
        json={"clicks": -1},
        headers=_auth(keys["app"]),
        timeout=10,
    )
    assert bad.status_code == 422
    missing = requests.post(
        f"{url}/v1/assets/nope/events", json={"clicks": 1}, headers=_auth(keys["app"]), timeout=10
    )
    assert missing.status_code == 404


def _ctr(url: str, key: str) -> dict:
    models = requests.get(f"{url}/v1/models", headers=_auth(key), timeout=30).json()["models"]
    return next(m for m in models if m["brand"] == "acme")["click_through"]


def test_the_campaign_cli_submits_a_file_and_follows_it(server, tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from serving.cli.campaign import campaign_app

    url, keys, _ = server
    spec = tmp_path / "campaign.yaml"
    spec.write_text(yaml.safe_dump({**CAMPAIGN, "ratios": ["1:1"], "formats": ["webp"]}))
    runner = CliRunner()
    result = runner.invoke(
        campaign_app, ["submit", str(spec), "--url", url, "--key", keys["app"], "--watch"]
    )
    assert result.exit_code == 0, result.output
    assert "campaign " in result.output and "2 items" in result.output
    campaign_id = result.output.split("campaign ", 1)[1].split(":", 1)[0]
    status = runner.invoke(
        campaign_app, ["status", campaign_id, "--url", url, "--key", keys["app"]]
    )
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["state"] == "done"

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**CAMPAIGN, "ratios": ["16x9"]}))
    refused = runner.invoke(campaign_app, ["submit", str(bad), "--url", url, "--key", "k"])
    assert refused.exit_code == 2 and "ratios" in refused.output and "16x9" in refused.output
    cancelled = runner.invoke(
        campaign_app, ["cancel", campaign_id, "--url", url, "--key", keys["app"]]
    )
    assert cancelled.exit_code == 1 and "409" in cancelled.output  # already done


# -- admission: the generator's bounded, fair queue, deadlines and gone clients -------------

# 150 steps: seconds of drawing on the tiny base at any batch size, within the cost limit.
LONG = {**BODY, "n": 4, "steps": 150}
SMALL = {**BODY, "n": 1, "steps": 3}


def _generator_stats() -> dict[str, int]:
    from ray import serve

    from serving.runtime import APP_NAME

    stats: dict[str, int] = (
        serve.get_deployment_handle("Generator", app_name=APP_NAME).stats.remote().result()
    )
    return stats


def _idle(stats: dict[str, int]) -> bool:
    return stats["waiting"] == 0 and stats["drawing_live"] == 0


def _until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _deadline(key: str, ms: int) -> dict[str, str]:
    return {**_auth(key), "X-Request-Deadline-Ms": str(ms)}


def test_a_1_s_deadline_on_a_long_job_is_504_and_the_replica_is_free_right_after(server):
    url, keys, _ = server
    warm = requests.post(f"{url}/v1/generate", json=SMALL, headers=_auth(keys["app"]), timeout=60)
    assert warm.status_code == 200, warm.text
    before = _generator_stats()
    late = requests.post(
        f"{url}/v1/generate", json=LONG, headers=_deadline(keys["app"], 1000), timeout=60
    )
    assert late.status_code == 504 and "deadline of 1000 ms" in late.json()["detail"]
    _until(lambda: _generator_stats()["drawing_live"] == 0, "the replica to be free")
    after = _generator_stats()
    assert after["interrupted"] > before["interrupted"] and after["waiting"] == 0
    assert after["drawn"] == before["drawn"]  # stopped at a step: none of its images was drawn
    ok = requests.post(f"{url}/v1/generate", json=SMALL, headers=_auth(keys["app"]), timeout=30)
    assert ok.status_code == 200, ok.text


def test_past_its_share_of_the_queue_a_key_gets_503_with_retry_after(server):
    url, keys, _ = server
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(
            requests.post,
            f"{url}/v1/generate",
            json={**LONG, "n": 8},  # one batch of 4 draws, 4 wait
            headers=_deadline(keys["app"], 2500),
            timeout=60,
        )
        _until(lambda: _generator_stats()["waiting"] == 4 or blocker.done(), "the blocker to queue")
        assert not blocker.done(), blocker.result().text
        full = requests.post(
            f"{url}/v1/generate",
            json={**LONG, "n": 8},
            headers=_deadline(keys["app"], 2000),
            timeout=60,
        )
        assert blocker.result().status_code == 504
    assert full.status_code == 503, full.text
    assert "at most 8 waiting" in full.json()["detail"] and int(full.headers["Retry-After"]) >= 1


def test_the_images_of_a_client_that_disconnected_are_never_drawn(server):
    url, keys, _ = server
    host, port = url.removeprefix("http://").split(":")
    # An earlier test's dropped images are counted when the queue reaches them: start idle.
    _until(lambda: _idle(_generator_stats()), "the generator to be idle")
    before = _generator_stats()
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(
            requests.post,
            f"{url}/v1/generate",
            json=LONG,
            headers=_deadline(keys["app"], 3000),
            timeout=60,
        )
        _until(lambda: _generator_stats()["drawing_live"] == 4 or blocker.done(), "the blocker")
        assert not blocker.done(), blocker.result().text
        body = json.dumps({**LONG, "width": 40, "height": 40}).encode()
        head = (
            f"POST /v1/generate HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {keys['app']}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(head + body)
            _until(lambda: _generator_stats()["waiting"] == 4, "the request to queue")
        # the client has gone while its images wait behind the blocker
        blocked = blocker.result().status_code
    _until(lambda: _generator_stats()["waiting"] == 0, "the queue to empty")
    after = _generator_stats()
    assert after["dropped_gone"] - before["dropped_gone"] == 4
    # only the blocker's own images, if it finished within its deadline on this machine
    assert after["drawn"] - before["drawn"] == (4 if blocked == 200 else 0)


def test_one_keys_flood_does_not_hold_up_another_keys_single_request(server):
    url, keys, _ = server
    before = _generator_stats()
    with ThreadPoolExecutor(4) as pool:
        flood = [
            pool.submit(
                requests.post,
                f"{url}/v1/generate",
                json={**LONG, "n": 8},
                headers=_deadline(keys["app"], 4000),
                timeout=60,
            )
        ]
        _until(lambda: _generator_stats()["drawing_live"] > 0 or flood[0].done(), "the flood")
        assert not flood[0].done(), flood[0].result().text
        flood += [
            pool.submit(
                requests.post,
                f"{url}/v1/generate",
                json=LONG,
                headers=_deadline(keys["app"], 4000),
                timeout=60,
            )
            for _ in range(2)
        ]
        single = requests.post(
            f"{url}/v1/generate", json=SMALL, headers=_auth(keys["ops"]), timeout=60
        )
        still_drawing = not flood[0].done()
        answers = sorted(f.result().status_code for f in flood)
    assert single.status_code == 200, single.text
    assert still_drawing  # the single request was answered within the flood's first batch
    assert _generator_stats()["drawn_aside"] > before["drawn_aside"]
    assert 503 in answers  # the flood key's share of the queue was full
