"""`brandforge mlflow-server --auth`: MLflow's basic-auth app, its config file, the checks
before start, and a real server on loopback that refuses requests without the admin's
password."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from brandforge.cli import app
from registry import server, server_auth
from tests.registry.conftest import _free_port, _healthy, _stop

runner = CliRunner()


def test_auth_selects_mlflows_basic_auth_app() -> None:
    argv = server.build_server_command(app_name="basic-auth", environ={})
    assert argv[-2:] == ["--app-name", "basic-auth"]
    assert "--app-name" not in server.build_server_command(environ={})


def test_the_auth_config_names_the_users_database_and_permission(tmp_path: Path) -> None:
    text = server_auth.auth_config_text(
        database_uri="postgresql://auth:p%40ss@db:5432/mlflow_auth", default_permission="READ"
    )
    config = configparser.ConfigParser()
    config.read_string(text)
    assert dict(config["mlflow"]) == {
        "default_permission": "READ",
        "database_uri": "postgresql+psycopg2://auth:p%40ss@db:5432/mlflow_auth",
        "admin_username": "admin",
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    with pytest.raises(ValueError, match="use one of READ, EDIT, MANAGE, NO_PERMISSIONS"):
        server_auth.auth_config_text(database_uri="sqlite:///a.db", default_permission="ALL")
    written = server_auth.write_auth_config(text)
    try:
        assert written.read_text() == text and written.stat().st_mode & 0o777 == 0o600
    finally:
        written.unlink()


def test_the_users_database_defaults_to_an_absolute_sqlite_file() -> None:
    default = server_auth.resolve_auth_db(environ={})
    assert default == f"sqlite:///{Path('mlflow-auth.db').absolute()}"
    env = {"BRANDFORGE_MLFLOW_AUTH_DB": "postgresql://u@db/auth"}
    assert server_auth.resolve_auth_db(environ=env) == "postgresql://u@db/auth"
    assert server_auth.resolve_auth_db("sqlite:////srv/auth.db", env) == "sqlite:////srv/auth.db"


def test_auth_without_a_secret_key_exits_2_saying_what_to_set(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY", raising=False)
    backend = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(app, ["mlflow-server", "--backend-store-uri", backend, "--auth"])
    assert result.exit_code == 2, result.output
    assert "--auth needs MLFLOW_FLASK_SERVER_SECRET_KEY" in result.output


def test_a_public_host_without_auth_is_warned_about() -> None:
    assert server_auth.is_loopback_host("127.0.0.1") and server_auth.is_loopback_host("::1")
    assert server_auth.is_loopback_host("localhost")
    assert not server_auth.is_loopback_host("0.0.0.0")
    assert not server_auth.is_loopback_host("10.0.0.5")


def test_a_basic_auth_server_admits_only_the_admin(tmp_path: Path) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_FLASK_SERVER_SECRET_KEY=uuid.uuid4().hex,
        MLFLOW_AUTH_ADMIN_PASSWORD=password,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        PYTHONUNBUFFERED="1",
    )
    port = _free_port()
    argv = [
        sys.executable, "-m", "brandforge", "mlflow-server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--port", str(port), "--workers", "1",
        "--auth", "--auth-db", f"sqlite:///{tmp_path / 'auth.db'}",
    ]  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _healthy(base):  # /health is open, as MLflow's auth app leaves it
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow-server --auth did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(search, timeout=10).status_code == 401
        assert requests.get(search, auth=("admin", "wrong"), timeout=10).status_code == 401
        admitted = requests.get(search, auth=("admin", password), timeout=10)
        assert admitted.status_code == 200, admitted.text
        assert "basic-auth" in log.read_text() and password not in log.read_text()
    finally:
        _stop(process)
    assert process.returncode == 0, log.read_text()[-3000:]
