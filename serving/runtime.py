"""Starting and stopping the Ray Serve application (`brandforge serve`, and the tests)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from serving.app import ServeConfig, build_app

log = logging.getLogger(__name__)

APP_NAME = "brandforge"


def _absolute_sqlite(uri: str) -> str:
    """`sqlite:///relative.db` → an absolute path: replicas may not share our working folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri.removeprefix(prefix)).resolve())
    return uri


def served_environment() -> tuple[tuple[str, str], ...]:
    """What every replica must see: the stores, as absolute locations."""
    from brandforge.settings import get_settings

    settings = get_settings()
    env = {k: v for k, v in os.environ.items() if k.startswith(("BRANDFORGE_", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = _absolute_sqlite(settings.resolved_tracking_uri())
    env["BRANDFORGE_SERVING_DB"] = _absolute_sqlite(settings.serving_db)
    env["BRANDFORGE_ASSET_DIR"] = str(Path(settings.asset_dir).resolve())
    env["BRANDFORGE_CACHE_DIR"] = str(Path(settings.cache_dir).resolve())
    env["BRANDFORGE_ARTIFACT_ROOT"] = str(Path(settings.artifact_root).resolve())
    for name in ("BRANDFORGE_C2PA_CERT", "BRANDFORGE_C2PA_KEY"):  # replicas run elsewhere
        if env.get(name, "").strip():
            env[name] = str(Path(env[name]).resolve())
    env.setdefault("HF_HUB_OFFLINE", "1")
    return tuple(sorted(env.items()))


def start(config: ServeConfig, *, host: str = "127.0.0.1", port: int = 8000) -> Any:
    """Start Ray (local, or the cluster at RAY_ADDRESS) and deploy the application."""
    import ray
    from ray import serve

    from serving.delivery.redact import install_log_redaction

    # This process's logs (the driver's); each replica installs it again in its own process.
    install_log_redaction()
    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS") or None,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": dict(config.env)},
        )
    serve.start(http_options={"host": host, "port": port})
    return serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False)


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def run_forever(config: ServeConfig, *, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then shut Ray Serve down cleanly."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    start(config, host=host, port=port)
    print(f"BrandForge serving on http://{host}:{port} (API docs: /docs); Ctrl-C stops", flush=True)
    try:
        done.wait()
    finally:
        log.info("stopping")
        stop()
