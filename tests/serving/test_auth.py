"""API keys, roles, brands and the audit log (serving.auth).

Every database test runs twice: on an SQLite file and on a throwaway PostgreSQL database
(DESIGN.md, decision 2: tests exercise the production backend against a real server), through
the `db_url` / `db_engine` fixtures of tests/serving/conftest.py. `brandforge keys` is tested in
tests/serving/cli/test_keys.py, the database module in tests/serving/db.

PostgreSQL must be running: by default at 127.0.0.1:5432 as user `postgres` without a password;
set BRANDFORGE_TEST_POSTGRES to another server's maintenance-database URI. An unreachable server
fails the tests rather than skipping them, so a CI without PostgreSQL cannot pass by testing
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from serving import auth
from serving.auth import AuthError, Forbidden, Principal
from serving.db.engine import session_factory
from serving.db.models import ApiKey, AuditLog


@pytest.fixture
def session(db_engine: Engine) -> Iterator[Session]:
    with session_factory(db_engine)() as s:
        yield s


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


def test_only_the_hash_is_stored(session: Session, db_engine: Engine, db_url: str) -> None:
    key = _create(session, "ci", ("admin",), ("*",))
    auth.audit(session, "ci", "asset.generate", brand="acme", prompt="a red banner")
    session.commit()
    session.close()
    secret = key[12:]  # all but the displayed prefix

    with db_engine.connect() as conn:
        rows = [
            str(r)
            for table in ("api_keys", "audit_log")
            for r in conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
        ]
    dump = "\n".join(rows)
    assert auth.hash_key(key) in dump and key[:12] in dump
    assert key not in dump and secret not in dump

    if db_url.startswith("sqlite"):  # and not in any byte on disk (database, WAL, journal)
        db_engine.dispose()
        folder = Path(db_engine.url.database or "").parent
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


@pytest.mark.parametrize("bad", ["bases", "Acme", "x" * 65, "a.b"])
def test_keys_take_brand_names_by_the_one_rule(session, bad):
    with pytest.raises(ValueError, match="brand name|reserved"):
        _create(session, name="k", brands=(bad,))
