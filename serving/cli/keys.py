"""`brandforge serve` and `brandforge keys`."""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

keys_app = typer.Typer(help="API keys of the serving tier.", no_args_is_help=True)

# The CLI imports serving.auth (and SQLAlchemy, ~0.3 s) only when a `keys` command runs, not on
# every `brandforge` start, so the role names for --help are spelled out here;
# tests/serving/test_auth.py checks they match serving.auth.ROLES.
ROLES_HELP = "generate, review, deploy, admin"

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Serving database URL (sqlite:///serving.db, postgresql://user@host/db). "
        "Default: BRANDFORGE_SERVING_DB, else sqlite:///serving.db.",
        show_default=False,
    ),
]


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"keys: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def cli_actor() -> str:
    """The audit actor for a command run by a person: `cli:<login name>`."""
    try:
        login = getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        login = "unknown"
    return f"cli:{login}"


@contextmanager
def _session(db: str | None) -> Iterator[Session]:
    """A session on the serving database (tables created when missing), committed on success.

    Turns what a user can fix into one red line: a bad URL or a refused value (exit 2), an
    unreachable database (exit 1).
    """
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from serving.db.models import database_url, engine_for, init_db, session_factory

    try:
        engine = engine_for(db)
    except (ArgumentError, ImportError) as err:
        shown_url = re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", database_url(db))
        raise _fail(f"cannot use database URL {shown_url!r}: {err}", 2) from None
    shown = engine.url.render_as_string(hide_password=True)
    try:
        init_db(engine)
        with session_factory(engine).begin() as session:
            yield session
    except ValueError as err:
        raise _fail(str(err), 2) from None
    except SQLAlchemyError as err:
        reason = " ".join(str(getattr(err, "orig", None) or err).split())
        raise _fail(f"database {shown}: {reason}", 1) from None
    finally:
        engine.dispose()


def _split(values: Sequence[str]) -> list[str]:
    """`--role a --role b,c` → `["a", "b", "c"]`."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _brands_text(brands: Sequence[str]) -> str:
    return "all (*)" if list(brands) == ["*"] else ", ".join(brands)


@keys_app.command("create")
def create_command(
    name: Annotated[
        str,
        typer.Option(
            "--name", "-n", metavar="NAME", help="Who or what uses the key (unique), e.g. ci-acme."
        ),
    ],
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            "-r",
            metavar="ROLE",
            help=f"A role ({ROLES_HELP}; admin implies all). Repeat, or separate with commas.",
            show_default=False,
        ),
    ] = None,
    brand: Annotated[
        list[str] | None,
        typer.Option(
            "--brand",
            "-b",
            metavar="BRAND",
            help="A brand the key may touch. Repeat for several. Default: every brand (*).",
            show_default=False,
        ),
    ] = None,
    db: DbOpt = None,
) -> None:
    """Create an API key and print it ONCE: only its hash is stored.

    The key alone goes to stdout, so KEY=$(brandforge keys create ...) captures just the key.
    Its roles, its brands and the warning go to stderr.
    """
    from serving.auth import ALL_BRANDS, audit, create_key

    brands = _split(brand or []) or [ALL_BRANDS]
    with _session(db) as session:
        key, row = create_key(session, name=name, roles=_split(role or []), brands=brands)
        audit(
            session,
            cli_actor(),
            "api_key.create",
            name=row.name,
            key_prefix=row.key_prefix,
            roles=row.role_list,
            brands=row.brand_list,
        )
    typer.echo(f"Created API key {row.name!r} ({row.key_prefix}...)", err=True)
    typer.echo(f"  roles:  {', '.join(row.role_list)}", err=True)
    typer.echo(f"  brands: {_brands_text(row.brand_list)}", err=True)
    typer.echo(key)
    typer.secho(
        "Store this key now: it cannot be shown again (only its hash is kept). "
        f"If it is lost, revoke it (brandforge keys revoke {row.name}) and create another.",
        fg=typer.colors.YELLOW,
        err=True,
    )


@keys_app.command("list")
def list_command(db: DbOpt = None) -> None:
    """List every API key, revoked ones included (times in UTC).

    The keys themselves are never shown, only their first characters (prefix).
    """
    from serving.auth import list_keys

    with _session(db) as session:
        rows = list_keys(session)
    if not rows:
        typer.echo("no API keys yet: create one with `brandforge keys create`")
        return
    header = ("NAME", "PREFIX", "ROLES", "BRANDS", "CREATED", "LAST USED", "REVOKED")
    table = [header] + [
        (
            r.name,
            r.key_prefix,
            ",".join(r.role_list),
            ",".join(r.brand_list),
            _when(r.created_at),
            _when(r.last_used_at),
            _when(r.revoked_at),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@keys_app.command("revoke")
def revoke_command(
    name: Annotated[str, typer.Argument(help="The name of the key to revoke.")],
    db: DbOpt = None,
) -> None:
    """Revoke an API key: it stops working at once, for good.

    The key's row stays, for the audit log. Revoking a key already revoked changes nothing.
    """
    from serving.auth import audit, get_key, revoke_key

    with _session(db) as session:
        existing = get_key(session, name)
        already = existing is not None and existing.revoked_at is not None
        row = revoke_key(session, name)
        if not already:
            audit(
                session,
                cli_actor(),
                "api_key.revoke",
                name=row.name,
                key_prefix=row.key_prefix,
            )
    if already:
        typer.echo(f"API key {row.name!r} was already revoked at {_when(row.revoked_at)} UTC")
    else:
        typer.echo(f"Revoked API key {row.name!r} ({row.key_prefix}...)")


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
        float, typer.Option("--batch-wait-ms", min=0, help="How long a batch waits to fill.")
    ] = 50.0,
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, help="Generator replicas (one base model each).")
    ] = 1,
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
) -> None:
    """Run the serving tier: a Ray Serve application with the HTTP API (docs at /docs).

    A local Ray starts by default; set RAY_ADDRESS to use an existing cluster. Models come from
    the MLflow registry named by MLFLOW_TRACKING_URI (each brand's `champion`); keys, assets and
    the audit log live in BRANDFORGE_SERVING_DB. Without any API key the server refuses to
    start unless --dev. Stops cleanly on Ctrl-C or SIGTERM.
    """
    from serving.app import ServeConfig
    from serving.runtime import run_forever, served_environment

    if not dev:
        from serving.auth import has_any_key
        from serving.db.models import engine_for, init_db, session_factory

        engine = engine_for(None)
        init_db(engine)
        with session_factory(engine)() as session:
            if not has_any_key(session):
                typer.secho(
                    "serve: no API key is configured: create one with `brandforge keys create "
                    "--name app --role generate`, or run with --dev (no authentication, local "
                    "use only)",
                    fg=typer.colors.RED,
                    err=True,
                )
                raise typer.Exit(2)
    from pathlib import Path

    from brandforge.params import ParamsError, RolloutParams, load_params

    rollout = RolloutParams()
    if Path(params).is_file():
        try:
            rollout = load_params(Path(params)).rollout
        except ParamsError as err:
            typer.secho(f"serve: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
    config = ServeConfig(
        rollout=rollout.model_dump(),
        dev=dev,
        max_adapters=max_adapters,
        max_batch_size=max_batch_size,
        batch_wait_s=batch_wait_ms / 1000,
        generator_replicas=replicas,
        campaign_workers=campaign_workers,
        campaign_claim=campaign_batch,
        env=served_environment(),
    )
    run_forever(config, host=host, port=port)


rollout_app = typer.Typer(
    help="Canary rollouts on a running server (`brandforge serve`), through its HTTP API.",
    no_args_is_help=True,
)

Url = Annotated[str, typer.Option("--url", envvar="BRANDFORGE_URL", help="The server.")]
Key = Annotated[
    str,
    typer.Option("--key", envvar="BRANDFORGE_API_KEY", help="An API key with the deploy role."),
]


def _call(
    method: str,
    url: str,
    key: str,
    body: dict[str, Any] | None = None,
    *,
    what: str = "rollout",
    show: bool = True,
) -> dict[str, Any]:
    """One API call; prints the JSON answer (`show`), or one red line and exit 1 on an error."""
    import json

    import requests

    try:
        r = requests.request(
            method, url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
    except requests.RequestException as err:
        typer.secho(f"{what}: cannot reach {url}: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        typer.secho(f"{what}: {r.status_code}: {detail}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    answer: dict[str, Any] = r.json()
    if show:
        typer.echo(json.dumps(answer, indent=2))
    return answer


@rollout_app.command("start")
def rollout_start(
    brand: Annotated[str, typer.Option("--brand", help="The brand.")],
    version: Annotated[str, typer.Option("--version", help="The version to roll out.")],
    url: Url = "http://127.0.0.1:8000",
    key: Key = "",
    steps: Annotated[
        str | None, typer.Option("--steps", help="Percent steps, e.g. 5,25,50,100.")
    ] = None,
    min_requests: Annotated[int | None, typer.Option("--min-requests", min=1)] = None,
    min_seconds: Annotated[float | None, typer.Option("--min-seconds", min=0)] = None,
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Run the canary on a copy of the traffic only.")
    ] = False,
) -> None:
    """Start a rollout: the canary alias moves to VERSION, traffic follows the steps."""
    body: dict[str, object] = {
        "brand": brand,
        "version": version,
        "mode": "shadow" if shadow else "live",
    }
    if steps:
        body["steps"] = [int(s) for s in steps.split(",")]
    if min_requests is not None:
        body["min_requests"] = min_requests
    if min_seconds is not None:
        body["min_seconds"] = min_seconds
    _call("POST", f"{url}/v1/rollouts", key, body)


@rollout_app.command("status")
def rollout_status(
    brand: Annotated[str, typer.Option("--brand", help="The brand.")],
    url: Url = "http://127.0.0.1:8000",
    key: Key = "",
) -> None:
    """State, step, weight and the measurements behind each decision."""
    _call("GET", f"{url}/v1/rollouts/{brand}", key)


@rollout_app.command("abort")
def rollout_abort(
    brand: Annotated[str, typer.Option("--brand", help="The brand.")],
    reason: Annotated[str, typer.Option("--reason", help="Recorded in the audit log.")],
    url: Url = "http://127.0.0.1:8000",
    key: Key = "",
) -> None:
    """Roll back at once: the canary alias goes, all traffic to the champion."""
    _call("POST", f"{url}/v1/rollouts/{brand}/abort", key, {"reason": reason})


# ---------------------------------------------------------------------------------------------
# brandforge campaign

campaign_app = typer.Typer(
    help="Campaigns (batch generation) on a running server (`brandforge serve`), through its "
    "HTTP API.",
    no_args_is_help=True,
)
GenerateKey = Annotated[
    str,
    typer.Option("--key", envvar="BRANDFORGE_API_KEY", help="An API key with the generate role."),
]


@campaign_app.command("submit")
def campaign_submit(
    spec_file: Annotated[
        Path,
        typer.Argument(
            help="The campaign as YAML or JSON: brand, template, variables, ratios, variants, "
            "formats, headline, cta, priority, deadline, ... (see README, Campaigns)."
        ),
    ],
    url: Url = "http://127.0.0.1:8000",
    key: GenerateKey = "",
    watch: Annotated[bool, typer.Option("--watch", help="Follow progress until done.")] = False,
) -> None:
    """Queue a campaign; prints its id (and, with --watch, a progress bar until it ends)."""
    import yaml
    from pydantic import ValidationError

    from brandforge.params import format_validation_errors
    from serving.campaigns.queue import CampaignSpec

    if not spec_file.is_file():
        typer.secho(f"campaign: {spec_file}: no such file", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        raw = yaml.safe_load(spec_file.read_text())
        spec = CampaignSpec.model_validate(raw)
    except yaml.YAMLError as err:
        typer.secho(f"campaign: {spec_file}: not YAML/JSON: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    except ValidationError as err:
        typer.secho(format_validation_errors(err, str(spec_file)), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    answer = _call(
        "POST",
        f"{url}/v1/campaigns",
        key,
        spec.model_dump(mode="json", exclude_none=True),
        what="campaign",
        show=not watch,
    )
    if watch:
        typer.echo(f"campaign {answer['campaign_id']}: {answer['total']} items")
        _watch(url, key, answer["campaign_id"])


def _watch(url: str, key: str, campaign_id: str, poll_s: float = 2.0) -> None:
    import time

    from tqdm import tqdm

    state = _call(
        "GET", f"{url}/v1/campaigns/{campaign_id}?items=false", key, what="campaign", show=False
    )
    with tqdm(total=state["total"], unit="item", desc=campaign_id[:8]) as bar:
        while True:
            counts = state["counts"]
            finished = counts["done"] + counts["review"] + counts["failed"]
            bar.update(finished - bar.n)
            bar.set_postfix(review=counts["review"], failed=counts["failed"], eta=state["eta_s"])
            if state["state"] not in ("queued", "running"):
                break
            time.sleep(poll_s)
            state = _call(
                "GET",
                f"{url}/v1/campaigns/{campaign_id}?items=false",
                key,
                what="campaign",
                show=False,
            )
    typer.echo(f"campaign {campaign_id}: {state['state']} {state['counts']}")


@campaign_app.command("status")
def campaign_status(
    campaign_id: Annotated[str, typer.Argument(help="The id `submit` printed.")],
    url: Url = "http://127.0.0.1:8000",
    key: GenerateKey = "",
    items: Annotated[bool, typer.Option("--items/--no-items", help="List every item.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Follow progress until done.")] = False,
) -> None:
    """Progress, counts, ETA (and the items with their assets)."""
    if watch:
        _watch(url, key, campaign_id)
        return
    flag = "true" if items else "false"
    _call("GET", f"{url}/v1/campaigns/{campaign_id}?items={flag}", key, what="campaign")


@campaign_app.command("cancel")
def campaign_cancel(
    campaign_id: Annotated[str, typer.Argument(help="The campaign to stop.")],
    url: Url = "http://127.0.0.1:8000",
    key: GenerateKey = "",
) -> None:
    """Cancel: pending items are dropped; delivered assets stay."""
    _call("DELETE", f"{url}/v1/campaigns/{campaign_id}", key, what="campaign")
