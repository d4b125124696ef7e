"""Asset key rotation (serving.assets.rotation, `brandforge assets new-key|rotate-key`) on a
real local store and a real SQLite serving database: files re-wrapped with only their header
changed, rows following, a run that crashes half way finished by the next, one audit row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from brandforge.settings import get_settings
from serving.assets import rotation
from serving.assets.crypto import KeyRing, append_key, read_key_file
from serving.assets.rotation import CLEAR, rotate_keys
from serving.assets.store import AssetStore, asset_key
from serving.cli.assets import assets_app
from serving.db.engine import engine_for, session_factory
from serving.db.migrate import upgrade
from serving.db.models import Asset, AuditLog, new_asset_id, utcnow


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'serving.db'}"


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = engine_for(db_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "asset.keys"
    append_key(path, "k1")
    return path


def add_asset(
    session: Session, store: AssetStore, *, with_file: bool = True, status: str = "delivered"
) -> Asset:
    """An asset row as delivery writes it: its file put through `store`, its key id kept."""
    asset_id = new_asset_id()
    key = asset_key("acme", asset_id, "png")
    data = f"PNG of {asset_id}".encode()
    key_id = store.put(key, data) if with_file else (store.keys.newest if store.keys else None)
    row = Asset(
        id=asset_id,
        request_id=uuid.uuid4().hex,
        brand="acme",
        model_name="brandforge-acme",
        model_version="1",
        variant="champion",
        prompt="a teal banner",
        seed=1,
        width=32,
        height=32,
        steps=3,
        guidance=5.0,
        format="png",
        path=key,
        created_at=utcnow(),
        status=status,
        key_id=key_id,
    )
    session.add(row)
    session.flush()
    return row


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.png")}


def test_rotation_rewraps_older_files_and_they_read_with_the_new_key_alone(
    tmp_path: Path, sessions: sessionmaker[Session], key_file: Path
) -> None:
    root = tmp_path / "assets"
    old = AssetStore(str(root), keys=read_key_file(key_file))
    with sessions() as session:
        rows = [add_asset(session, old) for _ in range(3)]
        add_asset(session, AssetStore(str(root)))  # stored in clear, before the key
        add_asset(session, old, with_file=False)  # its file is lost
        add_asset(session, old, status="deleted")  # purged: not visited
        session.commit()
        originals = {r.id: f"PNG of {r.id}".encode() for r in rows}
    append_key(key_file, "k2")
    store = AssetStore(str(root), keys=read_key_file(key_file), cache_bytes=0)
    before = files(root)

    with sessions() as session:
        dry = rotate_keys(session, store, dry_run=True)
        assert (dry.plan, dry.left_clear) == ({"k1": 4}, 1)
        assert files(root) == before and session.scalars(select(AuditLog)).first() is None

        done = rotate_keys(session, store, actor="cli:test")
        assert (done.rewrapped, done.missing, done.already, done.left_clear) == (3, 1, 0, 1)
        assert not done.failed
    after = files(root)
    k2 = read_key_file(key_file).key("k2")
    new_only = AssetStore(str(root), keys=KeyRing({"k2": k2}, newest="k2"))
    with sessions() as session:
        for row in rows:
            fresh = session.get(Asset, row.id)
            assert fresh is not None and fresh.key_id == "k2"
            assert after[row.path][6:8] == b"k2"
            assert after[row.path][-40:] == before[row.path][-40:]  # the body is untouched
            assert new_only.get(row.path) == originals[row.id]
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "asset.rotate_key"))
        (record,) = list(audit)
        assert record.actor == "cli:test"
        assert record.detail["rewrapped"] == 3 and record.detail["missing"] == 1
        assert record.detail["newest"] == "k2" and record.detail["left_clear"] == 1


def test_a_rotation_that_crashes_half_way_is_finished_by_the_next_run(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "assets"
    old = AssetStore(str(root), keys=read_key_file(key_file))
    with sessions() as session:
        ids = [add_asset(session, old).id for _ in range(5)]
        session.commit()
    append_key(key_file, "k2")
    store = AssetStore(str(root), keys=read_key_file(key_file), cache_bytes=0)
    monkeypatch.setattr(rotation, "ROTATE_BATCH", 2)

    class Crash(Exception):
        pass

    def crash_on_the_third(_: int, seen: list[int] = []) -> None:  # noqa: B006
        seen.append(1)
        if len(seen) == 3:  # the third file is re-wrapped, its row not yet committed
            raise Crash

    with sessions() as session, pytest.raises(Crash):
        rotate_keys(session, store, progress=crash_on_the_third)
    with sessions() as session:
        key_ids = [r.key_id or "" for r in session.scalars(select(Asset))]
        assert sorted(key_ids) == ["k1", "k1", "k1", "k2", "k2"]
        done = rotate_keys(session, store)
        assert (done.plan, done.rewrapped, done.already) == ({"k1": 3}, 2, 1)
        assert {r.key_id for r in session.scalars(select(Asset))} == {"k2"}
        paths = {r.id: r.path for r in session.scalars(select(Asset))}
        assert all(store.get(paths[i]) == f"PNG of {i}".encode() for i in ids)


def test_encrypt_clear_encrypts_the_files_stored_before_a_key_was_set(
    tmp_path: Path, sessions: sessionmaker[Session], key_file: Path
) -> None:
    root = tmp_path / "assets"
    with sessions() as session:
        row = add_asset(session, AssetStore(str(root)))
        session.commit()
    store = AssetStore(str(root), keys=read_key_file(key_file), cache_bytes=0)
    with sessions() as session:
        assert rotate_keys(session, store, dry_run=True, encrypt_clear=True).plan == {CLEAR: 1}
        assert rotate_keys(session, store, encrypt_clear=True).encrypted == 1
        assert session.get(Asset, row.id).key_id == "k1"  # type: ignore[union-attr]
    assert (root / row.path).read_bytes().startswith(b"BFAE")
    assert store.get(row.path) == f"PNG of {row.id}".encode()


def test_cli_new_key_then_rotate_key(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    db_url: str,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "assets"
    monkeypatch.setenv("BRANDFORGE_ASSET_DIR", str(root))
    monkeypatch.setenv("BRANDFORGE_ASSET_KEY_FILE", str(key_file))
    get_settings.cache_clear()
    try:
        with sessions() as session:
            for _ in range(2):
                add_asset(session, AssetStore.from_settings())
            session.commit()
        runner = CliRunner()
        added = runner.invoke(assets_app, ["new-key", "--id", "k2"])
        assert added.exit_code == 0, added.output
        assert "'k2'" in added.output and key_file.read_text().split()[2] == "k2"
        assert key_file.read_text().split()[3] not in added.output  # the key is never shown

        dry = runner.invoke(assets_app, ["rotate-key", "--dry-run", "--db", db_url])
        assert dry.exit_code == 0, dry.output
        assert "k1" in dry.output and "would move 2 file(s) to key 'k2'" in dry.output
        real = runner.invoke(assets_app, ["rotate-key", "--db", db_url])
        assert real.exit_code == 0, real.output
        assert "re-wrapping to k2" in real.output and "2 re-wrapped" in real.output

        monkeypatch.delenv("BRANDFORGE_ASSET_KEY_FILE")
        get_settings.cache_clear()
        none = runner.invoke(assets_app, ["rotate-key", "--db", db_url])
        assert none.exit_code == 2 and "no asset key is configured" in none.output
    finally:
        get_settings.cache_clear()
