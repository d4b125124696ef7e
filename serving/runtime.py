"""Starting and stopping the Ray Serve application (`brandforge serve`, and the tests)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from serving.app import ServeConfig, build_app
from serving.tls import TlsFiles

log = logging.getLogger(__name__)

APP_NAME = "brandforge"
LOOPBACK = "127.0.0.1"
# The processes (psutil) that `ray.init` started in this process: gcs, raylet, monitors.
_STARTED_HERE: list[Any] = []


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
    # Files named by path, as absolute paths: replicas run elsewhere.
    for name in (
        "BRANDFORGE_C2PA_CERT",
        "BRANDFORGE_C2PA_KEY",
        "BRANDFORGE_ASSET_KEY_FILE",
        "BRANDFORGE_PRIVACY_KEY_FILE",
    ):
        if env.get(name, "").strip():
            env[name] = str(Path(env[name]).resolve())
    env.setdefault("HF_HUB_OFFLINE", "1")
    return tuple(sorted(env.items()))


def _processes_started(before: set[int]) -> list[Any]:
    """This process's children that are not in `before`: what `ray.init` just started."""
    import psutil

    return [child for child in psutil.Process().children() if child.pid not in before]


@contextmanager
def _loopback_only() -> Iterator[None]:
    """Within: a Ray started here takes the loopback address for its node.

    Ray binds gcs, raylet, the agents and workers to the node's address, which it takes from
    the network unless its multi-node support is off (the default on macOS and Windows, the
    env switch elsewhere); the processes ray.init starts read the switch from the
    environment, this one read it when `ray` was imported. Both are restored after the start,
    so that a later `ray start` in this process may still build a cluster.
    """
    from ray._private import ray_constants

    saved_env = os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR)
    saved_constant = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_env is None:
            os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved_env


def replica_grpc_on_loopback() -> None:
    """Setup hook of every worker of a local Ray: Serve replicas listen on 127.0.0.1.

    Ray Serve (2.60) binds each replica's inter-deployment gRPC server, which answers calls to
    the deployments without the API's keys, to `[::]:0` (every interface) in
    `ray.serve._private.replica`, with no option; the node's own address is loopback here.
    """
    from ray.serve._private import replica

    bind = replica.add_port_to_grpc_server
    if getattr(bind, "loopback", False):
        return

    def bind_loopback(server: Any, address: str) -> int:
        host, _, port = address.rpartition(":")
        return int(bind(server, f"{LOOPBACK}:{port}" if host in ("[::]", "0.0.0.0") else address))

    bind_loopback.loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = bind_loopback


def _init_ray(config: ServeConfig) -> None:
    """Connect to the cluster at RAY_ADDRESS, or start a local Ray listening on 127.0.0.1 only
    (and remember its processes, for `stop`)."""
    import psutil
    import ray

    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "runtime_env": {"env_vars": dict(config.env)},
    }
    address = os.environ.get("RAY_ADDRESS") or None
    # ray.init replaces this process's SIGTERM handler with sys.exit, which skips `stop`.
    on_sigterm = signal.getsignal(signal.SIGTERM)
    if address:
        ray.init(address=address, **options)
    else:
        options["runtime_env"]["worker_process_setup_hook"] = f"{__name__}.replica_grpc_on_loopback"
        before = {child.pid for child in psutil.Process().children()}
        try:
            with _loopback_only():
                ray.init(_node_ip_address=LOOPBACK, **options)
        finally:  # also after a failed or interrupted start: stop() ends what did start
            _STARTED_HERE[:] = _processes_started(before)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)


def start(
    config: ServeConfig,
    *,
    host: str = LOOPBACK,
    port: int = 8000,
    tls: TlsFiles | None = None,
) -> Any:
    """Start Ray (local, or the cluster at RAY_ADDRESS) and deploy the application; over
    HTTPS when `tls` is given (checked first: `serving.tls.check_tls`)."""
    import ray
    from ray import serve

    from serving.delivery.redact import install_log_redaction

    # This process's logs (the driver's); each replica installs it again in its own process.
    install_log_redaction()
    if not ray.is_initialized():
        _init_ray(config)
    http_options: dict[str, Any] = {"host": host, "port": port}
    if tls is not None:
        http_options.update(tls.http_options())
    serve.start(http_options=http_options)
    return serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False)


def _end(processes: list[Any], grace_s: float) -> None:
    """SIGTERM, then after `grace_s` SIGKILL, for each of `processes` still running."""
    import psutil

    alive = [p for p in processes if p.is_running()]
    for process in alive:
        with suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(alive, timeout=grace_s)
    for process in alive:
        with suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    if alive:
        log.warning("killed %d Ray processes that did not stop on SIGTERM", len(alive))


def stop(grace_s: float = 5.0) -> None:
    """Shut Ray Serve down, then Ray, then every process left of a Ray started here.

    `ray.shutdown` ends gcs and raylet but leaves the dashboard and runtime-env agents (the
    raylet's children) running; they are listed before their parent goes, and ended after.
    """
    import ray
    from ray import serve

    ours = [p for started in _STARTED_HERE if started.is_running() for p in _tree(started)]
    _STARTED_HERE.clear()
    try:
        if ray.is_initialized():  # else serve.shutdown would start a Ray to ask
            serve.shutdown()
    finally:
        ray.shutdown()
        _end(ours, grace_s)


def _tree(process: Any) -> list[Any]:
    import psutil

    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:  # it ended while we looked
        return []


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived while the application was still starting."""


def run_forever(config: ServeConfig, *, host: str, port: int, tls: TlsFiles | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop Ray Serve and every Ray process started here.

    A signal during the start (which waits for every replica, model loading included) stops
    it at once rather than after it.
    """
    done = threading.Event()
    starting = True

    def on_signal(_signum: int, _frame: Any) -> None:
        done.set()
        if starting:
            raise _Stopped

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        start(config, host=host, port=port, tls=tls)
        starting = False
        scheme = "https" if tls else "http"
        print(
            f"BrandForge serving on {scheme}://{host}:{port} (API docs: /docs); Ctrl-C stops",
            flush=True,
        )
        done.wait()
    except _Stopped:
        log.info("stopped while starting")
    finally:
        starting = False
        log.info("stopping")
        stop()
