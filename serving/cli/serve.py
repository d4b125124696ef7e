"""`brandforge serve`: migrate the serving database once, then run the Ray Serve application."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from serving.cli.common import fail

if TYPE_CHECKING:
    from brandforge.params import RolloutParams
    from serving.tls import TlsFiles

GROUP = "serve"


def _prepare_database(*, dev: bool) -> None:
    """Bring the serving database to this release's schema, here, once, before any replica
    starts (replicas only check it), and refuse to serve without an API key unless --dev."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from serving.auth import has_any_key
    from serving.db.engine import engine_for, session_factory
    from serving.db.migrate import upgrade

    engine = engine_for(None)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        upgrade(engine)
        if dev:
            return
        with session_factory(engine)() as session:
            if not has_any_key(session):
                raise fail(
                    GROUP,
                    "no API key is configured: create one with `brandforge keys create "
                    "--name app --role generate`, or run with --dev (no authentication, local "
                    "use only)",
                    2,
                )
    except CommandError as err:  # e.g. a revision a newer release wrote
        raise fail(GROUP, f"serving database {shown}: {err}", 1) from None
    except SQLAlchemyError as err:
        reason = " ".join(str(getattr(err, "orig", None) or err).split())
        raise fail(GROUP, f"serving database {shown}: {reason}", 1) from None
    finally:
        engine.dispose()


def _tls_files() -> TlsFiles | None:
    """BRANDFORGE_TLS_CERT and _KEY, read and matched now: a bad file stops the start here, in
    one line naming it, not in a proxy log half a minute later."""
    from brandforge.settings import get_settings
    from serving.tls import TlsError, check_tls

    settings = get_settings()
    try:
        return check_tls(settings.tls_cert, settings.tls_key, settings.tls_key_password)
    except TlsError as err:
        raise fail(GROUP, str(err), 2) from None


def _check_credentials() -> None:
    """BRANDFORGE_C2PA_CERT and _KEY loaded and tried now (they sign every delivered file): a
    bad file stops the start here, in one line naming it, not in every replica's log."""
    from serving.delivery.credentials import CredentialsError, credentials_from_settings

    try:
        credentials_from_settings()
    except CredentialsError as err:
        raise fail(GROUP, str(err), 2) from None


def _check_asset_keys() -> None:
    """BRANDFORGE_ASSET_KEY_FILE (or _KEY) read now, when set: a bad key file stops the start
    here, in one line naming the file and line, not in every replica's log."""
    from brandforge.settings import get_settings
    from serving.assets.crypto import KeyRing, KeyRingError

    try:
        KeyRing.from_settings(get_settings())
    except KeyRingError as err:
        raise fail(GROUP, str(err), 2) from None


def _rollout_params(params: str) -> RolloutParams:
    """The `rollout:` section of params.yaml when the file exists, else the defaults."""
    from brandforge.params import ParamsError, RolloutParams, load_params

    if not Path(params).is_file():
        return RolloutParams()
    try:
        return load_params(Path(params)).rollout
    except ParamsError as err:
        raise fail(GROUP, str(err), 2) from None


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 8000,
    dev: Annotated[
        bool, typer.Option("--dev", help="No API keys: every request is allowed (local use only).")
    ] = False,
    max_adapters: Annotated[
        int, typer.Option("--max-adapters", min=1, help="Resident adapters per replica (LRU).")
    ] = 4,
    max_batch_size: Annotated[
        int, typer.Option("--max-batch-size", min=1, help="Images per generator batch, at most.")
    ] = 4,
    batch_wait_ms: Annotated[
        float,
        typer.Option(
            "--batch-wait-ms",
            min=0,
            help="How long a batch may wait to fill up to the last batch's size (a request "
            "arriving alone, after a batch of one, never waits).",
        ),
    ] = 500.0,
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, help="Generator replicas (one base model each).")
    ] = 1,
    ingress_replicas: Annotated[
        int,
        typer.Option(
            "--ingress-replicas",
            min=1,
            help="HTTP ingress replicas: each scores, marks and stores its requests' images in "
            "its own process.",
        ),
    ] = 1,
    generator_threads: Annotated[
        int,
        typer.Option(
            "--generator-threads",
            min=0,
            help="Threads each generator replica draws with (0: one per core of its machine).",
        ),
    ] = 0,
    params: Annotated[
        str,
        typer.Option(
            "--params", help="params.yaml whose `rollout:` section sets the canary gates."
        ),
    ] = "params.yaml",
    campaign_workers: Annotated[
        int,
        typer.Option(
            "--campaign-workers",
            min=0,
            help="Campaign worker replicas draining the queue (0: campaigns queue, none run).",
        ),
    ] = 1,
    campaign_batch: Annotated[
        int,
        typer.Option("--campaign-batch", min=1, help="Campaign items a worker draws at once."),
    ] = 4,
    queue_images: Annotated[
        int,
        typer.Option(
            "--queue-images",
            min=1,
            help="Live images waiting per generator replica before new requests get 503.",
        ),
    ] = 32,
    queue_images_per_key: Annotated[
        int,
        typer.Option(
            "--queue-images-per-key",
            min=1,
            help="Live images one API key may have waiting before its requests get 503.",
        ),
    ] = 8,
    deadline_s: Annotated[
        float,
        typer.Option(
            "--deadline-s",
            min=1,
            help="A live request's deadline without X-Request-Deadline-Ms (then 504).",
        ),
    ] = 60.0,
    max_deadline_s: Annotated[
        float,
        typer.Option("--max-deadline-s", min=1, help="The largest X-Request-Deadline-Ms allowed."),
    ] = 300.0,
) -> None:
    """Run the serving tier: a Ray Serve application with the HTTP API (docs at /docs).

    A local Ray starts by default; set RAY_ADDRESS to use an existing cluster. Models come from
    the MLflow registry named by MLFLOW_TRACKING_URI (each brand's `champion`); keys, assets and
    the audit log live in BRANDFORGE_SERVING_DB, whose schema is upgraded first (as `brandforge
    db upgrade` does). Without any API key the server refuses to start unless --dev. HTTPS
    when BRANDFORGE_TLS_CERT and BRANDFORGE_TLS_KEY are set. A local Ray listens on 127.0.0.1
    only; Ctrl-C or SIGTERM stops the application and every Ray process it started (exit 0).
    """
    tls = _tls_files()
    _check_credentials()
    _check_asset_keys()
    _prepare_database(dev=dev)
    rollout = _rollout_params(params)

    from serving.config import ServeConfig
    from serving.runtime import run_forever, served_environment

    config = ServeConfig(
        rollout=rollout.model_dump(),
        dev=dev,
        max_adapters=max_adapters,
        max_batch_size=max_batch_size,
        batch_wait_s=batch_wait_ms / 1000,
        generator_replicas=replicas,
        generator_threads=generator_threads,
        ingress_replicas=ingress_replicas,
        campaign_workers=campaign_workers,
        campaign_claim=campaign_batch,
        max_queued_images=queue_images,
        max_queued_images_per_key=queue_images_per_key,
        deadline_s=deadline_s,
        max_deadline_s=max(max_deadline_s, deadline_s),
        env=served_environment(),
    )
    run_forever(config, host=host, port=port, tls=tls)
