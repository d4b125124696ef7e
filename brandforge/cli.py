"""The `brandforge` command line.

Stage packages plug their sub-commands in through the `brandforge.commands` entry-point group
(see pyproject.toml), so this core package never imports the stages above it.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import entry_points
from typing import Annotated

import typer

app = typer.Typer(
    help="BrandForge: brand-safe generative marketing visuals. "
    "Run `dvc repro` for the whole training pipeline, or one stage with the commands below.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    # Offline is the normal case: never reach for a model hub, and keep library chatter out of
    # the stage output (set these yourself to override).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not sys.stderr.isatty():
        # In logs (CI, `dvc repro > file`) a bar redrawn 10 times a second buries everything.
        os.environ.setdefault("TQDM_MININTERVAL", "15")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Libraries we drive are chatty at INFO; keep the stage's own progress readable.
    for noisy in ("urllib3", "filelock", "alembic", "httpx", "numexpr", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _register_plugins() -> None:
    """Sub-commands from the entry points: `name` adds a command or a group; `group.name` adds
    a command to a group another package registered (e.g. serving's `data.feedback` joins
    training's `data` group without training importing serving)."""
    groups: dict[str, typer.Typer] = {}
    nested = []
    for ep in sorted(entry_points(group="brandforge.commands"), key=lambda e: e.name):
        if "." in ep.name:
            nested.append(ep)
            continue
        target = ep.load()
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=ep.name)
            groups[ep.name] = target
        else:
            app.command(ep.name)(target)
    for ep in nested:
        group, name = ep.name.split(".", 1)
        if group not in groups:
            raise RuntimeError(f"entry point {ep.name}: no command group {group!r} to join")
        groups[group].command(name)(ep.load())


_register_plugins()
