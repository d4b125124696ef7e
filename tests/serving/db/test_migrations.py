"""Alembic migrations of the serving database (serving.db.migrate), on SQLite and PostgreSQL.

Databases as the releases before Alembic left them are built with the frozen models of commit
c9915d7 (`legacy_c9915d7.py`): created by that release, or created by the release before it
(no campaign tables, ten fewer asset columns) and then started by c9915d7, whose start-up
`ALTER TABLE ... ADD COLUMN` loop added the columns without their indexes, or never started
by c9915d7 at all. Each is filled with rows, upgraded, and checked: rows kept, revision at
head, indexes present, and no difference left between the database and the models.
"""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select

from serving.db.engine import engine_for, session_factory
from serving.db.migrate import (
    SchemaNotCurrent,
    alembic_config,
    current,
    head,
    require_current,
    upgrade,
)
from serving.db.models import ApiKey, Asset, AssetEvent, Base, Campaign, CampaignItem, Rollout
from tests.serving.db import legacy_c9915d7 as legacy

# What the release before c9915d7 lacked: c9915d7's init_db created the tables and added the
# asset columns (ALTER TABLE, no index).
NEWER_TABLES = ("campaign_items", "asset_events", "campaigns")
ADDED_ASSET_COLUMNS = (
    "status", "settings", "provenance", "campaign_id", "item_id", "expires_at", "deleted_at",
    "reviewed_by", "reviewed_at", "review_reason",
)  # fmt: skip
CREATED = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
EXPIRES = CREATED + timedelta(days=30)


@pytest.fixture
def engine(db_url: str) -> Any:
    eng = engine_for(db_url)
    yield eng
    eng.dispose()


def _insert(conn: sa.Connection, table: str, **row: Any) -> None:
    """Insert `row` into `table` through the legacy column types, naming only its columns (the
    legacy models' Python defaults would name columns an older database lacks)."""
    legacy_table = legacy.Base.metadata.tables[table]
    partial = sa.Table(table, sa.MetaData(), *(sa.Column(k, legacy_table.c[k].type) for k in row))
    conn.execute(partial.insert().values(**row))


def _older_release(engine: Engine) -> None:
    """The schema the release before c9915d7 created: c9915d7's minus what it added."""
    legacy.init_db(engine)
    with engine.begin() as conn:
        for table in NEWER_TABLES:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        conn.execute(sa.text("DROP INDEX ix_assets_campaign_id"))
        conn.execute(sa.text("DROP INDEX ix_assets_expires_at"))
        for column in ADDED_ASSET_COLUMNS:
            conn.execute(sa.text(f'ALTER TABLE assets DROP COLUMN "{column}"'))


def _old_rows(conn: sa.Connection, *, full_schema: bool) -> None:
    """Rows of the tables every pre-Alembic release had."""
    _insert(
        conn, "api_keys", id=1, name="ci-acme", key_prefix="bf_abcdefghi", key_hash="h" * 64,
        roles="generate", brands="acme", created_at=CREATED,
    )  # fmt: skip
    _insert(
        conn, "audit_log", id=1, at=CREATED, actor="cli:alice", action="api_key.create",
        brand="acme", detail={"name": "ci-acme"},
    )  # fmt: skip
    extra = {"status": "delivered"} if full_schema else {}
    _insert(
        conn, "assets", id="asset-old", request_id="req-1", brand="acme",
        model_name="brandforge-acme", model_version="3", variant="champion",
        prompt="acme banner", negative_prompt="", seed=2**40, width=32, height=32, steps=4,
        guidance=7.5, format="png", path="acme/old.png", compliance={"score": 0.9},
        created_at=CREATED, **extra,
    )  # fmt: skip
    _insert(
        conn, "rollouts", id=1, brand="acme", model_name="brandforge-acme", canary_version="4",
        champion_version="3", steps=[5, 100], step_index=1, mode="live", min_requests=10,
        min_seconds=60.0, state="promoted", step_started_at=CREATED, created_at=CREATED,
        updated_at=CREATED,
    )  # fmt: skip


def _new_rows(conn: sa.Connection) -> None:
    """Rows only c9915d7's schema can hold: a campaign, its item and asset, an event."""
    _insert(
        conn, "campaigns", id="camp-1", brand="acme", name="spring", spec={"template": "x"},
        priority=0, model_name="brandforge-acme", champion_version="3", canary_weight=0,
        state="done", created_by="ci-acme", created_at=CREATED, updated_at=CREATED,
    )  # fmt: skip
    _insert(
        conn, "campaign_items", id=1, campaign_id="camp-1", key="k1", brand="acme",
        prompt="acme spring", values={}, ratio="1:1", width=32, height=32, model_version="3",
        variant="champion", priority=0, seed=7, state="done", attempts=1,
        asset_ids=["asset-new"], created_at=CREATED, updated_at=CREATED,
    )  # fmt: skip
    _insert(
        conn, "assets", id="asset-new", request_id="camp-1", brand="acme",
        model_name="brandforge-acme", model_version="3", variant="champion",
        prompt="acme spring", negative_prompt="", seed=7, width=32, height=32, steps=4,
        guidance=7.5, format="png", path="acme/new.png", compliance={}, created_at=CREATED,
        status="review", campaign_id="camp-1", item_id=1, expires_at=EXPIRES,
    )  # fmt: skip
    _insert(
        conn, "asset_events", asset_id="asset-old", brand="acme", model_version="3",
        variant="champion", kind="click", count=2, at=CREATED,
    )  # fmt: skip


def _schema_diff(engine: Engine) -> list[Any]:
    """What `alembic check` reports: differences between the database and the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def _reflected(engine: Engine) -> dict[str, Any]:
    """Everything SQLAlchemy reflects of the serving tables, comparable across databases."""
    insp = inspect(engine)
    tables = sorted(set(insp.get_table_names()) - {"alembic_version"})
    return {
        name: repr(
            (
                insp.get_columns(name),
                sorted(
                    (ix["name"], ix["column_names"], ix["unique"]) for ix in insp.get_indexes(name)
                ),
                [
                    str(w)
                    for ix in insp.get_indexes(name)
                    for w in ix.get("dialect_options", {}).values()
                ],
                insp.get_unique_constraints(name),
                insp.get_foreign_keys(name),
                sorted(insp.get_check_constraints(name), key=lambda c: c["name"]),
                insp.get_pk_constraint(name),
            )
        )
        for name in tables
    }


# --------------------------------------------------------------------------------------------
# A fresh database
# --------------------------------------------------------------------------------------------


def test_fresh_upgrade_equals_models(engine: Engine, tmp_path: Path, request) -> None:
    assert current(engine) is None
    assert upgrade(engine) == head() == "0002"
    assert current(engine) == head()
    assert _schema_diff(engine) == []  # models and migrations agree (`alembic check`)

    # ... and what reflection sees equals what `create_all` of the models makes.
    if engine.dialect.name == "sqlite":
        reference = engine_for(f"sqlite:///{tmp_path / 'reference.db'}")
    else:
        reference = engine_for(request.getfixturevalue("pg_url"))
    try:
        Base.metadata.create_all(reference)
        assert _reflected(engine) == _reflected(reference)
    finally:
        reference.dispose()

    assert upgrade(engine) == head()  # again: nothing to do
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1


# --------------------------------------------------------------------------------------------
# Databases made before Alembic
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("history", ["created-by-c9915d7", "altered-by-c9915d7", "older"])
def test_pre_alembic_database_upgrades_with_data(engine: Engine, history: str) -> None:
    if history == "created-by-c9915d7":
        legacy.init_db(engine)
        with engine.begin() as conn:
            _old_rows(conn, full_schema=True)
            _new_rows(conn)
    else:
        _older_release(engine)
        with engine.begin() as conn:
            _old_rows(conn, full_schema=False)
        if history == "altered-by-c9915d7":
            legacy.init_db(engine)  # its ALTER loop: columns added, their indexes not
            with engine.begin() as conn:
                _new_rows(conn)
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("assets")}
    assert ("ix_assets_expires_at" in indexes) == (history == "created-by-c9915d7")
    with pytest.raises(SchemaNotCurrent, match="before Alembic.*brandforge db upgrade"):
        require_current(engine)

    assert upgrade(engine) == head()

    require_current(engine)
    assert _schema_diff(engine) == []
    insp = inspect(engine)
    indexes = {ix["name"] for ix in insp.get_indexes("assets")}
    assert {"ix_assets_expires_at", "ix_assets_campaign_id", "ix_assets_brand_created_at"} <= (
        indexes
    )
    assert not {c["name"]: c for c in insp.get_columns("assets")}["status"]["nullable"]
    with session_factory(engine)() as s:
        key = s.scalars(select(ApiKey)).one()
        assert (key.name, key.roles, key.created_at) == ("ci-acme", "generate", CREATED)
        old = s.get(Asset, "asset-old")
        assert old is not None and old.status == "delivered" and old.seed == 2**40
        assert old.compliance == {"score": 0.9} and old.created_at == CREATED
        rollout = s.scalars(select(Rollout)).one()
        assert rollout.steps == [5, 100] and rollout.state == "promoted"
        new = s.get(Asset, "asset-new")
        if history == "older":
            assert new is None and s.scalars(select(Campaign)).all() == []
        else:
            assert new is not None and new.status == "review"
            assert (new.campaign_id, new.item_id, new.expires_at) == ("camp-1", 1, EXPIRES)
            assert s.scalars(select(CampaignItem)).one().asset_ids == ["asset-new"]
            assert s.scalars(select(AssetEvent)).one().count == 2
        # The upgraded database takes the current models' writes.
        s.add(Asset(request_id="req-2", brand="acme", model_name="brandforge-acme",
                    model_version="3", variant="canary", prompt="p", seed=1, width=32,
                    height=32, steps=4, guidance=7.5, format="png", path="acme/x.png"))  # fmt: skip
        s.commit()


# --------------------------------------------------------------------------------------------
# Replicas, concurrent upgrades, files
# --------------------------------------------------------------------------------------------


def test_require_current_says_what_to_do(engine: Engine) -> None:
    with pytest.raises(SchemaNotCurrent, match=r"is empty.*needs revision 0002.*db upgrade"):
        require_current(engine)
    upgrade(engine, revision="0001")  # a database the previous release made
    with pytest.raises(
        SchemaNotCurrent, match=r"at revision 0001, this release needs 0002: run `brandforge db"
    ):
        require_current(engine)
    upgrade(engine)
    require_current(engine)

    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(SchemaNotCurrent, match="0999, which this release does not know"):
        require_current(engine)


def test_concurrent_upgrades_run_once(db_url: str) -> None:
    """Two replicas' start-ups (or two `brandforge serve`) upgrading the same empty database at
    the same moment: both succeed, the schema is made once."""
    engines = [engine_for(db_url) for _ in range(3)]
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def run(engine: Engine) -> None:
        try:
            barrier.wait()
            results.append(upgrade(engine))
        except BaseException as err:  # reported below, with the others'
            errors.append(err)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert errors == [] and results == [head()] * len(engines)
        assert _schema_diff(engines[0]) == []
        with engines[0].connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        for e in engines:
            e.dispose()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "serving.db"
    old_umask = os.umask(0o022)  # the usual: files world-readable unless asked otherwise
    try:
        engine = engine_for(f"sqlite:///{path}")
        upgrade(engine)
        with session_factory(engine).begin() as s:  # a write: the -wal file exists now
            s.add(ApiKey(name="k", key_prefix="p", key_hash="h", roles="admin", brands="*"))
        wal = path.with_name("serving.db-wal")
        assert wal.exists()
        assert _mode(path) == 0o600 and _mode(wal) == 0o600
        engine.dispose()

        # A database file a release before this one made world-readable is tightened.
        older = tmp_path / "older.db"
        older.touch(mode=0o644)
        older.chmod(0o644)
        upgrade(f"sqlite:///{older}")
        assert _mode(older) == 0o600
    finally:
        os.umask(old_umask)


def test_0002_keeps_rows_and_goes_back(engine: Engine) -> None:
    """0002 only adds: a key made under 0001 keeps its row, with no limits of its own; and a
    downgrade to 0001 removes exactly what 0002 added."""
    upgrade(engine, revision="0001")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO api_keys (name, key_prefix, key_hash, roles, brands, created_at) "
                "VALUES ('app', 'bf_abcdefghi', :h, 'generate', 'acme', CURRENT_TIMESTAMP)"
            ),
            {"h": "0" * 64},
        )
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT name, rate_per_minute, daily_images FROM api_keys"))
        assert row.one() == ("app", None, None)
    assert {"usage_windows", "subject_refs"} <= set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    assert not {"usage_windows", "subject_refs"} & set(inspect(engine).get_table_names())
    assert "rate_per_minute" not in {c["name"] for c in inspect(engine).get_columns("api_keys")}
    upgrade(engine)
    assert _schema_diff(engine) == []
