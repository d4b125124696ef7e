"""`brandforge register` (the stage) and `brandforge registry ...` (release managers, auditors).

Every command works against whatever tracking store `MLFLOW_TRACKING_URI` names: the embedded
SQLite store by default, a `brandforge mlflow-server` on PostgreSQL in production.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from brandforge.options import ParamsOpt, RootOpt
from brandforge.params import ParamsError, load_params

registry_app = typer.Typer(
    help="The model registry: list, show, lineage, promote, rollback, archive. Every alias move "
    "is checked and recorded on the version's tags (who, when, why).",
    no_args_is_help=True,
)

Reason = Annotated[str, typer.Option("--reason", "-r", help="Why: recorded on the version's tags.")]


def _fail(err: Exception, code: int = 1) -> typer.Exit:
    typer.secho(f"registry: {err}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """A refused action or an unreachable store ends in one clear line, not a traceback."""
    from mlflow.exceptions import MlflowException

    from brandforge.settings import get_settings
    from registry.core import RegistryError

    try:
        yield
    except RegistryError as err:
        raise _fail(err) from None
    except MlflowException as err:
        uri = get_settings().resolved_tracking_uri()
        message = str(err).splitlines()[0][:300]
        raise _fail(RuntimeError(f"tracking store {uri}: {message}")) from None


def _client() -> Any:
    from registry.core import client

    return client()


def register_command(
    params: ParamsOpt = Path("params.yaml"),
    root: RootOpt = Path("."),
) -> None:
    """The `register` stage: the adapter just trained becomes a version of brandforge-<brand>.

    Tagged with its lineage (dataset hash, git commit, base model, params hash) and its A/B
    evaluation (gate decision, reasons, deltas). The `challenger` alias moves to it only if its
    gates passed; a rejected adapter is still registered, tagged `rejected`. The base model is
    stored in MLflow too (once per content identity) unless it is a Hugging Face model.
    """
    from registry.core import RegistryError
    from registry.stage import REGISTER_METRICS, register

    try:
        result = register(load_params(params), root=root)
    except (ParamsError, RegistryError) as err:
        raise _fail(err) from None
    alias = result["alias"] or "no alias (rejected by its gates)"
    typer.echo(
        f"registered {result['registered_model']} v{result['version']}: gate {result['gate']}, "
        f"{alias}\n  {result['model_uri']}; details: {REGISTER_METRICS}, "
        f"`brandforge registry show {result['registered_model']} {result['version']}`"
    )


@registry_app.command("list")
def list_command(
    name: Annotated[str | None, typer.Argument(help="One registered model (default: all).")] = None,
) -> None:
    """Models, versions, aliases and gate results, newest first."""
    from registry.core import model_names, versions

    c = _client()
    with _errors():
        names = [name] if name else model_names(c)
        rows = [v for n in names for v in versions(c, n)]
    if not rows:
        typer.echo("no registered models yet (`dvc repro` registers the trained adapter)")
        return
    header = (
        "model",
        "version",
        "created (UTC)",
        "aliases",
        "status",
        "gate",
        "compliance Δ [95% CI]",
    )
    table = [
        (
            v.name,
            v.version,
            v.created.strftime("%Y-%m-%d %H:%M"),
            ",".join(v.aliases) or "-",
            v.status,
            v.gate,
            v.tags.get("brandforge.eval.compliance_score_delta", "-"),
        )
        for v in rows
    ]
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for r in [header, *table]:
        typer.echo(
            "  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        )


@registry_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. brandforge-acme.")],
    version: Annotated[str, typer.Argument(help="Version number.")],
) -> None:
    """Everything about one version: aliases, status, lineage and evaluation tags, history."""
    from registry.core import HISTORY_PREFIX, get_version, versions_aliases

    c = _client()
    with _errors():
        v = get_version(c, name, version)
        aliases = versions_aliases(c, name, v.version)
    typer.echo(f"{v.name} v{v.version}")
    typer.echo(f"  aliases:  {', '.join(aliases) or '-'}")
    typer.echo(f"  status:   {v.status}")
    typer.echo(f"  created:  {v.created.isoformat(timespec='seconds')}")
    typer.echo(f"  model:    {v.source}")
    typer.echo(f"  run:      {v.run_id}")
    typer.echo("  tags:")
    for key, value in sorted(v.tags.items()):
        if not key.startswith(HISTORY_PREFIX):
            typer.echo(f"    {key}: {value}")
    typer.echo("  history:")
    for when, event in v.history():
        typer.echo(f"    {when}  {event}")


@registry_app.command("lineage")
def lineage_command(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. brandforge-acme.")],
    version: Annotated[str, typer.Argument(help="Version number.")],
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check that data/prepared under --root is this version's dataset (exit 1 if not).",
        ),
    ] = False,
    root: Annotated[Path, typer.Option("--root", help="Project root for --verify.")] = Path("."),
) -> None:
    """Version → training run → dataset hash → git commit → base model, and the exact
    `git checkout` + `dvc` commands that bring its dataset back."""
    from registry.lineage import format_lineage, lineage, verify_dataset

    with _errors():
        ln = lineage(_client(), name, version)
    typer.echo(format_lineage(ln))
    if verify:
        ok, message = verify_dataset(ln, root)
        typer.secho(message, fg=typer.colors.GREEN if ok else typer.colors.RED)
        if not ok:
            raise typer.Exit(1)


@registry_app.command("promote")
def promote_command(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. brandforge-acme.")],
    to: Annotated[str, typer.Option("--to", help="canary or champion.")],
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="Default: the challenger for canary; the canary, else the challenger, for "
            "champion.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Allow a version that failed its gates (needs --reason)."),
    ] = False,
    reason: Reason = "(no reason given)",
) -> None:
    """Move the canary or champion alias to a version, after checking it may serve.

    A version rejected by its gates needs --force and --reason; an archived one, or one whose
    model artifacts are missing, is refused. The old champion is remembered for `rollback`.
    """
    from registry.core import promote

    with _errors():
        v = promote(_client(), name, to, version=version, why=reason, force=force)
    typer.echo(f"{name}: {to} -> v{v.version}")


@registry_app.command("rollback")
def rollback_command(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. brandforge-acme.")],
    reason: Reason = "(no reason given)",
) -> None:
    """Put the previous champion back (the latest earlier champion that can still serve)."""
    from registry.core import rollback

    with _errors():
        old, new = rollback(_client(), name, why=reason)
    typer.echo(f"{name}: champion v{old.version} -> v{new.version} (rolled back)")


@registry_app.command("archive")
def archive_command(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. brandforge-acme.")],
    version: Annotated[str, typer.Argument(help="Version number.")],
    reason: Reason = "(no reason given)",
) -> None:
    """Retire a version: its aliases are removed and it can never be promoted again.

    The champion cannot be archived: promote another version or roll back first.
    """
    from registry.core import archive

    with _errors():
        archive(_client(), name, version, why=reason)
    typer.echo(f"{name} v{version}: archived")


__all__ = ["registry_app", "register_command"]
