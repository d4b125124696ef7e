"""`brandforge keys`: create, list and revoke the serving tier's API keys, and set their
admission limits (requests per minute, images per UTC day; `serving.admission`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from serving.cli.common import (
    ALL_BRANDS,
    DbOpt,
    check_key_brands,
    cli_actor,
    open_session,
    print_table,
    split_values,
    when,
)

keys_app = typer.Typer(help="API keys of the serving tier.", no_args_is_help=True)

# The CLI imports serving.auth (and SQLAlchemy, ~0.3 s) only when a `keys` command runs, not on
# every `brandforge` start, so the role names for --help are spelled out here;
# tests/serving/cli/test_keys.py checks they match serving.auth.ROLES.
ROLES_HELP = "generate, review, deploy, admin"
GROUP = "keys"
# Bounds of a key's own limits (serving.auth.check_limits says the same).
RATE_MAX = 1_000_000
DAILY_MAX = 1_000_000_000
RateOpt = Annotated[
    int | None,
    typer.Option(
        "--rate",
        min=1,
        max=RATE_MAX,
        metavar="N",
        help="Generation requests per minute for this key. Default: BRANDFORGE_RATE_PER_MINUTE.",
        show_default=False,
    ),
]
DailyOpt = Annotated[
    int | None,
    typer.Option(
        "--daily-images",
        min=1,
        max=DAILY_MAX,
        metavar="N",
        help="Images per UTC day for this key. Default: BRANDFORGE_DAILY_IMAGES.",
        show_default=False,
    ),
]


def _brands_text(brands: Sequence[str]) -> str:
    return "all (*)" if list(brands) == [ALL_BRANDS] else ", ".join(brands)


def _limit(value: int | None) -> str:
    return "default" if value is None else str(value)


def _limits_text(row: Any) -> str:
    return f"{_limit(row.rate_per_minute)} requests/minute, {_limit(row.daily_images)} images/day"


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
            callback=check_key_brands,
        ),
    ] = None,
    rate: RateOpt = None,
    daily_images: DailyOpt = None,
    db: DbOpt = None,
) -> None:
    """Create an API key and print it ONCE: only its hash is stored.

    The key alone goes to stdout, so KEY=$(brandforge keys create ...) captures just the key.
    Its roles, its brands and the warning go to stderr. On a fresh machine this creates the
    serving database.
    """
    from serving.auth import audit, create_key

    brands = split_values(brand or []) or [ALL_BRANDS]
    with open_session(db, group=GROUP) as session:
        key, row = create_key(
            session,
            name=name,
            roles=split_values(role or []),
            brands=brands,
            rate_per_minute=rate,
            daily_images=daily_images,
        )
        audit(
            session,
            cli_actor(),
            "api_key.create",
            name=row.name,
            key_prefix=row.key_prefix,
            roles=row.role_list,
            brands=row.brand_list,
            rate_per_minute=row.rate_per_minute,
            daily_images=row.daily_images,
        )
    typer.echo(f"Created API key {row.name!r} ({row.key_prefix}...)", err=True)
    typer.echo(f"  roles:  {', '.join(row.role_list)}", err=True)
    typer.echo(f"  brands: {_brands_text(row.brand_list)}", err=True)
    typer.echo(f"  limits: {_limits_text(row)}", err=True)
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

    with open_session(db, group=GROUP) as session:
        rows = list_keys(session)
    if not rows:
        typer.echo("no API keys yet: create one with `brandforge keys create`")
        return
    print_table(
        (
            "NAME",
            "PREFIX",
            "ROLES",
            "BRANDS",
            "RATE/MIN",
            "IMAGES/DAY",
            "CREATED",
            "LAST USED",
            "REVOKED",
        ),  # fmt: skip
        [
            (
                r.name,
                r.key_prefix,
                ",".join(r.role_list),
                ",".join(r.brand_list),
                _limit(r.rate_per_minute),
                _limit(r.daily_images),
                when(r.created_at),
                when(r.last_used_at),
                when(r.revoked_at),
            )
            for r in rows
        ],
    )


@keys_app.command("revoke")
def revoke_command(
    name: Annotated[str, typer.Argument(help="The name of the key to revoke.")],
    db: DbOpt = None,
) -> None:
    """Revoke an API key: it stops working at once, for good.

    The key's row stays, for the audit log. Revoking a key already revoked changes nothing.
    """
    from serving.auth import audit, get_key, revoke_key

    with open_session(db, group=GROUP) as session:
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
        typer.echo(f"API key {row.name!r} was already revoked at {when(row.revoked_at)} UTC")
    else:
        typer.echo(f"Revoked API key {row.name!r} ({row.key_prefix}...)")


@keys_app.command("limits")
def limits_command(
    name: Annotated[str, typer.Argument(help="The name of the key.")],
    rate: RateOpt = None,
    daily_images: DailyOpt = None,
    default: Annotated[
        bool,
        typer.Option("--default", help="Back to the settings' defaults (both limits)."),
    ] = False,
    db: DbOpt = None,
) -> None:
    """Change a key's admission limits; they apply to its next request, on every replica."""
    from serving.auth import UNCHANGED, audit, set_limits

    if default and (rate is not None or daily_images is not None):
        raise typer.BadParameter("--default resets both limits: give it alone")
    if not default and rate is None and daily_images is None:
        raise typer.BadParameter("give --rate, --daily-images or --default")
    with open_session(db, group=GROUP) as session:
        row = set_limits(
            session,
            name,
            rate_per_minute=None if default else (UNCHANGED if rate is None else rate),
            daily_images=None if default else (UNCHANGED if daily_images is None else daily_images),
        )
        audit(
            session,
            cli_actor(),
            "api_key.limits",
            name=row.name,
            rate_per_minute=row.rate_per_minute,
            daily_images=row.daily_images,
        )
    typer.echo(f"API key {row.name!r}: {_limits_text(row)}")
