"""`brandforge mlflow-server`: the production tracking server (PostgreSQL, proxied artifacts).

The command is a thin, checked front of `mlflow server`: it resolves the backend store and the
artifacts destination (flags, then `BRANDFORGE_*` environment variables, then defaults), makes
sure the PostgreSQL database is there (creating it when allowed), fails early with one clear
line when it is not reachable, and then runs `python -m mlflow server`, which applies MLflow's
own schema migrations on start. Clients never see the artifact store: the server proxies it
(`mlflow-artifacts:/`), so an S3 bucket needs credentials on the server only.

Everything but the final process start is a pure or small function, tested on its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn
from urllib.parse import unquote, urlsplit

import typer

from brandforge.settings import sqlalchemy_url
from registry import server_auth

BACKEND_STORE_ENV = "BRANDFORGE_BACKEND_STORE_URI"
ARTIFACTS_DESTINATION_ENV = "BRANDFORGE_ARTIFACTS_DESTINATION"
DEFAULT_BACKEND_STORE_URI = "postgresql://postgres@127.0.0.1:5432/mlflow"
DEFAULT_ARTIFACTS_DESTINATION = "./mlartifacts-server"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_WORKERS = 2
# Seconds to wait for PostgreSQL to accept a connection before calling it unreachable.
CONNECT_TIMEOUT_S = 5
# The database every PostgreSQL server has, used to create the tracking database.
MAINTENANCE_DB = "postgres"
# Exit status for a backend store the server could not use (a usage/environment problem).
EXIT_UNREACHABLE = 2

_POSTGRES_SCHEMES = ("postgresql", "postgres")


class BackendStoreError(RuntimeError):
    """The backend store cannot be used; the message is one line, password already masked."""


def _split(uri: str) -> tuple[str, str, str]:
    """`scheme://netloc/rest` as (scheme, netloc, "/rest"); ("", "", uri) without `://`.

    Textual on purpose: urlunsplit would turn `sqlite:///x` into `sqlite:/x` and drop the
    empty host of a socket URI such as `postgresql+psycopg2:///mlflow`.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "", "", uri
    end = min((rest.index(c) for c in "/?#" if c in rest), default=len(rest))
    return scheme, rest[:end], rest[end:]


def mask_password(uri: str) -> str:
    """`uri` with its password replaced by `***` (in the userinfo and in a `password=` query).

    Used for every message and log line that names a database URI, so that a password never
    ends up in a terminal, a CI log or an error report.
    """
    scheme, netloc, tail = _split(uri)
    if scheme:
        userinfo, at, hostinfo = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
        uri = f"{scheme}://{netloc}{tail}"
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", uri)


def is_postgres_uri(uri: str) -> bool:
    """True for `postgresql://`, `postgres://` and `postgresql+<driver>://` URIs."""
    scheme = urlsplit(uri).scheme.lower()
    return scheme.split("+", 1)[0] in _POSTGRES_SCHEMES


def sqlalchemy_uri(uri: str) -> str:
    """The backend URI as MLflow's SQLAlchemy must get it (`brandforge.settings.sqlalchemy_url`)."""
    return sqlalchemy_url(uri)


def libpq_uri(uri: str) -> str:
    """The PostgreSQL URI as libpq (psycopg2.connect) reads it: `postgresql://`, no driver."""
    _, netloc, tail = _split(uri)
    return f"postgresql://{netloc}{tail}"


def database_name(uri: str) -> str:
    """The database a PostgreSQL URI names; libpq's default (the user name) when it names none."""
    parts = urlsplit(uri)
    name = unquote(parts.path.lstrip("/"))
    if name:
        return name
    return unquote(parts.username or "") or os.environ.get("PGUSER") or "postgres"


def maintenance_uri(uri: str, maintenance_db: str = MAINTENANCE_DB) -> str:
    """The libpq URI of the maintenance database on the same server, as the same user."""
    parts = urlsplit(uri)
    query = f"?{parts.query}" if parts.query else ""
    return f"postgresql://{parts.netloc}/{maintenance_db}{query}"


def absolute_destination(destination: str) -> str:
    """An absolute path for a local destination; any URI with a scheme (s3://, gs://, file://,
    wasbs://, ...) unchanged, since the server hands it to MLflow's artifact repositories."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", destination):
        return destination
    return str(Path(destination).expanduser().absolute())


def resolve_backend_store_uri(
    value: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The backend store URI as the operator gave it: the flag, else $BRANDFORGE_BACKEND_STORE_URI
    (empty counts as unset), else the local PostgreSQL default."""
    env = os.environ if environ is None else environ
    return value or env.get(BACKEND_STORE_ENV) or DEFAULT_BACKEND_STORE_URI


def resolve_artifacts_destination(
    value: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The flag, else $BRANDFORGE_ARTIFACTS_DESTINATION (empty counts as unset), else
    ./mlartifacts-server; made absolute when it is a local path (see `absolute_destination`)."""
    env = os.environ if environ is None else environ
    destination = value or env.get(ARTIFACTS_DESTINATION_ENV) or DEFAULT_ARTIFACTS_DESTINATION
    return absolute_destination(destination)


def build_server_command(
    *,
    backend_store_uri: str | None = None,
    artifacts_destination: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = DEFAULT_WORKERS,
    app_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The full `python -m mlflow server ...` argument list.

    An option left as None comes from its `BRANDFORGE_*` environment variable (an empty value
    counts as unset), else from the default. Artifacts are always proxied by the server.
    `app_name` selects an MLflow server app, e.g. `basic-auth`.
    """
    backend = resolve_backend_store_uri(backend_store_uri, environ)
    destination = resolve_artifacts_destination(artifacts_destination, environ)
    app = ["--app-name", app_name] if app_name else []
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        sqlalchemy_uri(backend),
        "--serve-artifacts",
        "--artifacts-destination",
        destination,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        *app,
    ]


def masked_command(argv: Sequence[str]) -> str:
    """`argv` as one printable line with every URI's password masked."""
    return " ".join(mask_password(arg) if "://" in arg else arg for arg in argv)


def _one_line(err: BaseException, uri: str) -> str:
    """The first meaningful line of a driver error, with the URI's password never shown."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    password = urlsplit(uri).password
    if password:
        text = text.replace(password, "***")
    return text


def _connect(dsn: str) -> Any:
    """A psycopg2 connection that gives up after CONNECT_TIMEOUT_S instead of hanging."""
    import psycopg2

    return psycopg2.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S)


def database_exists(uri: str) -> bool:
    """Whether the database `uri` names exists, asked of the server's maintenance database.

    Raises psycopg2.Error when the maintenance database cannot be reached.
    """
    conn = _connect(maintenance_uri(uri))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database_name(uri),))
            return cur.fetchone() is not None
    finally:
        conn.close()


def create_database(uri: str) -> bool:
    """Create the database `uri` names, connecting to the maintenance database of its server.

    Returns True when this call created it, False when it already existed (also when another
    process created it at the same moment). Raises psycopg2.Error for anything else.
    """
    from psycopg2 import errors, sql

    conn = _connect(maintenance_uri(uri))
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database_name(uri),))
            if cur.fetchone() is not None:
                return False
            try:
                cur.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database_name(uri)))
                )
            except (errors.DuplicateDatabase, errors.UniqueViolation):
                return False  # created by another process between the check and here
        return True
    finally:
        conn.close()


def ensure_postgres_database(uri: str, *, create: bool) -> str:
    """Make sure the PostgreSQL database `uri` names accepts connections; create it when it is
    missing and `create` is set. Returns what was done, for the operator.

    Raises BackendStoreError (one line, password masked, with what to do) otherwise.
    """
    import psycopg2

    masked = mask_password(uri)
    name = database_name(uri)
    try:
        _connect(libpq_uri(uri)).close()
        return f"database {name!r} is reachable"
    except psycopg2.Error as err:
        first_error = err

    # The database may be missing: ask the server (this also tells an unreachable server
    # apart from a missing database).
    try:
        exists = database_exists(uri)
    except psycopg2.Error:
        raise BackendStoreError(
            f"cannot reach the backend store {masked}: {_one_line(first_error, uri)} "
            "-- check that PostgreSQL runs there and accepts this user, or point "
            f"--backend-store-uri / {BACKEND_STORE_ENV} at a reachable database"
        ) from None
    if exists:
        raise BackendStoreError(
            f"cannot connect to the backend store {masked}: {_one_line(first_error, uri)} "
            "-- check the user, password and the database's connect permissions"
        )
    if not create:
        raise BackendStoreError(
            f"the backend store {masked} does not exist (database {name!r}) "
            "-- create it, or run again with --create-db"
        )
    try:
        created = create_database(uri)
        _connect(libpq_uri(uri)).close()
    except psycopg2.Error as err:
        raise BackendStoreError(
            f"cannot create database {name!r} for the backend store {masked}: "
            f"{_one_line(err, uri)} -- create it yourself, or grant the user CREATEDB"
        ) from None
    where = f"{urlsplit(uri).hostname or 'localhost'}:{urlsplit(uri).port or 5432}"
    if created:
        return f"created database {name!r} on {where}"
    return f"database {name!r} on {where} was created concurrently; using it"


def check_sqlalchemy_store(uri: str) -> str:
    """Open one connection to a non-PostgreSQL SQL backend (SQLite, MySQL, ...).

    Raises BackendStoreError when it cannot connect.
    """
    import sqlalchemy

    masked = mask_password(uri)
    try:
        engine = sqlalchemy.create_engine(uri)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as err:  # any driver's error: report it, do not guess its type
        raise BackendStoreError(
            f"cannot reach the backend store {masked}: {_one_line(err, uri)} "
            f"-- fix --backend-store-uri / {BACKEND_STORE_ENV}"
        ) from None
    return "backend store is reachable"


def prepare_backend_store(uri: str, *, create: bool) -> str:
    """Check (and for PostgreSQL, create when allowed) the backend store before the server
    starts, so a wrong URI fails in one line instead of a traceback from every worker."""
    if is_postgres_uri(uri):
        return ensure_postgres_database(uri, create=create)
    if "://" in uri and not uri.startswith("file:"):
        return check_sqlalchemy_store(uri)
    return "file store: nothing to check"


def run_forwarding_signals(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run `argv` (in `env`, else ours), passing SIGTERM and SIGINT on to it, and return its
    exit status.

    A child killed by a signal gives 128 + the signal number, as a shell reports it.
    """
    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child is None:
            pending.append(signum)  # arrived before the child existed: send it once it does
        elif child.poll() is None:
            child.send_signal(signum)

    forwarded = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    try:
        child = subprocess.Popen(list(argv), env=None if env is None else dict(env))
        for signum in pending:
            child.send_signal(signum)
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def mlflow_server_command(
    backend_store_uri: Annotated[
        str | None,
        typer.Option(
            "--backend-store-uri",
            help="Where runs and registered models live (SQLAlchemy URI). "
            f"Default: ${BACKEND_STORE_ENV}, else {DEFAULT_BACKEND_STORE_URI}.",
            show_default=False,
        ),
    ] = None,
    artifacts_destination: Annotated[
        str | None,
        typer.Option(
            "--artifacts-destination",
            help="Where the server stores artifacts it proxies: a local folder or a URI such as "
            f"s3://bucket/prefix (passed on unchanged). Default: ${ARTIFACTS_DESTINATION_ENV}, "
            f"else {DEFAULT_ARTIFACTS_DESTINATION}.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option("--host", help="Interface to bind; anything beyond 127.0.0.1 wants --auth."),
    ] = DEFAULT_HOST,
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")
    ] = DEFAULT_PORT,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Server worker processes.")
    ] = DEFAULT_WORKERS,
    create_db: Annotated[
        bool,
        typer.Option(
            "--create-db/--no-create-db",
            help="Create the PostgreSQL database when it does not exist (through the server's "
            "'postgres' maintenance database).",
        ),
    ] = True,
    auth: Annotated[
        bool,
        typer.Option(
            "--auth/--no-auth",
            envvar="BRANDFORGE_MLFLOW_AUTH",
            help="MLflow's basic-auth app: every request needs a user's password. Needs "
            f"{server_auth.SECRET_KEY_ENV}, and MLFLOW_AUTH_ADMIN_PASSWORD on the first start.",
        ),
    ] = False,
    auth_db: Annotated[
        str | None,
        typer.Option(
            "--auth-db",
            help="Where --auth keeps users and permissions (SQLAlchemy URI; a PostgreSQL "
            f"database is created like the backend's). Default: ${server_auth.AUTH_DB_ENV}, "
            f"else {server_auth.DEFAULT_AUTH_DB}. Ignored when ${server_auth.CONFIG_PATH_ENV} "
            "names your own auth config.",
            show_default=False,
        ),
    ] = None,
    auth_default_permission: Annotated[
        str,
        typer.Option(
            "--auth-default-permission",
            help="What a signed-in user may do where nobody granted them anything: "
            + ", ".join(server_auth.PERMISSIONS),
        ),
    ] = "READ",
) -> None:
    """Run the production MLflow tracking server: PostgreSQL store, proxied artifacts.

    Checks that the backend store is reachable (exit 2 with the reason otherwise), creates the
    PostgreSQL database if it is missing, then runs `mlflow server`, which applies MLflow's
    schema migrations on start. Clients use --host/--port as MLFLOW_TRACKING_URI and read and
    write artifacts through the server only. With --auth every request needs a user's
    password (clients set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD). SIGTERM/SIGINT
    stop the server gracefully; the exit status is the server's.
    """
    argv = build_server_command(
        backend_store_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
        host=host,
        port=port,
        workers=workers,
        app_name=server_auth.APP_NAME if auth else None,
    )
    backend = resolve_backend_store_uri(backend_store_uri)  # as given, for the messages
    try:
        done = prepare_backend_store(backend, create=create_db)
    except BackendStoreError as err:
        typer.secho(f"mlflow-server: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    typer.echo(f"mlflow-server: backend store {mask_password(backend)}: {done}")
    if auth:
        env, config = _auth_environment(auth_db, auth_default_permission, create=create_db)
    else:
        env, config = dict(os.environ), None
        if not server_auth.is_loopback_host(host):
            typer.secho(
                f"mlflow-server: warning: {host} without --auth: whoever reaches port {port} "
                "can read and change every run and model",
                fg=typer.colors.YELLOW,
                err=True,
            )
    typer.echo(f"mlflow-server: artifacts in {argv[argv.index('--artifacts-destination') + 1]}")
    how = "basic-auth" if auth else "no authentication"
    typer.echo(f"mlflow-server: serving http://{host}:{port} ({workers} workers, {how})")
    typer.echo(f"mlflow-server: {masked_command(argv)}")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        code = run_forwarding_signals(argv, env)
    finally:
        if config is not None:
            config.unlink(missing_ok=True)
    raise typer.Exit(code)


def _auth_environment(
    auth_db: str | None, default_permission: str, *, create: bool
) -> tuple[dict[str, str], Path | None]:
    """The server's environment for --auth, and the auth config file written for it (None
    when $MLFLOW_AUTH_CONFIG_PATH names the operator's own). Exit 2 with the reason when the
    secret key is missing or the users database cannot be used."""
    env = dict(os.environ)
    missing = server_auth.missing_auth_settings(env)
    if missing:
        _exit_with(
            f"--auth needs {', '.join(missing)} (one value for every worker and restart), e.g. "
            f"export {server_auth.SECRET_KEY_ENV}=\"$(python -c 'import secrets; "
            "print(secrets.token_hex(32))')\""
        )
    if env.get(server_auth.CONFIG_PATH_ENV):
        typer.echo(f"mlflow-server: basic-auth config {env[server_auth.CONFIG_PATH_ENV]}")
        return env, None
    uri = server_auth.resolve_auth_db(auth_db)
    try:
        text = server_auth.auth_config_text(database_uri=uri, default_permission=default_permission)
        done = prepare_backend_store(uri, create=create)
    except (ValueError, BackendStoreError) as err:
        _exit_with(f"--auth: {err}")
    config = server_auth.write_auth_config(text)
    env[server_auth.CONFIG_PATH_ENV] = str(config)
    typer.echo(f"mlflow-server: basic-auth users in {mask_password(uri)}: {done}")
    return env, config


def _exit_with(message: str) -> NoReturn:
    typer.secho(f"mlflow-server: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(EXIT_UNREACHABLE)
