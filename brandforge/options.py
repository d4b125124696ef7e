"""Command-line options every stage command shares (`--params`, `--root`).

A module of its own, not `brandforge.cli`: that one loads every stage's commands when imported,
and the stage packages import these options.
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
