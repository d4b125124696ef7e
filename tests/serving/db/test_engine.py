"""The serving database's engine and column types (serving.db.engine, serving.db.models), on
SQLite and PostgreSQL (`db_url` / `db_engine`: tests/serving/conftest.py)."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import StatementError

from serving import auth
from serving.db.engine import database_url, engine_for, session_factory
from serving.db.migrate import upgrade
from serving.db.models import Asset


def test_schema(db_engine: Engine, db_url: str) -> None:
    insp = inspect(db_engine)
    assert {"api_keys", "audit_log", "assets"} <= set(insp.get_table_names())
    cols = {c["name"] for c in insp.get_columns("api_keys")}
    assert cols == {
        "id", "name", "key_prefix", "key_hash", "roles", "brands",
        "created_at", "revoked_at", "last_used_at", "rate_per_minute", "daily_images",
    }  # fmt: skip
    asset_indexes = {tuple(ix["column_names"]) for ix in insp.get_indexes("assets")}
    assert ("brand", "created_at") in asset_indexes and ("created_at",) in asset_indexes
    if db_url.startswith("sqlite"):
        with db_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_asset_round_trip(db_engine: Engine) -> None:
    with session_factory(db_engine)() as session:
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
        upgrade(eng)
        eng.dispose()
    finally:
        get_settings.cache_clear()
    assert (tmp_path / "deep" / "er" / "s.db").is_file()
    mem = engine_for("sqlite://")  # in memory: one shared connection, so tables persist
    upgrade(mem)
    with session_factory(mem)() as s:
        auth.create_key(s, name="ci", roles=["generate"], brands=["acme"])
        s.commit()
    with session_factory(mem)() as s:
        assert auth.has_any_key(s)
