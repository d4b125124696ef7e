"""`brandforge credentials`: the certificate that signs the C2PA content credentials of
every delivered file (`serving.delivery.credentials`).

`dev-cert` writes a development chain for local use; `check` loads what the settings name
(BRANDFORGE_C2PA_CERT, BRANDFORGE_C2PA_KEY) and signs a test picture with it, as `brandforge
serve` does before it starts. Reading a file's credentials back is `brandforge provenance FILE`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from serving.cli.common import fail

credentials_app = typer.Typer(
    help="C2PA content credentials: the certificate that signs delivered files.",
    no_args_is_help=True,
)
GROUP = "credentials"
FILES = {"chain": "c2pa-chain.pem", "key": "c2pa-key.pem", "ca": "c2pa-dev-ca.pem"}


@credentials_app.command("dev-cert")
def dev_cert_command(
    out: Annotated[
        Path,
        typer.Option("--out", metavar="DIR", help="Folder to write the three PEM files into."),
    ],
    days: Annotated[
        int, typer.Option("--days", min=1, max=3650, help="Days the certificates are valid.")
    ] = 90,
    force: Annotated[
        bool, typer.Option("--force", help="Replace files of an earlier dev-cert in DIR.")
    ] = False,
) -> None:
    """Write a development CA and a C2PA signing certificate it issued, for local use.

    DIR gets c2pa-chain.pem (BRANDFORGE_C2PA_CERT), c2pa-key.pem (BRANDFORGE_C2PA_KEY, owner-
    only) and c2pa-dev-ca.pem (pass it to `brandforge provenance FILE --trust`). No C2PA reader
    trusts this CA: production signs with a certificate from a CA readers trust (README)."""
    from serving.delivery.dev_certificate import dev_certificate_chain

    paths = {name: out / file for name, file in FILES.items()}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise fail(GROUP, f"{', '.join(existing)} already exist: pass --force to replace", 2)
    chain = dev_certificate_chain(days=days)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in (("chain", chain.chain), ("ca", chain.ca), ("key", chain.key)):
            mode = 0o600 if name == "key" else 0o644
            descriptor = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.chmod(paths[name], mode)  # an existing file keeps its old mode through open()
    except OSError as err:
        raise fail(GROUP, f"cannot write into {out}: {err.strerror or err}", 1) from None
    typer.echo(f"export BRANDFORGE_C2PA_CERT={paths['chain'].resolve()}")
    typer.echo(f"export BRANDFORGE_C2PA_KEY={paths['key'].resolve()}")
    typer.secho(
        f"Development certificates, valid {days} days; readers trust them only with "
        f"`brandforge provenance FILE --trust {paths['ca']}`.",
        err=True,
    )


@credentials_app.command("check")
def check_command() -> None:
    """Load the certificate and key the settings name and sign a test picture with them."""
    from serving.delivery.credentials import CredentialsError, credentials_from_settings

    try:
        credentials = credentials_from_settings()
    except CredentialsError as err:
        raise fail(GROUP, str(err), 2) from None
    if credentials is None:
        raise fail(
            GROUP,
            "BRANDFORGE_C2PA_CERT and BRANDFORGE_C2PA_KEY are unset: delivered files are not "
            "signed (`brandforge credentials dev-cert --out DIR` makes a development pair)",
            1,
        )
    who = credentials.identity
    typer.echo(f"signs as:  {who.subject}")
    typer.echo(f"issued by: {who.issuer}")
    typer.echo(f"algorithm: {who.algorithm}, valid until {who.not_after:%Y-%m-%d}")
