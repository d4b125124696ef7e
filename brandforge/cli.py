"""The `brandforge` command line.

Stage packages plug their sub-commands in through the `brandforge.commands` entry-point group
(see pyproject.toml), so this core package never imports the stages above it. Commands are
loaded when they are looked up, not when this module is imported: `brandforge train` imports the
training CLI only, and `import brandforge.cli` imports no stage at all (DESIGN.md decision 1).
"""

from __future__ import annotations

import logging
import os
import sys
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

ENTRY_POINT_GROUP = "brandforge.commands"


@cache
def _plugins() -> dict[str, EntryPoint]:
    """The entry points by name; the first one wins where two installs declare the same name."""
    found: dict[str, EntryPoint] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        found.setdefault(ep.name, ep)
    return found


def _click_command(name: str, target: Any, joining: list[tuple[str, Any]]) -> Any:
    """The click command for an entry point's target: a Typer app becomes a group named `name`
    (with the commands other packages add to it), a function becomes a command."""
    wrapper = typer.Typer()
    if isinstance(target, typer.Typer):
        for sub_name, function in joining:
            target.command(sub_name)(function)
        wrapper.add_typer(target, name=name)
    else:
        if joining:
            raise RuntimeError(
                f"entry points {', '.join(f'{name}.{n}' for n, _ in joining)}: "
                f"{name!r} is a command, not a group they can join"
            )
        wrapper.command(name)(target)
    return typer.main.get_group(wrapper).commands[name]


class LazyPluginGroup(TyperGroup):
    """The top-level group: sub-commands come from the entry points, each loaded on first use.

    An entry point `name` adds a command or a group; `group.name` adds a command to a group
    another package registered (e.g. serving's `data.feedback` joins training's `data` group
    without training importing serving).
    """

    def list_commands(self, ctx: Any) -> list[str]:
        own = list(self.commands)
        return own + sorted(n for n in _plugins() if "." not in n and n not in self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if "." in cmd_name or cmd_name not in _plugins():
            return None
        return _load_plugin(cmd_name)


@cache
def _load_plugin(cmd_name: str) -> Any:
    """Import one entry point (and those joining it) and build its click command, once per
    process: joining adds commands to the plugin's own Typer app, which must happen only once."""
    plugins = _plugins()
    joining = [
        (name.split(".", 1)[1], ep.load())
        for name, ep in plugins.items()
        if name.startswith(cmd_name + ".")
    ]
    return _click_command(cmd_name, plugins[cmd_name].load(), joining)


app = typer.Typer(
    cls=LazyPluginGroup,
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
