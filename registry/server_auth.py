"""MLflow's basic-auth app for `brandforge mlflow-server --auth`: its config file and checks.

MLflow's `basic-auth` app (`mlflow server --app-name basic-auth`) keeps users and permissions
in a database of its own, named in an INI file that `MLFLOW_AUTH_CONFIG_PATH` points to. The
first start against an empty user database creates the admin user from
`MLFLOW_AUTH_ADMIN_USERNAME` (default `admin`) and `MLFLOW_AUTH_ADMIN_PASSWORD`; every worker
needs the same `MLFLOW_FLASK_SERVER_SECRET_KEY` (CSRF tokens). MLflow reads all three itself,
so they never appear in a file or an argument list here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from brandforge.settings import sqlalchemy_url

AUTH_DB_ENV = "BRANDFORGE_MLFLOW_AUTH_DB"
DEFAULT_AUTH_DB = "sqlite:///mlflow-auth.db"
CONFIG_PATH_ENV = "MLFLOW_AUTH_CONFIG_PATH"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
APP_NAME = "basic-auth"
# What a signed-in user may do with an experiment or model no one granted them anything on.
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


def resolve_auth_db(value: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The users database: the flag, else $BRANDFORGE_MLFLOW_AUTH_DB, else `mlflow-auth.db` in
    the working folder; a relative SQLite path made absolute (workers may not share our cwd)."""
    env = os.environ if environ is None else environ
    uri = value or env.get(AUTH_DB_ENV) or DEFAULT_AUTH_DB
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri.removeprefix(prefix)).absolute())
    return uri


def auth_config_text(*, database_uri: str, default_permission: str) -> str:
    """The INI file MLflow's basic-auth app reads (`mlflow/server/auth/basic_auth.ini`)."""
    if default_permission not in PERMISSIONS:
        raise ValueError(
            f"default permission {default_permission!r}: use one of {', '.join(PERMISSIONS)}"
        )
    return (
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = {sqlalchemy_url(database_uri).replace('%', '%%')}\n"
        # MLFLOW_AUTH_ADMIN_USERNAME, when set, wins over this (MLflow reads both).
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def write_auth_config(text: str) -> Path:
    """`text` in a new owner-only file (it may hold the users database's password)."""
    fd, name = tempfile.mkstemp(prefix="brandforge-mlflow-auth-", suffix=".ini")
    with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600
        out.write(text)
    return Path(name)


def missing_auth_settings(environ: Mapping[str, str]) -> list[str]:
    """The environment variables basic-auth needs that are not set (empty counts as unset)."""
    return [name for name in (SECRET_KEY_ENV,) if not environ.get(name)]


def is_loopback_host(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
