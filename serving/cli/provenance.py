"""`brandforge provenance FILE`: is this file marked as AI-generated, and by which asset?

A thin shell over `serving.delivery.manifest.read_provenance` (XMP manifest, watermark) and
`serving.delivery.credentials.read_credentials` (the signed C2PA manifest); the pixel, XML and
C2PA work is imported when the command runs, so that `brandforge --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _describe(file: Path, report: dict[str, Any]) -> list[str]:
    """The human-readable lines of `brandforge provenance`."""
    size = f", {report['width']}x{report['height']}" if report["width"] else ""
    lines = [f"{file}: {report['format'].upper()}{size}"]
    manifest, watermark, c2pa = report["manifest"], report["watermark"], report["c2pa"]
    if not report["ai_generated"] and manifest is None:
        lines.append(
            "No AI-generation mark found: no provenance manifest in the metadata and no "
            f"watermark in the pixels ({watermark['reason'].removeprefix('no watermark: ')})."
        )
        return lines + _c2pa_lines(c2pa, manifest)
    marks = [
        name
        for name, present in (
            ("manifest", manifest is not None),
            ("watermark", watermark["found"]),
            ("C2PA", c2pa["ai_generated"]),
        )
        if present
    ]
    verdict = "yes" if report["ai_generated"] else "not stated"
    lines.append(f"AI-generated: {verdict} (marked by: {' and '.join(marks)})")
    if manifest is None:
        lines.append("Manifest: none (metadata stripped?)")
    else:
        lines.append("Manifest (XMP):")
        width = max(len(key) for key in manifest)
        lines += [f"  {key:<{width}}  {value}" for key, value in manifest.items()]
    if watermark["found"]:
        match = {
            True: ", matches the manifest's asset id",
            False: ", does NOT match the manifest's asset id",
        }.get(watermark.get("matches_manifest"), "")
        lines.append(
            f"Watermark: found, payload {watermark['payload']}, {watermark['bit_agreement']:.0%} "
            f"of votes agree, {watermark['signal']:.0f} standard deviations above chance{match}"
        )
    else:
        lines.append(f"Watermark: not found ({watermark['reason']})")
    return lines + _c2pa_lines(c2pa, manifest)


def _c2pa_lines(c2pa: dict[str, Any], manifest: dict[str, Any] | None) -> list[str]:
    """The C2PA validation result (`serving.delivery.credentials.credentials_report`)."""
    if c2pa["status"] == "none":
        return ["C2PA: none (no content credentials in the file)"]
    if c2pa["status"] == "invalid":
        return [f"C2PA: INVALID: {c2pa['reason']}"]
    signer = c2pa["signer"] or {}
    trust = {
        None: "signer not checked against trusted CAs (pass --trust CA.pem)",
        True: "signer trusted",
        False: "signer NOT trusted by the given CAs",
    }[c2pa["trusted"]]
    lines = [
        f"C2PA: valid, signed by {signer.get('common_name')} ({signer.get('issuer')}); {trust}"
    ]
    lines += [f"  action {a['action']} ({a['digital_source_type']})" for a in c2pa["actions"]]
    lineage = c2pa["lineage"]
    if lineage:
        lines.append("  lineage: " + ", ".join(f"{k} {v}" for k, v in lineage.items()))
        if manifest is not None and manifest.get("asset_id") != lineage.get("asset_id"):
            lines.append("  the C2PA asset id does NOT match the XMP manifest's")
    return lines


def _trust_anchors(path: Path) -> str:
    """The PEM CA certificates of --trust, checked to be certificates."""
    from cryptography import x509

    try:
        text = path.read_text()
        x509.load_pem_x509_certificates(text.encode())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        message = f"provenance: --trust {path} is not a readable PEM certificate file ({exc})"
        typer.secho(message, fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    return text


def provenance_command(
    file: Annotated[Path, typer.Argument(help="Image or video to inspect.", show_default=False)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the findings as JSON, for machines.")
    ] = False,
    trust: Annotated[
        Path | None,
        typer.Option(
            "--trust",
            metavar="PEM",
            help="CA certificates to trust as C2PA signers (e.g. `brandforge credentials "
            "dev-cert`'s c2pa-dev-ca.pem). Without it the signature is checked, its signer not.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show whether FILE is marked as AI-generated: its provenance manifest, watermark and
    C2PA content credentials (valid, invalid with the reason, or none)."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        typer.secho(f"provenance: no such file: {file}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.secho(f"provenance: cannot read {file}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    anchors = _trust_anchors(trust) if trust is not None else None
    from serving.delivery.credentials import read_credentials
    from serving.delivery.manifest import read_provenance

    try:
        report = read_provenance(data)
        report["c2pa"] = read_credentials(data, trust_anchors=anchors)
    except ValueError as exc:
        typer.secho(f"provenance: cannot decode {file}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    report["ai_generated"] = report["ai_generated"] or report["c2pa"]["ai_generated"]
    if as_json:
        typer.echo(json.dumps({"file": str(file), **report}, indent=2))
    else:
        typer.echo("\n".join(_describe(file, report)))
