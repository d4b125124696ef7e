"""The `brandforge` command line: every stage's command is reachable, none is loaded before use."""

import subprocess
import sys
from importlib.metadata import entry_points

from typer.testing import CliRunner

from brandforge.cli import app

MODEL_LIBRARIES = ("torch", "mlflow", "ray", "diffusers")
STAGES = ("training", "evaluation", "registry", "serving")


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_importing_the_cli_loads_no_stage():
    loaded = run_python(
        "import sys, brandforge, brandforge.cli\n"
        "top = {m.split('.')[0] for m in sys.modules}\n"
        f"print(sorted(top & {set(MODEL_LIBRARIES + STAGES + ('transformers', 'sqlalchemy'))!r}))"
    )
    assert loaded == "[]"


def test_help_lists_every_command_without_loading_a_model_library():
    loaded = run_python(
        "import sys\n"
        "from brandforge.cli import app\n"
        "try:\n"
        "    app(['--help'], prog_name='brandforge')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in {MODEL_LIBRARIES!r}))"
    )
    help_text, _, modules = loaded.rpartition("LOADED")
    assert modules.strip() == "[]"
    names = {ep.name for ep in entry_points(group="brandforge.commands") if "." not in ep.name}
    assert {"data", "train", "evaluate", "register", "serve", "keys"} <= names
    for name in names:
        assert f" {name} " in help_text, name
    # each command shows its own help line, not just its name
    assert "Fine-tune a LoRA adapter" in help_text


def test_a_group_and_the_commands_other_packages_add_to_it():
    result = CliRunner().invoke(app, ["data", "--help"])
    assert result.exit_code == 0, result.output
    for command in ("demo", "prepare", "feedback"):
        assert command in result.output


def test_an_unknown_command_is_an_error_naming_it():
    result = CliRunner().invoke(app, ["no-such-command"])
    assert result.exit_code == 2
    assert "no-such-command" in result.output
