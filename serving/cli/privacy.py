"""`brandforge privacy erase`: erase a data subject's personal data (GDPR Art. 17)."""

from __future__ import annotations

from typing import Annotated

import typer

from serving.cli.assets import StoreOpt, _store
from serving.cli.common import DbOpt, check_brand_option, cli_actor, fail, open_session, print_table

privacy_app = typer.Typer(
    help="Personal data of a data subject: find and erase it (GDPR Art. 17).",
    no_args_is_help=True,
)
GROUP = "privacy"


@privacy_app.callback()
def privacy_group() -> None:
    """Personal data of a data subject: find and erase it (GDPR Art. 17)."""


SUBJECT_MAX = 254  # the longest e-mail address


@privacy_app.command("erase")
def erase_command(
    subject: Annotated[
        str,
        typer.Option(
            "--subject",
            metavar="TEXT",
            help="The data subject: an e-mail address, a phone number (erase each form the "
            "prompts used: +44 20 ... and 020 ...), a card, IBAN, IP, handle, or any other "
            "identifier such as a customer id (found where it is stored in clear, as whole words).",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be erased; change nothing.")
    ] = False,
    brand: Annotated[
        str | None,
        typer.Option(
            "--brand",
            "-b",
            metavar="BRAND",
            help="Only this brand's objects (default: every brand, and audit rows of none).",
            callback=check_brand_option,
        ),
    ] = None,
    db: DbOpt = None,
    store: StoreOpt = None,
) -> None:
    """Delete every asset (file and row), campaign and campaign item that mentioned the subject,
    and scrub the audit rows that did; write one audit row with the counts and the subject's
    keyed hash (never the subject). Uses BRANDFORGE_PRIVACY_KEY (or the key file) the server
    used when it stored the objects."""
    from serving.errors import DomainError
    from serving.privacy.erasure import erase, plan_erasure

    if not subject.strip() or len(subject) > SUBJECT_MAX:
        raise fail(GROUP, f"--subject: give 1 to {SUBJECT_MAX} characters", 2)
    asset_store = _store(store)
    brands = frozenset({brand}) if brand is not None else None
    with open_session(db, group=GROUP) as session:
        try:
            plan = plan_erasure(session, subject, brands=brands)
            result = erase(session, asset_store, plan, actor=cli_actor(), dry_run=dry_run)
        except DomainError as err:
            raise fail(GROUP, err.message, 1) from None
        except OSError as err:
            raise fail(GROUP, f"asset store {asset_store.url()}: {err}", 1) from None
    if plan.targets:
        print_table(
            ("KIND", "ID", "BRAND", "ACTION", "FILE"),
            [(t.kind, t.id, t.brand or "-", t.action, t.path or "-") for t in plan.targets],
        )
    counts = plan.counts()
    what = (
        f"{counts['assets']} asset(s), {counts['campaigns']} campaign(s), "
        f"{counts['campaign_items']} campaign item(s), scrub {counts['audit_records']} audit "
        f"record(s) of subject {plan.subject_hash[:16]}..."
    )
    if dry_run:
        typer.echo(f"would erase {what} (dry run: nothing changed)")
    else:
        typer.echo(
            f"erased {what}: {result.files_deleted} file(s) deleted, "
            f"{result.files_missing} already missing"
        )
