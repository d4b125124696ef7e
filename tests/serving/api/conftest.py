"""The HTTP API in-process: `create_api` over real services (SQLite serving database at its
Alembic head, local asset store, the MLflow registry of `served_registry`, the real tiny
engine drawing through `LocalRenderer`), driven with Starlette's TestClient. No Ray: the
Ray graph itself is tested in tests/serving/test_app.py.

Brands: `acme` (v1 champion, v2 challenger) and `initech` (v1 champion). Keys: `app` generates
for acme, `initech-app` for initech, `reviewer` reviews every brand, `acme-ops` deploys acme,
`ops` is admin of every brand.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest


@dataclass
class Api:
    client: Any  # starlette.testclient.TestClient
    services: Any  # serving.api.services.Services
    keys: dict[str, str]
    root: Path

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}


def build_services(root: Path, *, dev: bool = False, **config: Any) -> Any:
    from brandforge.params import RolloutParams
    from serving.api.prometheus import Metrics
    from serving.api.services import Services
    from serving.assets.store import AssetStore
    from serving.catalog import Catalog
    from serving.config import ServeConfig
    from serving.db.engine import engine_for, session_factory
    from serving.db.migrate import upgrade
    from serving.generator import LocalRenderer
    from serving.rollout.controller import RolloutController

    engine = engine_for(f"sqlite:///{root / 'serving.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    return Services(
        # 2 steps unless a test says otherwise: a server-wide override of every version's own
        config=ServeConfig(**{"dev": dev, "default_steps": 2, **config}),
        sessions=sessions,
        store=AssetStore(str(root / "assets")),
        catalog=Catalog(ttl_s=0.0),
        rollouts=RolloutController(sessions, RolloutParams()),
        metrics=Metrics(),
        renderer=LocalRenderer(),
    )


@pytest.fixture(scope="session")
def api(served_registry, tmp_path_factory, tiny_sd_dir, adapter_dir) -> Api:  # noqa: F811
    from starlette.testclient import TestClient

    from brandforge.settings import get_settings
    from registry.core import client, promote
    from serving.api.create import create_api
    from serving.auth import create_key
    from tests.registry.test_registry import Project

    root = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in served_registry.env.items():
            mp.setenv(k, v)
        get_settings.cache_clear()
        mlflow.set_tracking_uri(served_registry.tracking_uri)
        initech = Project(root / "initech", "initech", adapter_dir, tiny_sd_dir)
        initech.train()
        initech.register()
        promote(client(), "brandforge-initech", "champion", version="1", why="api tests")
        services = build_services(root)
        keys = {}
        with services.sessions() as session:
            for name, roles, brands in (
                ("app", ["generate"], ["acme"]),
                ("initech-app", ["generate"], ["initech"]),
                ("reviewer", ["review"], ["*"]),
                ("acme-ops", ["deploy"], ["acme"]),
                ("ops", ["admin"], ["*"]),
                ("initech-all", ["generate", "review", "deploy"], ["initech"]),
            ):
                # Limits no test run reaches (serving.admission's tests make their own keys).
                keys[name], _ = create_key(
                    session,
                    name=name,
                    roles=roles,
                    brands=brands,
                    rate_per_minute=100_000,
                    daily_images=100_000_000,
                )
            session.commit()
        with TestClient(create_api(services), raise_server_exceptions=False) as test_client:
            yield Api(test_client, services, keys, root)
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _api_settings(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test of the shared `api` services reads the registry and settings they were built on,
    whatever a module run before it in this process left in the settings cache (with
    `make test`'s workers, any module may come between two of this package's)."""
    if {"api", "loopback"} & set(request.fixturenames):
        request.getfixturevalue("registry_env")  # tests/serving/conftest.py
    yield


@contextmanager
def serve_loopback(app: Any, **uvicorn_options: Any) -> Iterator[str]:
    """Run `app` with uvicorn on a free loopback port in a thread; yields its base URL
    (`https://` when `ssl_certfile` is among the options)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", lifespan="off", access_log=False, **uvicorn_options
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test HTTP server did not start within 15 s")
        time.sleep(0.02)
    scheme = "https" if uvicorn_options.get("ssl_certfile") else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Loopback:
    """The same API and services as `api`, served over real HTTP on 127.0.0.1."""

    url: str
    services: Any
    keys: dict[str, str]

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}


@pytest.fixture(scope="session")
def loopback(api: Api) -> Iterator[Loopback]:
    from serving.api.create import create_api

    with serve_loopback(create_api(api.services)) as url:
        yield Loopback(url, api.services, api.keys)
