"""Fixtures for the registry on real backends: throwaway PostgreSQL databases, a real
`brandforge mlflow-server` process, an embedded SQLite store, and `tracking_uri`, which runs a
test once on each.

PostgreSQL must be running (CI starts it): by default at 127.0.0.1:5432 as user `postgres`
without a password; set BRANDFORGE_TEST_POSTGRES to another server's maintenance-database URI
(e.g. postgresql://postgres:secret@db:5432/postgres). An unreachable server fails the test
rather than skipping it, so a CI without PostgreSQL cannot pass by testing nothing.

Usage:

    def test_x(pg_database: PgDatabase): ...        # empty db; .uri, .sqlalchemy_uri, .name
    def test_c(pg_database_to_create: PgDatabase): ...  # same, not created (dropped if it is)
    def test_y(mlflow_server: str): ...             # "http://127.0.0.1:<port>", module-wide
    def test_z(running_mlflow_server: MlflowServer): ...  # + .database, .artifacts, .log
    def test_w(sqlite_tracking: str): ...           # "sqlite:///<tmp>/mlflow.db"
    def test_v(tracking_uri: str): ...              # runs twice: sqlite, then the server
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

ADMIN_URI = os.environ.get(
    "BRANDFORGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DB_PREFIX = "brandforge_test_"
SERVER_START_TIMEOUT_S = 90
SERVER_STOP_TIMEOUT_S = 10


@dataclass(frozen=True)
class PgDatabase:
    """A throwaway PostgreSQL database: `uri` for libpq/psycopg2/psql and our server command,
    `sqlalchemy_uri` for MLflow/SQLAlchemy (which needs the psycopg2 driver named)."""

    name: str
    uri: str

    @property
    def sqlalchemy_uri(self) -> str:
        return self.uri.replace("postgresql://", "postgresql+psycopg2://", 1)


@dataclass(frozen=True)
class MlflowServer:
    """A running `brandforge mlflow-server`: its tracking URI, PostgreSQL database, artifacts
    destination folder and the log holding its stdout and stderr."""

    tracking_uri: str
    database: PgDatabase
    artifacts: Path
    log: Path
    process: subprocess.Popen[bytes]


def _masked(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(f":{parts.password}@", ":***@", 1)
    return uri


def _database_uri(name: str) -> str:
    parts = urlsplit(ADMIN_URI)
    return urlunsplit(("postgresql", parts.netloc, f"/{name}", parts.query, ""))


def _admin_connection() -> Any:
    """An autocommit connection to the maintenance database; fails the test when unreachable."""
    import psycopg2

    try:
        conn = psycopg2.connect(ADMIN_URI, connect_timeout=5)
    except psycopg2.OperationalError as err:
        reason = " ".join(str(err).split())
        pytest.fail(
            f"PostgreSQL is not reachable at {_masked(ADMIN_URI)} ({reason}). These tests need "
            "a real server: start PostgreSQL (CI does), or set BRANDFORGE_TEST_POSTGRES to a "
            "maintenance-database URI.",
            pytrace=False,
        )
    conn.autocommit = True
    return conn


def _new_database_name() -> str:
    return f"{DB_PREFIX}{uuid.uuid4().hex[:16]}"


def create_database(name: str) -> PgDatabase:
    """Create the empty database `name` on the test server."""
    from psycopg2 import sql

    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    return PgDatabase(name=name, uri=_database_uri(name))


def drop_database(name: str) -> None:
    """Drop `name` if it exists, first ending every session still connected to it (a server
    being killed, or an SQLAlchemy pool in this process)."""
    from psycopg2 import errors, sql

    conn = _admin_connection()
    try:
        force = conn.server_version >= 130000  # DROP DATABASE ... WITH (FORCE)
        with conn.cursor() as cur:
            for attempt in range(5):
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                statement = "DROP DATABASE IF EXISTS {}" + (" WITH (FORCE)" if force else "")
                try:
                    cur.execute(sql.SQL(statement).format(sql.Identifier(name)))
                    return
                except errors.ObjectInUse:  # a session reconnected between the two statements
                    if attempt == 4:
                        raise
                    time.sleep(0.5)
    finally:
        conn.close()


def database_exists(name: str) -> bool:
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


@contextmanager
def _throwaway_database(*, create: bool) -> Iterator[PgDatabase]:
    name = _new_database_name()
    _admin_connection().close()  # fail now, clearly, when PostgreSQL is not there
    db = create_database(name) if create else PgDatabase(name=name, uri=_database_uri(name))
    try:
        yield db
    finally:
        drop_database(name)


@pytest.fixture
def pg_database() -> Iterator[PgDatabase]:
    """An empty PostgreSQL database `brandforge_test_<hex>`, dropped after the test.

    `pg_database.uri` is a plain `postgresql://` URI (psycopg2, psql, `brandforge
    mlflow-server`); give MLflow `pg_database.sqlalchemy_uri`. Fails the test (no skip) when
    PostgreSQL is not reachable.
    """
    with _throwaway_database(create=True) as db:
        yield db


@pytest.fixture
def pg_database_to_create() -> Iterator[PgDatabase]:
    """Like `pg_database`, but the database is NOT created: for tests of code that creates it.
    Dropped after the test if it then exists."""
    with _throwaway_database(create=False) as db:
        yield db


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(no server log: {err})"


def _healthy(uri: str) -> bool:
    # No proxies: a CI's HTTP_PROXY must not intercept a loopback request.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{uri}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the command forwards it to mlflow), SIGKILL to the whole process group after
    SERVER_STOP_TIMEOUT_S; then end whatever of the group is left (workers, job runners)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: only the server's processes
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _start_server(db: PgDatabase, artifacts: Path, workdir: Path) -> MlflowServer:
    """Start `python -m brandforge mlflow-server` and wait for /health; retried on a new port
    when the one picked was taken in the meantime."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONUNBUFFERED"] = "1"
    # MLflow's job runner (huey consumers for GenAI jobs) is not used by the registry and
    # costs several Python processes; tests run on small CI machines.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    for attempt in range(3):
        port = _free_port()
        log = workdir / f"server-{port}.log"
        argv = [
            sys.executable, "-m", "brandforge", "mlflow-server",
            "--backend-store-uri", db.uri,
            "--artifacts-destination", str(artifacts),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", "2",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _healthy(uri):
                return MlflowServer(uri, db, artifacts, log, process)
            time.sleep(0.25)
        _stop(process)
        text = _tail(log)
        if "address already in use" in text.lower() and attempt < 2:
            continue
        why = (
            f"exited with status {process.returncode}"
            if time.monotonic() < deadline
            else f"did not answer {uri}/health within {SERVER_START_TIMEOUT_S} s"
        )
        pytest.fail(f"mlflow-server {why}; last lines of {log}:\n{text}", pytrace=False)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def running_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `brandforge mlflow-server` (2 workers) on a free loopback port, one per test
    module, backed by a throwaway PostgreSQL database that the command itself creates
    (--create-db) and a tmp artifacts destination. Stopped (SIGTERM, SIGKILL after 10 s) and
    the database dropped after the module. Tests share it: use unique experiment/model names.
    """
    workdir = tmp_path_factory.mktemp("mlflow-server")
    with _throwaway_database(create=False) as db:
        server = _start_server(db, workdir / "artifacts", workdir)
        try:
            yield server
        finally:
            _stop(server.process)


@pytest.fixture(scope="module")
def mlflow_server(running_mlflow_server: MlflowServer) -> str:
    """The tracking URI `http://127.0.0.1:<port>` of the module's real tracking server (see
    `running_mlflow_server`). Module-scoped: it sets no environment and no MLflow global, so
    point MLflow at it yourself (or use `tracking_uri`)."""
    return running_mlflow_server.tracking_uri


def _clear_settings_cache() -> None:
    from brandforge.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture
def sqlite_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`sqlite:///<tmp>/mlflow.db`, a fresh embedded store per test, with
    BRANDFORGE_ARTIFACT_ROOT (and BRANDFORGE_CACHE_DIR) in the test's tmp dir. It does not set
    MLFLOW_TRACKING_URI or MLflow's global URI (`tracking_uri` does)."""
    monkeypatch.setenv("BRANDFORGE_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("BRANDFORGE_CACHE_DIR", str(tmp_path / "cache"))
    _clear_settings_cache()
    yield f"sqlite:///{tmp_path / 'mlflow.db'}"
    _clear_settings_cache()


@contextmanager
def _mlflow_pointed_at(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking URI set to `uri`, and put back as it was afterwards."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    previous = getattr(tracking_utils, "_tracking_uri", None)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None: back to the env


@pytest.fixture(params=["sqlite", "postgres"])
def tracking_uri(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Runs the test on both backends: a fresh `sqlite_tracking` store, then the module's real
    tracking server on PostgreSQL (`mlflow_server`, shared by the module's tests: use unique
    names). MLFLOW_TRACKING_URI and MLflow's global tracking URI point at it during the test;
    BRANDFORGE_ARTIFACT_ROOT is a tmp dir (the server ignores it: it proxies artifacts).
    """
    if request.param == "sqlite":
        uri = str(request.getfixturevalue("sqlite_tracking"))
    else:
        uri = str(request.getfixturevalue("mlflow_server"))
        monkeypatch.setenv("BRANDFORGE_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
        monkeypatch.setenv("BRANDFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _clear_settings_cache()
    with _mlflow_pointed_at(uri):
        yield uri
    _clear_settings_cache()
