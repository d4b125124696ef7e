"""The real `brandforge` command for the serving CLI tests."""

from __future__ import annotations

import pytest
import typer


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """`brandforge.cli.app`, the real `brandforge` command (its groups load from the installed
    entry points: `test_entry_points_are_installed` says when `pip install -e .` is due), with
    `getpass.getuser()` pinned to `alice` (the audit actor becomes `cli:alice`)."""
    import brandforge.cli

    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    return brandforge.cli.app
