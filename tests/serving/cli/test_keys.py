"""`brandforge keys create|list|revoke` (serving.cli.keys), on SQLite and PostgreSQL, and what
every database command shares (serving.cli.common): the schema check, errors, brand options."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine, select, text
from typer.testing import CliRunner

from serving import auth
from serving.db.engine import engine_for, session_factory
from serving.db.migrate import head, upgrade
from serving.db.models import AuditLog

SERVING_COMMANDS = {
    "keys": "serving.cli.keys:keys_app",
    "serve": "serving.cli.serve:serve_command",
    "rollout": "serving.cli.rollout:rollout_app",
    "campaign": "serving.cli.campaign:campaign_app",
    "assets": "serving.cli.assets:assets_app",
    "db": "serving.cli.db:db_app",
    "provenance": "serving.cli.provenance:provenance_command",
    "credentials": "serving.cli.credentials:credentials_app",
    "privacy": "serving.cli.privacy:privacy_app",
    "data.feedback": "serving.cli.feedback:feedback_command",
}


def test_entry_points_are_installed() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="brandforge.commands")}
    assert {name: names.get(name) for name in SERVING_COMMANDS} == SERVING_COMMANDS, (
        "the serving sub-commands in the installed package metadata differ from pyproject.toml: "
        "run `.venv/bin/pip install -e . --no-deps` to refresh them"
    )


def test_roles_help_matches_auth() -> None:
    from serving.cli.keys import ROLES_HELP

    assert ROLES_HELP == ", ".join(auth.ROLES)


def test_cli_create_list_revoke(cli: typer.Typer, db_engine: Engine, db_url: str) -> None:
    runner = CliRunner()
    created = runner.invoke(
        cli,
        ["keys", "create", "--name", "ci-acme", "--role", "generate,review", "-b", "acme",
         "--db", db_url],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("bf_") and "\n" not in key  # stdout holds the key alone
    assert "cannot be shown again" in created.stderr
    assert "generate, review" in created.stderr and "brands: acme" in created.stderr

    everything = runner.invoke(cli, ["keys", "create", "-n", "root", "-r", "admin", "--db", db_url])
    assert everything.exit_code == 0, everything.output
    assert "brands: all (*)" in everything.stderr

    with session_factory(db_engine)() as s:
        principal = auth.authenticate(s, key)
        s.commit()
        assert principal is not None and principal.can("review", "acme")
        assert not principal.can("generate", "globex")

    listed = runner.invoke(cli, ["keys", "list", "--db", db_url])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "PREFIX", "ROLES", "BRANDS", "RATE/MIN", "IMAGES/DAY", "CREATED", "LAST", "USED",
        "REVOKED"
    ]  # fmt: skip
    assert lines[1].split()[:4] == ["ci-acme", key[:12], "generate,review", "acme"]
    assert lines[2].split()[:4] == ["root", everything.stdout.strip()[:12], "admin", "*"]
    assert lines[1].endswith("-") and key not in listed.output  # used, not revoked

    revoked = runner.invoke(cli, ["keys", "revoke", "ci-acme", "--db", db_url])
    assert revoked.exit_code == 0, revoked.output
    assert "Revoked API key 'ci-acme'" in revoked.stdout
    again = runner.invoke(cli, ["keys", "revoke", "ci-acme", "--db", db_url])
    assert again.exit_code == 0 and "already revoked" in again.stdout

    with session_factory(db_engine)() as s:
        assert auth.authenticate(s, key) is None
        audit = [
            (r.actor, r.action, r.detail["name"])
            for r in s.scalars(select(AuditLog).order_by(AuditLog.id))
        ]
        assert audit == [
            ("cli:alice", "api_key.create", "ci-acme"),
            ("cli:alice", "api_key.create", "root"),
            ("cli:alice", "api_key.revoke", "ci-acme"),  # once: the second revoke changed nothing
        ]
        assert key not in repr([r.detail for r in s.scalars(select(AuditLog))])
    listed = runner.invoke(cli, ["keys", "list", "--db", db_url])
    assert not listed.stdout.splitlines()[1].endswith(" -")  # the revoked column is filled


def test_cli_key_limits_round_trip(cli: typer.Typer, db_engine: Engine, db_url: str) -> None:
    runner = CliRunner()
    created = runner.invoke(
        cli,
        ["keys", "create", "-n", "ci", "-r", "generate", "--rate", "30", "--daily-images", "500",
         "--db", db_url],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "limits: 30 requests/minute, 500 images/day" in created.stderr
    with session_factory(db_engine)() as s:
        principal = auth.authenticate(s, created.stdout.strip())
        assert principal is not None
        assert (principal.rate_per_minute, principal.daily_images) == (30, 500)
    listed = runner.invoke(cli, ["keys", "list", "--db", db_url])
    assert listed.stdout.splitlines()[1].split()[4:6] == ["30", "500"]

    changed = runner.invoke(cli, ["keys", "limits", "ci", "--daily-images", "7", "--db", db_url])
    assert changed.exit_code == 0, changed.output
    assert "30 requests/minute, 7 images/day" in changed.stdout  # the rate stays
    reset = runner.invoke(cli, ["keys", "limits", "ci", "--default", "--db", db_url])
    assert "default requests/minute, default images/day" in reset.stdout
    with session_factory(db_engine)() as s:
        row = auth.get_key(s, "ci")
        assert row is not None and (row.rate_per_minute, row.daily_images) == (None, None)
        actions = [r.action for r in s.scalars(select(AuditLog).order_by(AuditLog.id))]
        assert actions == ["api_key.create", "api_key.limits", "api_key.limits"]

    for bad in (["--rate", "0"], ["--daily-images", "1000000001"], ["--rate", "x"], []):
        refused = runner.invoke(cli, ["keys", "limits", "ci", *bad, "--db", db_url])
        assert refused.exit_code == 2, (bad, refused.output)
    assert "--rate" in runner.invoke(cli, ["keys", "limits", "ci", "--rate", "0"]).stderr
    unknown = runner.invoke(cli, ["keys", "limits", "nope", "--rate", "3", "--db", db_url])
    assert unknown.exit_code == 2 and "no API key named 'nope'" in unknown.stderr
    with pytest.raises(ValueError, match="rate_per_minute 0: give 1 to 1,000,000"):
        auth.check_limits(rate_per_minute=0, daily_images=None)


def test_cli_bad_input_exits_2(cli: typer.Typer, db_url: str) -> None:
    runner = CliRunner()
    bad_role = runner.invoke(cli, ["keys", "create", "-n", "x", "-r", "boss", "--db", db_url])
    assert bad_role.exit_code == 2
    assert "valid roles: generate, review, deploy, admin" in bad_role.stderr
    assert "'boss'" in bad_role.stderr and bad_role.stdout == ""

    no_role = runner.invoke(cli, ["keys", "create", "-n", "x", "--db", db_url])
    assert no_role.exit_code == 2 and "valid roles" in no_role.stderr

    assert (
        runner.invoke(cli, ["keys", "create", "-n", "x", "-r", "admin", "--db", db_url]).exit_code
        == 0
    )
    dup = runner.invoke(cli, ["keys", "create", "-n", "x", "-r", "admin", "--db", db_url])
    assert dup.exit_code == 2 and "already exists" in dup.stderr and dup.stdout == ""

    unknown = runner.invoke(cli, ["keys", "revoke", "nope", "--db", db_url])
    assert unknown.exit_code == 2 and "no API key named 'nope'" in unknown.stderr

    bad_url = runner.invoke(cli, ["keys", "list", "--db", "nonsense://u:hunter2@h/x"])
    assert bad_url.exit_code == 2 and "hunter2" not in bad_url.stderr


def test_cli_unreachable_database_exits_1(cli: typer.Typer) -> None:
    result = CliRunner().invoke(
        cli, ["keys", "list", "--db", "postgresql://u:hunter2@127.0.0.1:9/nowhere"]
    )
    assert result.exit_code == 1, result.output
    assert "127.0.0.1" in result.stderr and "hunter2" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_keys_create_on_a_fresh_machine_makes_the_database(cli: typer.Typer, tmp_path: Path):
    db = tmp_path / "new" / "serving.db"
    url = f"sqlite:///{db}"
    created = CliRunner().invoke(
        cli, ["keys", "create", "-n", "app", "-r", "generate", "--db", url]
    )
    assert created.exit_code == 0, created.output
    assert created.stdout.strip().startswith("bf_") and "\n" not in created.stdout.strip()
    assert (db.stat().st_mode & 0o777) == 0o600
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()
    finally:
        engine.dispose()


def test_keys_on_a_database_behind_asks_for_db_upgrade(cli: typer.Typer, tmp_path: Path):
    """A database with tables but not at this release's revision is not upgraded behind the
    operator's back by a side command: it says what to run, and changes nothing."""
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    upgrade(url)
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))  # as a release before Alembic left it
    engine.dispose()
    result = CliRunner().invoke(cli, ["keys", "create", "-n", "x", "-r", "admin", "--db", url])
    assert result.exit_code == 1, result.output
    assert "run `brandforge db upgrade`" in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


def test_keys_create_brand_option_is_checked(cli: typer.Typer, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    runner = CliRunner()
    for brand in ("Acme", "acme.eu", "bases", "../etc"):
        result = runner.invoke(
            cli, ["keys", "create", "-n", "x", "-r", "generate", "-b", brand, "--db", url]
        )
        assert result.exit_code == 2, (brand, result.output)
        assert "Invalid value for '--brand'" in result.output, result.output
        assert result.stdout == ""
    assert not (tmp_path / "serving.db").exists()  # refused before the database is opened
    ok = runner.invoke(
        cli, ["keys", "create", "-n", "x", "-r", "generate", "-b", "acme,globex-eu", "--db", url]
    )
    assert ok.exit_code == 0, ok.output
    assert "brands: acme, globex-eu" in ok.stderr
