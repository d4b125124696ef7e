"""`brandforge mlflow-server`: the argument list, password masking, the checks before start,
and a real server on PostgreSQL (artifacts through the proxy, concurrent registrations)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brandforge.cli import app
from registry import server
from tests.registry.conftest import MlflowServer, PgDatabase, database_exists

runner = CliRunner()


def _options(argv: list[str]) -> dict[str, str]:
    """`--flag value` pairs of an mlflow argument list (flags without a value map to "")."""
    options: dict[str, str] = {}
    i = 4  # after: python -m mlflow server
    while i < len(argv):
        flag = argv[i]
        has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        options[flag] = argv[i + 1] if has_value else ""
        i += 2 if has_value else 1
    return options


# --- the argument list ------------------------------------------------------------------------


def test_defaults_run_the_venvs_mlflow_with_proxied_artifacts() -> None:
    argv = server.build_server_command(environ={})
    assert argv[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert _options(argv) == {
        "--backend-store-uri": "postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow",
        "--serve-artifacts": "",
        "--artifacts-destination": str(Path("mlartifacts-server").absolute()),
        "--host": "127.0.0.1",
        "--port": "5000",
        "--workers": "2",
    }


def test_environment_overrides_the_defaults_and_flags_override_the_environment() -> None:
    env = {
        "BRANDFORGE_BACKEND_STORE_URI": "postgresql://mlflow:pw@db.internal:6543/tracking",
        "BRANDFORGE_ARTIFACTS_DESTINATION": "s3://brandforge-artifacts/mlflow",
    }
    from_env = _options(server.build_server_command(environ=env))
    assert from_env["--backend-store-uri"] == (
        "postgresql+psycopg2://mlflow:pw@db.internal:6543/tracking"
    )
    assert from_env["--artifacts-destination"] == "s3://brandforge-artifacts/mlflow"

    from_flags = _options(
        server.build_server_command(
            backend_store_uri="sqlite:////srv/mlflow.db",
            artifacts_destination="/srv/artifacts",
            host="0.0.0.0",
            port=8080,
            workers=4,
            environ=env,
        )
    )
    assert from_flags["--backend-store-uri"] == "sqlite:////srv/mlflow.db"
    assert from_flags["--artifacts-destination"] == "/srv/artifacts"
    assert (from_flags["--host"], from_flags["--port"], from_flags["--workers"]) == (
        "0.0.0.0",
        "8080",
        "4",
    )


def test_an_empty_environment_variable_counts_as_unset() -> None:
    env = {"BRANDFORGE_BACKEND_STORE_URI": "", "BRANDFORGE_ARTIFACTS_DESTINATION": ""}
    options = _options(server.build_server_command(environ=env))
    assert options["--backend-store-uri"].endswith("@127.0.0.1:5432/mlflow")
    assert options["--artifacts-destination"] == str(Path("mlartifacts-server").absolute())


@pytest.mark.parametrize(
    "destination",
    [
        "s3://brandforge-artifacts/mlflow",
        "s3://bucket",
        "gs://bucket/prefix",
        "wasbs://c@acct.blob.core.windows.net/p",
        "file:///srv/a",
    ],
)
def test_a_destination_uri_passes_through_unchanged(destination: str) -> None:
    argv = server.build_server_command(artifacts_destination=destination, environ={})
    assert _options(argv)["--artifacts-destination"] == destination


def test_a_local_destination_becomes_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = server.build_server_command(artifacts_destination="store/a", environ={})
    assert _options(argv)["--artifacts-destination"] == str(tmp_path / "store" / "a")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgres://u:p@h:1/db", "postgresql+psycopg2://u:p@h:1/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        ("mysql+pymysql://u:p@h/db", "mysql+pymysql://u:p@h/db"),
        (
            "postgresql:///mlflow?host=/run/postgresql",
            "postgresql+psycopg2:///mlflow?host=/run/postgresql",
        ),
    ],
)
def test_postgres_uris_name_the_installed_driver(given: str, expected: str) -> None:
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed.
    assert server.sqlalchemy_uri(given) == expected


def test_database_and_maintenance_uris() -> None:
    uri = "postgresql+psycopg2://u:p%40ss@h:6543/my%20db?sslmode=require"
    assert server.database_name(uri) == "my db"
    assert server.maintenance_uri(uri) == "postgresql://u:p%40ss@h:6543/postgres?sslmode=require"
    assert server.libpq_uri(uri).startswith("postgresql://u:p%40ss@h:6543/")
    assert server.database_name("postgresql://alice@h") == "alice"
    socket_uri = "postgresql+psycopg2:///mlflow?host=/run/postgresql"
    assert server.libpq_uri(socket_uri) == "postgresql:///mlflow?host=/run/postgresql"
    assert server.maintenance_uri(socket_uri) == "postgresql:///postgres?host=/run/postgresql"
    assert server.database_name(socket_uri) == "mlflow"


# --- password masking -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql+psycopg2://u:p%40ss:w@h/db", "postgresql+psycopg2://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db?user=u&password=secret", "postgresql://h/db?user=u&password=***"),
        ("mysql://root:pw@h/db", "mysql://root:***@h/db"),
        ("sqlite:///tmp/mlflow.db", "sqlite:///tmp/mlflow.db"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
    ],
)
def test_mask_password(uri: str, masked: str) -> None:
    assert server.mask_password(uri) == masked


def test_the_printed_command_masks_the_password() -> None:
    argv = server.build_server_command(backend_store_uri="postgresql://u:secret@h/db", environ={})
    line = server.masked_command(argv)
    assert "secret" not in line and "postgresql+psycopg2://u:***@h/db" in line


# --- the command ------------------------------------------------------------------------------


def test_help_names_every_option() -> None:
    result = runner.invoke(app, ["mlflow-server", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in (
        "--backend-store-uri",
        "--artifacts-destination",
        "--host",
        "--port",
        "--workers",
        "--create-db",
        "--no-create-db",
        "BRANDFORGE_BACKEND_STORE_URI",
        "BRANDFORGE_ARTIFACTS_DESTINATION",
    ):
        assert option in result.output
    assert "production MLflow tracking server" in result.output


def test_an_unreachable_database_exits_2_with_one_clear_line() -> None:
    uri = "postgresql://postgres:s3cret@127.0.0.1:1/mlflow"  # nothing listens on port 1
    result = runner.invoke(app, ["mlflow-server", "--backend-store-uri", uri])
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert "\n" not in message
    assert "postgresql://postgres:***@127.0.0.1:1/mlflow" in message
    assert "s3cret" not in message
    assert "cannot reach the backend store" in message
    assert "BRANDFORGE_BACKEND_STORE_URI" in message  # what to do


def test_the_backend_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("BRANDFORGE_BACKEND_STORE_URI", "postgresql://u:pw@127.0.0.1:1/fromenv")
    result = runner.invoke(app, ["mlflow-server"])
    assert result.exit_code == 2
    assert "postgresql://u:***@127.0.0.1:1/fromenv" in result.output


def test_a_missing_database_with_no_create_db_exits_2(pg_database_to_create: PgDatabase) -> None:
    db = pg_database_to_create
    result = runner.invoke(app, ["mlflow-server", "--backend-store-uri", db.uri, "--no-create-db"])
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output and "--create-db" in result.output
    assert not database_exists(db.name)


def test_a_missing_database_is_created_once(pg_database_to_create: PgDatabase) -> None:
    db = pg_database_to_create
    assert server.ensure_postgres_database(db.uri, create=True).startswith("created database")
    assert database_exists(db.name)
    assert "reachable" in server.ensure_postgres_database(db.uri, create=True)
    assert server.create_database(db.uri) is False  # already there: not an error


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_are_forwarded_and_the_status_returned(tmp_path: Path, sig: int) -> None:
    # The command's wrapper runs in its own process: a broken forwarder must not hit pytest.
    ready = tmp_path / "ready"
    server_stand_in = textwrap.dedent(
        f"""
        import pathlib, signal, sys, time
        signal.signal({int(sig)}, lambda *_: sys.exit(7))
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(30)
        """
    )
    wrapper = (
        "import sys; from registry.server import run_forwarding_signals; "
        "sys.exit(run_forwarding_signals(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", wrapper, sys.executable, "-c", server_stand_in],
        start_new_session=True,  # a SIGINT sent here reaches the wrapper only, as from systemd
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), "the stand-in server did not start"
        proc.send_signal(sig)  # to the wrapper only; the stand-in hears it only if forwarded
        assert proc.wait(timeout=10) == 7
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_server_killed_by_a_signal_exits_128_plus_its_number() -> None:
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert server.run_forwarding_signals([sys.executable, "-c", killed]) == 128 + 9


# --- a real server on PostgreSQL --------------------------------------------------------------


def test_the_command_created_and_migrated_the_database(
    running_mlflow_server: MlflowServer,
) -> None:
    import psycopg2

    log = running_mlflow_server.log.read_text()
    assert f"created database {running_mlflow_server.database.name!r}" in log
    assert f"backend store {running_mlflow_server.database.uri}" in log
    conn = psycopg2.connect(running_mlflow_server.database.uri)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            assert cur.fetchone() is not None  # mlflow server ran its migrations
    finally:
        conn.close()


def test_an_artifact_goes_through_the_proxy_and_comes_back(
    running_mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    uri = running_mlflow_server.tracking_uri
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(f"server-artifacts-{uuid.uuid4().hex[:8]}")
    assert client.get_experiment(experiment_id).artifact_location.startswith("mlflow-artifacts:")
    run = client.create_run(experiment_id)
    payload = os.urandom(64 * 1024) + b"brandforge"
    local = tmp_path / "up" / "adapter.bin"
    local.parent.mkdir()
    local.write_bytes(payload)
    client.log_artifact(run.info.run_id, str(local), artifact_path="lora")
    client.set_terminated(run.info.run_id)

    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="lora/adapter.bin",
        dst_path=str(tmp_path / "down"),
        tracking_uri=uri,
    )
    assert Path(back).read_bytes() == payload
    # Stored by the server in its destination, not by the client anywhere local.
    stored = list(running_mlflow_server.artifacts.rglob("adapter.bin"))
    assert len(stored) == 1 and stored[0].read_bytes() == payload


REGISTER_ONE_VERSION = textwrap.dedent(
    """
    import sys
    from mlflow import MlflowClient

    tracking_uri, name, source, run_id = sys.argv[1:5]
    client = MlflowClient(tracking_uri=tracking_uri)
    client.get_registered_model(name)  # imports done and connection open before the start
    print("ready", flush=True)
    sys.stdin.readline()  # the start signal, sent to both processes at once
    print(client.create_model_version(name, source, run_id=run_id).version, flush=True)
    """
)


def test_two_registrations_at_once_get_distinct_versions(
    running_mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    uri = running_mlflow_server.tracking_uri
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(f"server-race-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"\0" * 128)
    client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
    client.set_terminated(run.info.run_id)
    name = f"brandforge-race-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)

    source = f"runs:/{run.info.run_id}/model"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER_ONE_VERSION, uri, name, source, run.info.run_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                proc.kill()
                pytest.fail(f"registering process did not start: {proc.communicate()[1][-2000:]}")
        for proc in procs:  # both start within microseconds of each other
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        versions = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err[-2000:]
            versions.append(out.strip().splitlines()[-1])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert sorted(versions) == ["1", "2"]
    registered = client.search_model_versions(f"name = '{name}'")
    assert sorted(v.version for v in registered) == ["1", "2"]
