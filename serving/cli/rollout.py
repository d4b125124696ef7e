"""`brandforge rollout`: start, follow and abort canary rollouts on a running server."""

from __future__ import annotations

from typing import Annotated

import typer

from serving.cli.common import DEFAULT_URL, Url, api_call, check_brand_option

rollout_app = typer.Typer(
    help="Canary rollouts on a running server (`brandforge serve`), through its HTTP API.",
    no_args_is_help=True,
)

GROUP = "rollout"
BrandOpt = Annotated[str, typer.Option("--brand", help="The brand.", callback=check_brand_option)]
Key = Annotated[
    str,
    typer.Option("--key", envvar="BRANDFORGE_API_KEY", help="An API key with the deploy role."),
]


@rollout_app.command("start")
def rollout_start(
    brand: BrandOpt,
    version: Annotated[str, typer.Option("--version", help="The version to roll out.")],
    url: Url = DEFAULT_URL,
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
        try:
            body["steps"] = [int(s) for s in steps.split(",")]
        except ValueError:
            raise typer.BadParameter(
                f"{steps!r}: whole percentages separated by commas, e.g. 5,25,50,100",
                param_hint="'--steps'",
            ) from None
    if min_requests is not None:
        body["min_requests"] = min_requests
    if min_seconds is not None:
        body["min_seconds"] = min_seconds
    api_call("POST", f"{url}/v1/rollouts", key, body, group=GROUP)


@rollout_app.command("status")
def rollout_status(brand: BrandOpt, url: Url = DEFAULT_URL, key: Key = "") -> None:
    """State, step, weight and the measurements behind each decision."""
    api_call("GET", f"{url}/v1/rollouts/{brand}", key, group=GROUP)


@rollout_app.command("abort")
def rollout_abort(
    brand: BrandOpt,
    reason: Annotated[str, typer.Option("--reason", help="Recorded in the audit log.")],
    url: Url = DEFAULT_URL,
    key: Key = "",
) -> None:
    """Roll back at once: the canary alias goes, all traffic to the champion."""
    api_call("POST", f"{url}/v1/rollouts/{brand}/abort", key, {"reason": reason}, group=GROUP)
