"""`brandforge campaign`: submit, follow and cancel campaigns on a running server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from serving.cli.common import DEFAULT_URL, Url, api_call, fail

campaign_app = typer.Typer(
    help="Campaigns (batch generation) on a running server (`brandforge serve`), through its "
    "HTTP API.",
    no_args_is_help=True,
)

GROUP = "campaign"
GenerateKey = Annotated[
    str,
    typer.Option("--key", envvar="BRANDFORGE_API_KEY", help="An API key with the generate role."),
]
# Campaign states in which the queue still works on it (serving.campaigns.queue).
UNFINISHED = ("queued", "running")


@campaign_app.command("submit")
def campaign_submit(
    spec_file: Annotated[
        Path,
        typer.Argument(
            help="The campaign as YAML or JSON: brand, template, variables, ratios, variants, "
            "formats, headline, cta, priority, deadline, ... (see README, Campaigns)."
        ),
    ],
    url: Url = DEFAULT_URL,
    key: GenerateKey = "",
    watch: Annotated[bool, typer.Option("--watch", help="Follow progress until done.")] = False,
) -> None:
    """Queue a campaign; prints its id (and, with --watch, a progress bar until it ends)."""
    import yaml
    from pydantic import ValidationError

    from brandforge.params import format_validation_errors
    from serving.campaigns.spec import CampaignSpec

    if not spec_file.is_file():
        raise fail(GROUP, f"{spec_file}: no such file", 2)
    try:
        spec = CampaignSpec.model_validate(yaml.safe_load(spec_file.read_text()))
    except yaml.YAMLError as err:
        raise fail(GROUP, f"{spec_file}: not YAML/JSON: {err}", 2) from None
    except ValidationError as err:
        typer.secho(format_validation_errors(err, str(spec_file)), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    answer = api_call(
        "POST",
        f"{url}/v1/campaigns",
        key,
        spec.model_dump(mode="json", exclude_none=True),
        group=GROUP,
        show=not watch,
    )
    if watch:
        typer.echo(f"campaign {answer['campaign_id']}: {answer['total']} items")
        _watch(url, key, answer["campaign_id"])


def _watch(url: str, key: str, campaign_id: str, poll_s: float = 2.0) -> None:
    """A progress bar of the campaign's finished items, until it ends."""
    from tqdm import tqdm

    progress = f"{url}/v1/campaigns/{campaign_id}?items=false"
    state = api_call("GET", progress, key, group=GROUP, show=False)
    with tqdm(total=state["total"], unit="item", desc=campaign_id[:8]) as bar:
        while True:
            counts = state["counts"]
            finished = counts["done"] + counts["review"] + counts["failed"]
            bar.update(finished - bar.n)
            bar.set_postfix(review=counts["review"], failed=counts["failed"], eta=state["eta_s"])
            if state["state"] not in UNFINISHED:
                break
            time.sleep(poll_s)
            state = api_call("GET", progress, key, group=GROUP, show=False)
    typer.echo(f"campaign {campaign_id}: {state['state']} {state['counts']}")


@campaign_app.command("status")
def campaign_status(
    campaign_id: Annotated[str, typer.Argument(help="The id `submit` printed.")],
    url: Url = DEFAULT_URL,
    key: GenerateKey = "",
    items: Annotated[bool, typer.Option("--items/--no-items", help="List every item.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Follow progress until done.")] = False,
) -> None:
    """Progress, counts, ETA (and the items with their assets)."""
    if watch:
        _watch(url, key, campaign_id)
        return
    flag = "true" if items else "false"
    api_call("GET", f"{url}/v1/campaigns/{campaign_id}?items={flag}", key, group=GROUP)


@campaign_app.command("cancel")
def campaign_cancel(
    campaign_id: Annotated[str, typer.Argument(help="The campaign to stop.")],
    url: Url = DEFAULT_URL,
    key: GenerateKey = "",
) -> None:
    """Cancel: pending items are dropped; delivered assets stay."""
    api_call("DELETE", f"{url}/v1/campaigns/{campaign_id}", key, group=GROUP)
