"""`brandforge db upgrade|current|revision` (serving.cli.db) and the upgrade `brandforge serve`
runs before Ray starts (serving.cli.serve), on SQLite and PostgreSQL."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from serving.db import migrate
from serving.db.engine import engine_for, session_factory
from serving.db.migrate import head
from tests.serving.db import legacy_c9915d7 as legacy


def test_db_upgrade_then_current(cli: typer.Typer, db_url: str) -> None:
    runner = CliRunner()
    before = runner.invoke(cli, ["db", "current", "--db", db_url])
    assert before.exit_code == 1, before.output
    assert "revision (none)" in before.stdout and "brandforge db upgrade" in before.stderr

    first = runner.invoke(cli, ["db", "upgrade", "--db", db_url])
    assert first.exit_code == 0, first.output
    assert f"upgraded from revision (none) to {head()}" in first.stdout
    again = runner.invoke(cli, ["db", "upgrade", "--db", db_url])
    assert again.exit_code == 0 and "nothing to do" in again.stdout

    now = runner.invoke(cli, ["db", "current", "--db", db_url])
    assert now.exit_code == 0, now.output
    assert f"revision {head()}; this release needs {head()}" in now.stdout


def test_db_upgrade_adopts_a_pre_alembic_database(cli: typer.Typer, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    engine = engine_for(url)
    legacy.init_db(engine)
    with session_factory(engine).begin() as s:
        s.execute(text("INSERT INTO audit_log (at, actor, action, detail) VALUES "
                       "('2026-11-30 12:00:00', 'system', 'x', '{}')"))  # fmt: skip
    result = CliRunner().invoke(cli, ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar() == 1
    assert {"ix_assets_expires_at"} <= {i["name"] for i in inspect(engine).get_indexes("assets")}
    engine.dispose()


def test_db_errors_are_one_line(cli: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["db", "upgrade", "--db", "nonsense://u:hunter2@h/x"])
    assert bad.exit_code == 2 and "hunter2" not in bad.output
    down = runner.invoke(cli, ["db", "upgrade", "--db", "postgresql://u:hunter2@127.0.0.1:9/x"])
    assert down.exit_code == 1 and "hunter2" not in down.output
    assert len(down.stderr.strip().splitlines()) == 1

    url = f"sqlite:///{tmp_path / 'newer.db'}"
    migrate.upgrade(url)
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    newer = runner.invoke(cli, ["db", "upgrade", "--db", url])
    assert newer.exit_code == 1 and "a newer release upgraded it" in newer.stderr
    current = runner.invoke(cli, ["db", "current", "--db", url])
    assert current.exit_code == 1 and "does not know" in current.stderr


def _body(source: str, function: str) -> list[str]:
    """The statements of `function` in a revision's source, comments left out."""
    after = source.split(f"def {function}() -> None:\n", 1)[1]
    lines = after.split("\n\n\ndef ", 1)[0].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_db_revision_writes_the_next_revision(tmp_path: Path) -> None:
    """`brandforge db revision` on copies of the revisions: with models and revisions in
    agreement the next one (0003) has nothing to do; with a column the revisions lack, it adds
    that column."""
    import shutil

    copy = tmp_path / "same" / "migrations"
    shutil.copytree(migrate.MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = migrate.new_revision("nothing yet", migrations=copy)
    assert path.parent == copy / "versions" and path.name.startswith("0003_nothing_yet")
    source = path.read_text()
    assert "revision: str = '0003'" in source and "down_revision: str | None = '0002'" in source
    assert _body(source, "upgrade") == ["pass"]
    compile(source, str(path), "exec")

    behind = tmp_path / "behind" / "migrations"
    shutil.copytree(migrate.MIGRATIONS, behind, ignore=shutil.ignore_patterns("__pycache__"))
    initial = behind / "versions" / "0001_initial.py"
    line = '        _column("review_reason", sa.Text(), nullable=True),\n'
    assert line in initial.read_text()
    initial.write_text(initial.read_text().replace(line, ""))
    added = migrate.new_revision("review reason", migrations=behind).read_text()
    upgrade_ops = " ".join(_body(added, "upgrade"))
    assert "add_column" in upgrade_ops and "review_reason" in upgrade_ops
    assert "batch_alter_table('assets'" in upgrade_ops  # SQLite-safe on both backends


# --------------------------------------------------------------------------------------------
# `brandforge serve`: the schema is upgraded here, once, before Ray starts
# --------------------------------------------------------------------------------------------


@pytest.fixture
def serving_db(monkeypatch: pytest.MonkeyPatch, db_url: str) -> str:
    from brandforge.settings import get_settings

    monkeypatch.setenv("BRANDFORGE_SERVING_DB", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`serving.runtime` replaced by a recorder (no Ray): what `run_forever` was called with
    and the database's revision at that moment."""
    calls: list[dict[str, Any]] = []

    def run_forever(config: Any, *, host: str, port: int, **_: Any) -> None:
        engine = engine_for(None)
        try:
            calls.append({"config": config, "port": port, "revision": migrate.current(engine)})
        finally:
            engine.dispose()

    runtime = types.ModuleType("serving.runtime")
    runtime.run_forever = run_forever  # type: ignore[attr-defined]
    runtime.served_environment = lambda: ()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "serving.runtime", runtime)
    return calls


def test_serve_upgrades_before_starting(cli, serving_db, started, tmp_path) -> None:
    runner = CliRunner()
    params = ["--params", str(tmp_path / "none.yaml")]
    refused = runner.invoke(cli, ["serve", *params])
    assert refused.exit_code == 2 and "no API key is configured" in refused.stderr
    assert started == []

    created = runner.invoke(cli, ["keys", "create", "-n", "app", "-r", "generate"])
    assert created.exit_code == 0, created.output
    served = runner.invoke(cli, ["serve", "--port", "8123", *params])
    assert served.exit_code == 0, served.output
    assert [(c["port"], c["revision"]) for c in started] == [(8123, head())]


def test_serve_dev_creates_the_database(cli, serving_db, started, tmp_path) -> None:
    served = CliRunner().invoke(cli, ["serve", "--dev", "--params", str(tmp_path / "x.yaml")])
    assert served.exit_code == 0, served.output
    assert started[0]["revision"] == head() and started[0]["config"].dev


def test_serve_options_reach_the_config_and_the_deployments(cli, serving_db, started, tmp_path):
    args = ["serve", "--dev", "--params", str(tmp_path / "x.yaml"), "--ingress-replicas", "2"]
    args += ["--generator-threads", "3", "--batch-wait-ms", "200", "--max-batch-size", "8"]
    served = CliRunner().invoke(cli, args)
    assert served.exit_code == 0, served.output
    config = started[0]["config"]
    assert (config.ingress_replicas, config.generator_threads) == (2, 3)
    assert (config.batch_wait_s, config.max_batch_size) == (0.2, 8)

    from serving.app import generator_deployment, ingress_deployment

    assert ingress_deployment(config).num_replicas == 2
    assert generator_deployment(config).num_replicas == config.generator_replicas == 1
    refused = CliRunner().invoke(cli, [*args[:4], "--ingress-replicas", "0"])
    assert refused.exit_code == 2 and "--ingress-replicas" in refused.output
