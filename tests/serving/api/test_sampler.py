"""A request that names no steps or guidance is drawn with those its version was evaluated with
(the `registry.sampler` tags `register` writes), unless the server overrides them; a request's
own settings always win. Checked on what was drawn: the asset rows over the real HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest

from tests.registry.test_registry import Project
from tests.serving.api.conftest import build_services


@pytest.fixture
def evaluated_at_3_steps(tmp_path, monkeypatch, adapter_dir, tiny_sd_dir):
    """A registry of its own: brandforge-acme v1, evaluated at 3 steps and guidance 1.0."""
    from brandforge.params import parse_params
    from brandforge.settings import get_settings
    from registry.core import client, promote

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BRANDFORGE_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("BRANDFORGE_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    mlflow.set_tracking_uri(uri)
    project = Project(tmp_path / "p", "acme", adapter_dir, tiny_sd_dir)
    project.params = parse_params(
        {"data": {"brand": "acme"}, "eval": {"num_inference_steps": 3, "guidance_scale": 1.0}}
    )
    project.train()
    project.register()
    promote(client(), "brandforge-acme", "champion", version="1", why="sampler test")
    yield tmp_path
    get_settings.cache_clear()


def _drawn(root: Path, bodies: list[dict[str, Any]], **config: Any) -> list[tuple[int, float]]:
    """(steps, guidance) recorded for each request's image, on a server built with `config`."""
    from starlette.testclient import TestClient

    from serving.api.create import create_api
    from serving.auth import create_key
    from serving.db.models import Asset

    services = build_services(root, **config)
    with services.sessions() as session:
        key, _ = create_key(session, name="app", roles=["generate"], brands=["acme"])
        session.commit()
    drawn = []
    with TestClient(create_api(services), raise_server_exceptions=False) as client:
        for body in bodies:
            r = client.post(
                "/v1/generate",
                json={"brand": "acme", "prompt": "acme banner", **body},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert r.status_code == 200, r.text
            with services.sessions() as session:
                row = session.get(Asset, r.json()["images"][0]["asset_id"])
                drawn.append((row.steps, row.guidance))
    return drawn


def test_the_version_s_evaluated_sampler_is_the_default_and_a_request_overrides_it(
    evaluated_at_3_steps,
):
    root = evaluated_at_3_steps
    assert _drawn(
        root / "own", [{}, {"steps": 2, "guidance": 1.5}, {"guidance": 0.0}], default_steps=None
    ) == [(3, 1.0), (2, 1.5), (3, 0.0)]
    # a server-wide override comes before the version's settings, after the request's
    assert _drawn(root / "override", [{}, {"steps": 2}], default_steps=4) == [(4, 1.0), (2, 1.0)]
