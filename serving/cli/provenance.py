"""`brandforge provenance FILE`: is this file marked as AI-generated, and by which asset?

A thin shell over `serving.delivery.manifest.read_provenance`; the pixel and XML work is
imported when the command runs, so that `brandforge --help` stays fast.
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
    manifest, watermark = report["manifest"], report["watermark"]
    if not report["ai_generated"] and manifest is None:
        lines.append(
            "No AI-generation mark found: no provenance manifest in the metadata and no "
            f"watermark in the pixels ({watermark['reason'].removeprefix('no watermark: ')})."
        )
        return lines
    marks = [
        name
        for name, present in (("manifest", manifest is not None), ("watermark", watermark["found"]))
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
    return lines


def provenance_command(
    file: Annotated[Path, typer.Argument(help="Image or video to inspect.", show_default=False)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the findings as JSON, for machines.")
    ] = False,
) -> None:
    """Show whether FILE is marked as AI-generated: its provenance manifest and watermark."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        typer.secho(f"provenance: no such file: {file}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.secho(f"provenance: cannot read {file}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    from serving.delivery.manifest import read_provenance

    try:
        report = read_provenance(data)
    except ValueError as exc:
        typer.secho(f"provenance: cannot decode {file}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({"file": str(file), **report}, indent=2))
    else:
        typer.echo("\n".join(_describe(file, report)))
