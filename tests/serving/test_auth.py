"""API keys, roles, brands and the audit log (serving.auth, serving.db.models, `brandforge keys`).

Every database test runs twice: on an SQLite file and on a throwaway PostgreSQL database
(DESIGN.md, decision 2: tests exercise the production backend against a real server).

PostgreSQL must be running: by default at 127.0.0.1:5432 as user `postgres` without a password;
set BRANDFORGE_TEST_POSTGRES to another server's maintenance-database URI. An unreachable server
fails the tests rather than skipping them, so a CI without PostgreSQL cannot pass by testing
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from serving import auth
from serving.auth import AuthError, Forbidden, Principal
from serving.db.models import ApiKey, Asset, AuditLog, database_url, engine_for, init_db, session_factory


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A plain `postgresql://` URL (as a user would write it) of an empty throwaway database,
    dropped after the test (the registry tests' helper: fails, never skips, without PostgreSQL)."""
    from tests.registry.conftest import _throwaway_database

    with _throwaway_database(create=True) as db:
        yield db.uri


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The serving database URL, once for an SQLite file (in a folder that does not exist yet:
    `engine_for` creates it) and once for a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'serving.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = engine_for(db_url)
    init_db(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as s:
        yield s


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """`brandforge.cli.app`, the real `brandforge` command, with `getpass.getuser()` pinned to
    `alice` (the audit actor becomes `cli:alice`).

    When the installed package metadata predates the `keys` entry point (pyproject.toml
    declares it; `pip install -e .` refreshes it), `keys_app` is mounted here exactly as the
    entry-point loader would, for this test only, so the commands are still tested;
    `test_keys_entry_point_is_installed` reports the stale install.
    """
    import brandforge.cli
    from serving.cli.keys import keys_app

    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    app = brandforge.cli.app
    if not any(group.name == "keys" for group in app.registered_groups):
        monkeypatch.setattr(app, "registered_groups", list(app.registered_groups))
        app.add_typer(keys_app, name="keys")
    return app


def _create(
    session: Session, name: str = "ci", roles: tuple[str, ...] = ("generate",), brands=("acme",)
) -> str:
    key, _ = auth.create_key(session, name=name, roles=roles, brands=brands)
    session.commit()
    return key


# --------------------------------------------------------------------------------------------
# Keys, roles, brands
# --------------------------------------------------------------------------------------------


def test_create_then_authenticate(session: Session) -> None:
    key, row = auth.create_key(
        session, name="ci-acme", roles=["review", "generate", "generate"], brands=["acme"]
    )
    session.commit()
    assert key.startswith("bf_") and len(key) == 3 + 43
    assert row.key_prefix == key[:12]
    assert row.roles == "generate,review" and row.brands == "acme"  # canonical, deduplicated
    assert row.created_at.tzinfo is not None and row.last_used_at is None

    principal = auth.authenticate(session, key)
    session.commit()
    assert principal == Principal(
        name="ci-acme", roles=frozenset({"generate", "review"}), brands=frozenset({"acme"})
    )
    assert auth.require_principal(session, key) == principal

    stored = session.scalars(select(ApiKey).where(ApiKey.name == "ci-acme")).one()
    session.refresh(stored)
    assert stored.last_used_at is not None and stored.last_used_at.tzinfo == UTC
    assert abs((datetime.now(UTC) - stored.last_used_at).total_seconds()) < 60
    assert auth.has_any_key(session)


def test_roles_and_brands(session: Session) -> None:
    principal = auth.authenticate(session, _create(session, "ci", ("generate",), ("acme",)))
    assert principal is not None
    assert principal.can("generate", "acme")
    assert principal.can("generate")  # role only: for actions that touch no brand's object
    assert not principal.can("deploy", "acme")
    assert not principal.can("generate", "globex")  # one brand's key never touches another's
    assert not principal.all_brands
    with pytest.raises(Forbidden, match="brand 'globex'") as forbidden:
        principal.require("generate", "globex")
    assert forbidden.value.status_code == 403
    with pytest.raises(Forbidden, match="lacks role 'deploy'"):
        principal.require("deploy", "acme")
    principal.require("generate", "acme")
    with pytest.raises(ValueError, match="valid roles: generate, review, deploy, admin"):
        principal.can("deplyo")  # a typo in the server's code must not read as "no"


def test_admin_implies_every_role_on_its_brands_only(session: Session) -> None:
    admin = auth.authenticate(session, _create(session, "ops-acme", ("admin",), ("acme",)))
    assert admin is not None
    assert all(admin.can(role, "acme") for role in auth.ROLES)
    assert not admin.can("generate", "globex")


def test_star_means_every_brand(session: Session) -> None:
    key = _create(session, "reviewer", ("review",), ("*",))
    principal = auth.authenticate(session, key)
    assert principal is not None and principal.all_brands
    assert principal.can("review", "acme") and principal.can("review", "globex")
    assert not principal.can("deploy", "acme")


def test_several_brands(session: Session) -> None:
    principal = auth.authenticate(
        session, _create(session, "agency", ("generate",), ("globex", "acme"))
    )
    assert principal is not None and principal.brands == {"acme", "globex"}
    assert principal.can("generate", "acme") and principal.can("generate", "globex")
    assert not principal.can("generate", "initech")


def test_wrong_missing_and_revoked_keys_do_not_authenticate(session: Session) -> None:
    key = _create(session)
    for bad in (None, "", "bf_" + "x" * 43, key[:-1], key + "x", key.upper(), key[3:]):
        assert auth.authenticate(session, bad) is None, bad
    with pytest.raises(AuthError, match="missing API key") as missing:
        auth.require_principal(session, None)
    assert missing.value.status_code == 401
    with pytest.raises(AuthError, match="invalid or revoked"):
        auth.require_principal(session, key[:-1])

    first = auth.revoke_key(session, "ci")
    session.commit()
    revoked_at = first.revoked_at
    assert revoked_at is not None
    assert auth.authenticate(session, key) is None
    with pytest.raises(AuthError):
        auth.require_principal(session, key)
    assert auth.revoke_key(session, "ci").revoked_at == revoked_at  # idempotent
    assert not auth.has_any_key(session)  # a revoked key does not let the server start
    assert [k.name for k in auth.list_keys(session)] == ["ci"]  # the row stays
    with pytest.raises(ValueError, match="no API key named 'nope'"):
        auth.revoke_key(session, "nope")


def test_invalid_keys_are_refused(session: Session) -> None:
    def create(**kw: Any) -> None:
        args: dict[str, Any] = {"name": "k", "roles": ["generate"], "brands": ["acme"]} | kw
        auth.create_key(session, **args)

    with pytest.raises(ValueError, match=r"'boss'.*valid roles: generate, review, deploy, admin"):
        create(roles=["generate", "boss"])
    with pytest.raises(ValueError, match="at least one role; valid roles: generate"):
        create(roles=[])
    with pytest.raises(ValueError, match="name is empty"):
        create(name="  ")
    with pytest.raises(ValueError, match="reserved"):
        create(name="system")
    with pytest.raises(ValueError, match="reserved"):
        create(name="cli:alice")
    with pytest.raises(ValueError, match="at least one brand"):
        create(brands=[])
    with pytest.raises(ValueError, match="cannot be combined"):
        create(brands=["*", "acme"])
    with pytest.raises(ValueError, match="invalid brand name 'Acme Corp'"):
        create(brands=["Acme Corp"])
    assert auth.list_keys(session) == []
    assert not auth.has_any_key(session)

    _create(session, "k")
    with pytest.raises(ValueError, match="'k' already exists"):
        create(name=" k ")


def test_only_the_hash_is_stored(session: Session, engine: Engine, db_url: str) -> None:
    key = _create(session, "ci", ("admin",), ("*",))
    auth.audit(session, "ci", "asset.generate", brand="acme", prompt="a red banner")
    session.commit()
    session.close()
    secret = key[12:]  # all but the displayed prefix

    with engine.connect() as conn:
        rows = [
            str(r)
            for table in ("api_keys", "audit_log")
            for r in conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
        ]
    dump = "\n".join(rows)
    assert auth.hash_key(key) in dump and key[:12] in dump
    assert key not in dump and secret not in dump

    if db_url.startswith("sqlite"):  # and not in any byte on disk (database, WAL, journal)
        engine.dispose()
        folder = Path(engine.url.database or "").parent
        files = list(folder.iterdir())
        assert files
        for file in files:
            data = file.read_bytes()
            assert secret.encode() not in data, file
        assert any(auth.hash_key(key).encode() in f.read_bytes() for f in files)


def test_audit_rows(session: Session) -> None:
    row = auth.audit(
        session, "system", "rollout.promote", brand="acme", version=3, at=datetime.now(UTC)
    )
    session.commit()
    assert row.id is not None
    stored = session.scalars(select(AuditLog)).one()
    session.refresh(stored)
    assert (stored.actor, stored.action, stored.brand) == ("system", "rollout.promote", "acme")
    assert stored.detail["version"] == 3 and isinstance(stored.detail["at"], str)
    assert stored.at.tzinfo == UTC


# --------------------------------------------------------------------------------------------
# The database module
# --------------------------------------------------------------------------------------------


def test_schema(engine: Engine, db_url: str) -> None:
    init_db(engine)  # idempotent
    insp = inspect(engine)
    assert {"api_keys", "audit_log", "assets"} <= set(insp.get_table_names())
    cols = {c["name"] for c in insp.get_columns("api_keys")}
    assert cols == {
        "id", "name", "key_prefix", "key_hash", "roles", "brands",
        "created_at", "revoked_at", "last_used_at",
    }  # fmt: skip
    asset_indexes = {tuple(ix["column_names"]) for ix in insp.get_indexes("assets")}
    assert ("brand", "created_at") in asset_indexes and ("created_at",) in asset_indexes
    if db_url.startswith("sqlite"):
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_asset_round_trip(session: Session) -> None:
    session.add(
        Asset(
            request_id="req-1",
            brand="acme",
            model_name="brandforge-acme",
            model_version="3",
            variant="canary",
            prompt="acme banner",
            seed=2**40,
            width=512,
            height=512,
            steps=20,
            guidance=7.5,
            format="png",
            path="acme/2025/x.png",
            compliance={"score": 0.9, "violations": []},
        )
    )
    session.commit()
    asset = session.scalars(select(Asset)).one()
    session.refresh(asset)
    assert len(asset.id) >= 20 and asset.seed == 2**40 and asset.negative_prompt == ""
    assert asset.compliance == {"score": 0.9, "violations": []}
    assert asset.created_at.tzinfo == UTC
    with pytest.raises(StatementError, match="not its json.dumps"):
        asset.compliance = '{"score": 1}'  # type: ignore[assignment]
        session.flush()
    session.rollback()


def test_database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from brandforge.settings import get_settings

    assert database_url("postgresql://u@db/x") == "postgresql+psycopg2://u@db/x"
    assert database_url("postgres://u@db/x") == "postgresql+psycopg2://u@db/x"
    assert database_url("postgresql+psycopg2://u@db/x") == "postgresql+psycopg2://u@db/x"
    assert database_url("sqlite:///a.db") == "sqlite:///a.db"
    monkeypatch.setenv("BRANDFORGE_SERVING_DB", f"sqlite:///{tmp_path / 'deep' / 'er' / 's.db'}")
    get_settings.cache_clear()
    try:
        eng = engine_for()
        init_db(eng)
        eng.dispose()
    finally:
        get_settings.cache_clear()
    assert (tmp_path / "deep" / "er" / "s.db").is_file()
    mem = engine_for("sqlite://")  # in memory: one shared connection, so tables persist
    init_db(mem)
    with session_factory(mem)() as s:
        _create(s)
    with session_factory(mem)() as s:
        assert auth.has_any_key(s)


# --------------------------------------------------------------------------------------------
# `brandforge keys create|list|revoke`
# --------------------------------------------------------------------------------------------


def test_keys_entry_point_is_installed() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="brandforge.commands")}
    assert names.get("keys") == "serving.cli.keys:keys_app", (
        "the `keys` sub-command is not in the installed package metadata: "
        "run `.venv/bin/pip install -e .` to refresh it from pyproject.toml"
    )


def test_roles_help_matches_auth() -> None:
    from serving.cli.keys import ROLES_HELP

    assert ROLES_HELP == ", ".join(auth.ROLES)


def test_cli_create_list_revoke(cli: typer.Typer, engine: Engine, db_url: str) -> None:
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

    with session_factory(engine)() as s:
        principal = auth.authenticate(s, key)
        s.commit()
        assert principal is not None and principal.can("review", "acme")
        assert not principal.can("generate", "globex")

    listed = runner.invoke(cli, ["keys", "list", "--db", db_url])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "PREFIX", "ROLES", "BRANDS", "CREATED", "LAST", "USED", "REVOKED"
    ]  # fmt: skip
    assert lines[1].split()[:4] == ["ci-acme", key[:12], "generate,review", "acme"]
    assert lines[2].split()[:4] == ["root", everything.stdout.strip()[:12], "admin", "*"]
    assert lines[1].endswith("-") and key not in listed.output  # used, not revoked

    revoked = runner.invoke(cli, ["keys", "revoke", "ci-acme", "--db", db_url])
    assert revoked.exit_code == 0, revoked.output
    assert "Revoked API key 'ci-acme'" in revoked.stdout
    again = runner.invoke(cli, ["keys", "revoke", "ci-acme", "--db", db_url])
    assert again.exit_code == 0 and "already revoked" in again.stdout

    with session_factory(engine)() as s:
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
