"""Command-line options every stage command shares (`--params`, `--root`).

A module of its own, not `brandforge.cli`: the stage packages import these options, and the CLI
loads the stage packages (on demand), never the other way round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ParamsOpt = Annotated[
    Path, typer.Option("--params", "-p", help="The params file (every hyperparameter).")
]
RootOpt = Annotated[
    Path, typer.Option("--root", help="Project root: data, models and metrics are relative to it.")
]
