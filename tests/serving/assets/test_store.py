"""The asset store, retention and `brandforge assets` (serving.assets.store, serving.cli.assets).

Every store behaviour runs twice: on a local folder and on S3, a real S3 HTTP API served by
moto on loopback (started once for the module), so the production path is exercised through
s3fs exactly as it would talk to AWS or MinIO. Purges run on an SQLite serving database, and
once on a throwaway PostgreSQL database (PostgreSQL must be running, see test_auth.py).
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from brandforge.settings import Settings, get_settings
from serving.assets.retention import PURGE_BATCH, asset_stats, expiry_for, purge_expired
from serving.assets.store import AssetMissing, AssetStore, BadAssetKey, asset_key
from serving.cli.assets import assets_app
from serving.db.engine import engine_for, session_factory
from serving.db.migrate import upgrade
from serving.db.models import Asset, AuditLog, new_asset_id, utcnow

BUCKET = "brandforge-assets"
CREDENTIALS = {"key": "testing", "secret": "testing"}
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 holding an empty bucket `BUCKET`."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["key"],
            aws_secret_access_key=CREDENTIALS["secret"],
        ).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


@dataclass(frozen=True)
class StoreSpec:
    """Where a test's store lives: its URL and fsspec options."""

    kind: str
    url: str
    options: dict[str, Any]

    def open(self, cache_bytes: int = 2**20) -> AssetStore:
        return AssetStore(self.url, options=self.options, cache_bytes=cache_bytes)

    def env(self) -> dict[str, str]:
        """The environment that makes this the settings' asset store."""
        return {
            "BRANDFORGE_ASSET_STORE": self.url,
            "BRANDFORGE_ASSET_STORE_OPTIONS": json.dumps(self.options),
        }


@pytest.fixture(params=["local", "s3"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """A fresh, empty store: a local folder (not created yet), or a new prefix in the bucket."""
    if request.param == "local":
        return StoreSpec("local", str(tmp_path / "assets"), {})
    endpoint = request.getfixturevalue("s3_endpoint")
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    return StoreSpec("s3", f"s3://{BUCKET}/{prefix}", {"endpoint_url": endpoint, **CREDENTIALS})


@pytest.fixture
def store(spec: StoreSpec) -> AssetStore:
    return spec.open()


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


def test_put_get_exists_delete(store: AssetStore) -> None:
    key = asset_key("acme", "Xy3dQ9", "png")
    assert key == "acme/Xy/Xy3dQ9.png"
    assert not store.exists(key)
    store.put(key, b"\x89PNG first")
    assert store.exists(key)
    assert store.get(key) == b"\x89PNG first"
    assert store.delete(key) is True
    assert not store.exists(key)
    assert store.delete(key) is False  # already gone: reported, not an error


def test_a_missing_file_raises_asset_missing_naming_key_and_store(store: AssetStore) -> None:
    with pytest.raises(AssetMissing) as caught:
        store.get("acme/no/nothing.png")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, LookupError)
    message = str(caught.value)
    assert "'acme/no/nothing.png'" in message and store.url() in message
    assert not message.startswith('"')  # not KeyError's quoted repr


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../secrets.txt",
        "acme/../../etc/passwd",
        "acme/./x.png",
        "acme//x.png",
        "acme/",
        "acme/.hidden",
        "acme\\x.png",
        "acme/x y.png",
        "acme/x.png?versionId=1",
        "acme/é.png",
        "a" * 1025,
    ],
)
def test_bad_keys_are_refused_before_any_io(spec: StoreSpec, key: str) -> None:
    store = spec.open()
    for call in (
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ):
        with pytest.raises(BadAssetKey, match="asset key .* refused"):
            call()
    assert store.sizes() == {}  # nothing was written anywhere


def test_asset_key_validates_its_parts() -> None:
    assert asset_key("acme-eu", "a_-b", ".JPG") == "acme-eu/a_/a_-b.jpg"
    for brand, asset_id, ext in [
        ("../x", "abcd", "png"),
        ("Acme", "abcd", "png"),
        ("acme", "a/b", "png"),
        ("acme", "x", "png"),
        ("acme", "abcd", "p/ng"),
    ]:
        with pytest.raises(BadAssetKey):
            asset_key(brand, asset_id, ext)


def test_put_and_delete_through_the_store_invalidate_its_cache(store: AssetStore) -> None:
    key = "acme/ca/cached.png"
    store.put(key, b"version 1")
    assert store.get(key) == b"version 1"
    assert store.get(key) == b"version 1"
    assert store.cache_stats["hits"] == 1
    store.put(key, b"version 2")  # replaced through the same store: never served stale
    assert store.get(key) == b"version 2"
    store.delete(key)
    with pytest.raises(AssetMissing):
        store.get(key)
    assert store.cache_stats["entries"] == 0


def test_the_cache_is_per_store_as_documented(spec: StoreSpec) -> None:
    """Another store (another process) deleting a file does not reach this store's cache: a
    cached asset is still served, while `exists` asks the store. Keys are written once, so
    this is the one stale case; the HTTP API checks the asset's row before serving it."""
    mine, other = spec.open(), spec.open()
    mine.put("acme/pp/pp.png", b"cached here")
    assert mine.get("acme/pp/pp.png") == b"cached here"
    assert other.delete("acme/pp/pp.png")
    assert mine.get("acme/pp/pp.png") == b"cached here"
    assert not mine.exists("acme/pp/pp.png")


def test_the_cache_serves_hits_and_stays_within_its_bound(spec: StoreSpec) -> None:
    store = spec.open(cache_bytes=1000)
    keys = [f"acme/lr/{i}.png" for i in range(6)]
    for i, key in enumerate(keys):
        store.put(key, bytes([i]) * 300)
    for key in keys:
        store.get(key)
        assert store.cache_stats["bytes"] <= 1000
    stats = store.cache_stats
    assert stats == {"hits": 0, "misses": 6, "bytes": 900, "entries": 3, "capacity": 1000}
    assert store.get(keys[-1]) == bytes([5]) * 300  # recent: a hit
    assert store.get(keys[0]) == bytes([0]) * 300  # least recently used: evicted, a miss
    assert store.cache_stats["hits"] == 1 and store.cache_stats["misses"] == 7

    big = "acme/lr/big.png"
    store.put(big, b"B" * 1001)  # larger than the whole cache: served, never cached
    assert store.get(big) == b"B" * 1001
    assert store.get(big) == b"B" * 1001
    assert store.cache_stats["misses"] == 9 and store.cache_stats["bytes"] <= 1000

    off = spec.open(cache_bytes=0)
    assert off.get(keys[0]) == off.get(keys[0])
    assert off.cache_stats["entries"] == 0 and off.cache_stats["hits"] == 0


def test_concurrent_readers_see_whole_files_and_the_cache_stays_bounded(spec: StoreSpec) -> None:
    """A writer replaces a file over and over while readers read it: every read is one whole
    version (local writes are temp + rename; an S3 PUT is atomic), and the shared cache never
    holds more than its bound."""
    writer, reader = spec.open(cache_bytes=0), spec.open(cache_bytes=150_000)
    versions = [bytes([v]) * 64_000 for v in range(3)]
    key = "acme/cc/busy.png"
    writer.put(key, versions[0])
    stop = threading.Event()
    errors: list[str] = []

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            writer.put(key, versions[i % 3])
            reader.put(f"acme/cc/{i % 4}.png", versions[i % 3])  # churns the reader's cache

    def read() -> None:
        for n in range(25):
            data = reader.get(key) if n % 2 else reader.get(f"acme/cc/{n % 4}.png")
            if data not in versions:
                errors.append(f"torn read of {len(data)} bytes")
            if reader.cache_stats["bytes"] > 150_000:
                errors.append(f"cache over its bound: {reader.cache_stats}")

    for i in range(4):
        reader.put(f"acme/cc/{i}.png", versions[0])
    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(timeout=60)
    stop.set()
    threads[0].join(timeout=60)
    assert errors == []


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = AssetStore(str(tmp_path / "assets"))
    for i in range(5):
        store.put("acme/ab/abcd.png", bytes([i]) * 10)
    files = [p.relative_to(tmp_path) for p in (tmp_path / "assets").rglob("*") if p.is_file()]
    assert files == [Path("assets/acme/ab/abcd.png")]
    assert (tmp_path / "assets/acme/ab/abcd.png").read_bytes() == bytes([4]) * 10
    # A temp file an interrupted write left behind is not an asset.
    (tmp_path / "assets/acme/ab/.abcd.png.x1.tmp").write_bytes(b"half")
    assert store.sizes() == {"acme/ab/abcd.png": 10}


def test_sizes_lists_the_store_and_url_names_it(spec: StoreSpec, store: AssetStore) -> None:
    assert store.sizes() == {}  # nothing there yet (the local folder does not even exist)
    store.put("acme/aa/aaaa.png", b"12345")
    store.put("beta/bb/bbbb.jpg", b"123")
    assert store.sizes() == {"acme/aa/aaaa.png": 5, "beta/bb/bbbb.jpg": 3}
    assert store.sizes("acme/") == {"acme/aa/aaaa.png": 5}
    if spec.kind == "s3":
        assert store.url() == spec.url
        # Another prefix of the same bucket is another store.
        sibling = AssetStore(spec.url + "-sibling", options=spec.options)
        assert sibling.sizes() == {} and not sibling.exists("acme/aa/aaaa.png")
    else:
        assert store.url() == f"file://{spec.url}"


def test_a_relative_local_store_is_resolved_when_opened(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = AssetStore("assets")
    monkeypatch.chdir("/")
    store.put("acme/aa/aaaa.png", b"x")
    assert (tmp_path / "assets/acme/aa/aaaa.png").read_bytes() == b"x"


@pytest.mark.parametrize(
    ("url", "error", "match"),
    [
        ("", ValueError, "empty"),
        ("nosuchproto://bucket/x", ValueError, "cannot use asset store URL"),
        ("s3://", ValueError, "names no bucket"),
    ],
)
def test_unusable_store_urls_are_refused(url: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        AssetStore(url, options={"anon": True} if url.startswith("s3") else None)


def test_from_settings_picks_the_store_by_environment(
    spec: StoreSpec, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("BRANDFORGE_ASSET_STORE", raising=False)
    monkeypatch.setenv("BRANDFORGE_ASSET_DIR", str(tmp_path / "default-dir"))
    monkeypatch.setenv("BRANDFORGE_ASSET_CACHE_MB", "0")
    default = AssetStore.from_settings(Settings())
    assert default.url() == f"file://{tmp_path / 'default-dir'}"
    assert default.cache_stats["capacity"] == 0

    for name, value in spec.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BRANDFORGE_ASSET_CACHE_MB", "2")
    configured = AssetStore.from_settings(Settings())
    configured.put("acme/en/env.png", b"through the environment")
    assert spec.open().get("acme/en/env.png") == b"through the environment"
    assert configured.cache_stats["capacity"] == 2 * 2**20


def test_retention_settings_parse_json(monkeypatch) -> None:
    monkeypatch.setenv("BRANDFORGE_RETENTION_DAYS", '{"acme": 30, "*": 90}')
    monkeypatch.setenv("BRANDFORGE_ASSET_STORE", "")
    settings = Settings()
    assert settings.retention_days == {"acme": 30.0, "*": 90.0}
    assert settings.asset_store is None  # set but empty: the default
    monkeypatch.setenv("BRANDFORGE_ASSET_STORE_OPTIONS", '{"secret": "hunter2"}')
    assert "hunter2" not in repr(Settings())
    for bad in ('{"acme": -1}', '{"": 3}', '{"acme": "soon"}', "[30]"):
        monkeypatch.setenv("BRANDFORGE_RETENTION_DAYS", bad)
        with pytest.raises(ValueError, match="retention_days"):
            Settings()


@pytest.mark.parametrize(
    ("brand", "retention", "expected"),
    [
        ("acme", {"acme": 30, "*": 90}, timedelta(days=30)),
        ("beta", {"acme": 30, "*": 90}, timedelta(days=90)),
        ("beta", {"acme": 30}, None),
        ("acme", {}, None),
        ("acme", {"acme": 0.5}, timedelta(hours=12)),
        ("acme", {"acme": 0}, timedelta(0)),
    ],
)
def test_expiry_for_uses_the_brand_then_the_default(brand, retention, expected) -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    got = expiry_for(brand, created, retention)
    assert got == (None if expected is None else created + expected)


def test_expiry_for_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        expiry_for("acme", datetime(2026, 1, 1), {"*": 1})


# --------------------------------------------------------------------------------------------
# Purge
# --------------------------------------------------------------------------------------------


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 's.db'}"


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine: Engine = engine_for(db_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def add_asset(
    session: Session,
    store: AssetStore,
    brand: str,
    *,
    created_at: datetime,
    retention: dict[str, float],
    with_file: bool = True,
    status: str = "delivered",
) -> Asset:
    """An asset row as the server writes it, with its expiry from `retention`, and its file."""
    asset_id = new_asset_id()
    key = asset_key(brand, asset_id, "png")
    if with_file:
        store.put(key, f"png of {asset_id}".encode())
    row = Asset(
        id=asset_id,
        request_id=uuid.uuid4().hex,
        brand=brand,
        model_name=f"brandforge-{brand}",
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
        created_at=created_at,
        expires_at=expiry_for(brand, created_at, retention),
        status=status,
    )
    session.add(row)
    session.flush()
    return row


RETENTION = {"acme": 30, "*": 90}


@dataclass
class Fleet:
    """Assets on both sides of their expiry, by what a purge at NOW must do with them."""

    expired: list[str]  # acme 40 days old, beta 100 days old (files present)
    expired_missing: str  # acme, 40 days old, file already gone
    kept: list[str]  # acme 10 days, beta 60 days, gamma with no retention... kept
    already_deleted: str


def make_fleet(sessions: sessionmaker[Session], store: AssetStore, *, now: datetime = NOW) -> Fleet:
    """The fleet, aged relative to `now` (the CLI purges at the real current time)."""

    def aged(brand: str, days: int, **kw: Any) -> str:
        created = now - timedelta(days=days)
        return add_asset(s, store, brand, created_at=created, retention=RETENTION, **kw).id

    with sessions.begin() as s:
        expired = [aged("acme", 40), aged("beta", 100)]
        missing = aged("acme", 40, with_file=False)
        kept = [aged("acme", 10), aged("beta", 60)]
        kept.append(
            add_asset(s, store, "gamma", created_at=now - timedelta(days=900), retention={}).id
        )
        gone = aged("acme", 50, with_file=False, status="deleted")
    return Fleet(expired, missing, kept, gone)


def _rows(sessions: sessionmaker[Session]) -> dict[str, tuple[str, datetime | None]]:
    with sessions() as s:
        return {a.id: (a.status, a.deleted_at) for a in s.scalars(select(Asset))}


def _purge_audits(sessions: sessionmaker[Session]) -> list[AuditLog]:
    with sessions() as s:
        query = select(AuditLog).where(AuditLog.action == "asset.purge").order_by(AuditLog.id)
        return list(s.scalars(query))


def test_a_dry_run_lists_what_would_go_and_changes_nothing(sessions, store: AssetStore) -> None:
    fleet = make_fleet(sessions, store)
    rows_before, files_before = _rows(sessions), store.sizes()
    with sessions() as s:
        result = purge_expired(s, store, now=NOW, dry_run=True)
    assert result.dry_run
    assert {a["id"] for a in result.assets} == {*fleet.expired, fleet.expired_missing}
    assert {a["id"]: a["file"] for a in result.assets}[fleet.expired_missing] == "missing"
    assert {a["status"] for a in result.assets} == {"delivered"}
    assert (result.deleted_files, result.missing_files) == (2, 1)
    assert _rows(sessions) == rows_before
    assert store.sizes() == files_before
    assert _purge_audits(sessions) == []


def test_a_purge_deletes_expired_files_marks_rows_and_a_rerun_does_nothing(
    sessions, store: AssetStore
) -> None:
    fleet = make_fleet(sessions, store)
    with sessions() as s:
        kept_paths = {a.path for a in s.scalars(select(Asset).where(Asset.id.in_(fleet.kept)))}
        expired_paths = {
            a.path for a in s.scalars(select(Asset).where(Asset.id.in_(fleet.expired)))
        }
    with sessions() as s:
        result = purge_expired(s, store, now=NOW, actor="cli:tester")
    assert not result.dry_run
    assert {a["id"] for a in result.assets} == {*fleet.expired, fleet.expired_missing}
    assert {a["status"] for a in result.assets} == {"deleted"}
    assert (result.deleted_files, result.missing_files) == (2, 1)

    rows = _rows(sessions)
    for asset_id in [*fleet.expired, fleet.expired_missing]:
        assert rows[asset_id] == ("deleted", NOW)  # the row stays, for the audit trail
    for asset_id in fleet.kept:
        assert rows[asset_id] == ("delivered", None)
    assert rows[fleet.already_deleted] == ("deleted", None)  # not touched again
    assert set(store.sizes()) == kept_paths
    assert not any(store.exists(p) for p in expired_paths)

    [audit] = _purge_audits(sessions)
    assert audit.actor == "cli:tester" and audit.brand is None
    assert audit.detail["assets"] == 3
    assert (audit.detail["deleted_files"], audit.detail["missing_files"]) == (2, 1)
    assert audit.detail["store"] == store.url()

    with sessions() as s:
        again = purge_expired(s, store, now=NOW)
    assert again.assets == [] and (again.deleted_files, again.missing_files) == (0, 0)
    assert _rows(sessions) == rows
    assert [a.detail["assets"] for a in _purge_audits(sessions)] == [3, 0]

    # A month later the kept acme (10 of 30 days) and beta (60 of 90) assets have expired, in
    # that order; gamma has no retention and stays forever.
    with sessions() as s:
        later = purge_expired(s, store, now=NOW + timedelta(days=31))
    assert [a["id"] for a in later.assets] == fleet.kept[:2]


def test_a_purge_of_one_brand_leaves_the_others(sessions, store: AssetStore) -> None:
    fleet = make_fleet(sessions, store)
    with sessions() as s:
        result = purge_expired(s, store, now=NOW, brand="beta")
    assert [a["id"] for a in result.assets] == [fleet.expired[1]]
    rows = _rows(sessions)
    assert rows[fleet.expired[0]][0] == "delivered"
    assert _purge_audits(sessions)[0].brand == "beta"


def test_a_purge_in_several_runs_and_batches_continues_where_it_stopped(tmp_path, sessions):
    """A limited run (as if stopped midway) commits what it did; the next run does the rest,
    across more than one batch."""
    store = AssetStore(str(tmp_path / "assets"))
    n = PURGE_BATCH + 30
    with sessions.begin() as s:
        ids = {
            add_asset(s, store, "acme", created_at=NOW - timedelta(days=31), retention=RETENTION).id
            for _ in range(n)
        }
    with sessions() as s:
        first = purge_expired(s, store, now=NOW, limit=20)
    assert len(first.assets) == 20
    assert sum(status == "deleted" for status, _ in _rows(sessions).values()) == 20
    with sessions() as s:
        rest = purge_expired(s, store, now=NOW)
    assert len(rest.assets) == n - 20
    assert {a["id"] for a in first.assets} | {a["id"] for a in rest.assets} == ids
    assert store.sizes() == {}
    assert [a.detail["assets"] for a in _purge_audits(sessions)] == [20, n - 20]


def _broken_store_setup(tmp_path: Path, sessions, now: datetime) -> tuple[AssetStore, str, str]:
    """Two expired acme assets; the second's folder is blocked by a plain file, so deleting
    its file fails with NotADirectoryError (a real store failure, whoever runs the test)."""
    store = AssetStore(str(tmp_path / "assets"))
    with sessions.begin() as s:
        first = add_asset(
            s, store, "acme", created_at=now - timedelta(days=41), retention=RETENTION
        )
        second = add_asset(
            s, store, "acme", created_at=now - timedelta(days=40), retention=RETENTION
        )
        blocked = tmp_path / "assets" / Path(second.path).parent
    for f in blocked.iterdir():
        f.unlink()
    blocked.rmdir()
    blocked.write_bytes(b"not a folder")
    return store, first.id, second.id


def test_a_store_failure_keeps_what_was_done_and_a_rerun_finishes(tmp_path, sessions) -> None:
    store, first, second = _broken_store_setup(tmp_path, sessions, NOW)
    with sessions() as s, pytest.raises(NotADirectoryError):
        purge_expired(s, store, now=NOW)
    rows = _rows(sessions)
    assert rows[first] == ("deleted", NOW) and rows[second] == ("delivered", None)
    [audit] = _purge_audits(sessions)
    assert audit.detail["assets"] == 1 and "NotADirectoryError" in audit.detail["error"]

    blocked = tmp_path / "assets" / Path(_path_of(sessions, second)).parent
    blocked.unlink()  # the operator fixes the store
    with sessions() as s:
        rerun = purge_expired(s, store, now=NOW)
    assert [(a["id"], a["file"]) for a in rerun.assets] == [(second, "missing")]
    assert _rows(sessions)[second] == ("deleted", NOW)


def test_cli_store_failure_is_one_red_line_and_exit_1(tmp_path, sessions, db_url) -> None:
    _broken_store_setup(tmp_path, sessions, utcnow())
    result = CliRunner().invoke(
        assets_app, ["purge", "--db", db_url, "--store", str(tmp_path / "assets")]
    )
    assert result.exit_code == 1
    assert result.output.startswith(f"assets: asset store file://{tmp_path / 'assets'}: ")
    assert "Not a directory" in result.output and len(result.output.splitlines()) == 1


def test_a_purge_refuses_a_naive_now(sessions, store: AssetStore) -> None:
    with sessions() as s, pytest.raises(ValueError, match="naive"):
        purge_expired(s, store, now=datetime(2026, 1, 1))


def test_purge_on_postgresql(tmp_path: Path) -> None:
    """The same purge on the production database (DESIGN.md, decision 2)."""
    from tests.registry.conftest import _throwaway_database

    store = AssetStore(str(tmp_path / "assets"))
    with _throwaway_database(create=True) as db:
        engine = engine_for(db.uri)
        try:
            upgrade(engine)
            sessions = session_factory(engine)
            fleet = make_fleet(sessions, store)
            with sessions() as s:
                result = purge_expired(s, store, now=NOW)
            assert {a["id"] for a in result.assets} == {*fleet.expired, fleet.expired_missing}
            assert _rows(sessions)[fleet.expired[0]] == ("deleted", NOW)
            assert _purge_audits(sessions)[0].detail["missing_files"] == 1
        finally:
            engine.dispose()


def test_asset_stats_count_rows_and_bytes(sessions, store: AssetStore) -> None:
    make_fleet(sessions, store)
    store.put("orphan/zz/zzzz.png", b"1234567")
    with sessions() as s:
        stats = asset_stats(s, store)
        db_only = asset_stats(s)
    by_group = {(g["brand"], g["status"]): g for g in stats.groups}
    assert by_group[("acme", "delivered")]["count"] == 3
    assert by_group[("acme", "delivered")]["files"] == 2  # one expired file is missing
    assert by_group[("acme", "deleted")] == {
        "brand": "acme",
        "status": "deleted",
        "count": 1,
        "files": 0,
        "bytes": 0,
    }
    sizes = store.sizes()
    assert sum(g["bytes"] for g in stats.groups) == sum(sizes.values()) - 7
    assert (stats.orphan_files, stats.orphan_bytes, stats.missing_files) == (1, 7, 1)
    assert [(g["brand"], g["status"], g["count"]) for g in db_only.groups] == [
        (g["brand"], g["status"], g["count"]) for g in stats.groups
    ]
    assert not db_only.listed and db_only.groups[0]["bytes"] is None


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


@pytest.fixture
def store_env(spec: StoreSpec, monkeypatch) -> Iterator[StoreSpec]:
    """`spec` as the settings' asset store, the way an operator configures it."""
    for name, value in spec.env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield spec
    get_settings.cache_clear()


def test_cli_purge_dry_run_then_real(store_env: StoreSpec, sessions, db_url: str) -> None:
    store = store_env.open()
    fleet = make_fleet(sessions, store, now=utcnow())
    runner = CliRunner()

    dry = runner.invoke(assets_app, ["purge", "--dry-run", "--db", db_url])
    assert dry.exit_code == 0, dry.output
    assert "would delete 3 expired asset(s): 2 file(s) present, 1 already missing" in dry.output
    assert all(asset_id in dry.output for asset_id in [*fleet.expired, fleet.expired_missing])
    assert not any(asset_id in dry.output for asset_id in fleet.kept)
    assert _purge_audits(sessions) == []

    real = runner.invoke(assets_app, ["purge", "--db", db_url, "--brand", "acme"])
    assert real.exit_code == 0, real.output
    assert "deleted 2 expired asset(s): 1 file(s) deleted, 1 already missing" in real.output
    assert _rows(sessions)[fleet.expired[1]][0] == "delivered"  # beta: not this run's brand
    [audit] = _purge_audits(sessions)
    assert audit.actor.startswith("cli:") and audit.brand == "acme"

    nothing = runner.invoke(assets_app, ["purge", "--db", db_url, "--brand", "acme"])
    assert nothing.exit_code == 0 and "deleted 0 expired asset(s)" in nothing.output


def test_cli_stats(store_env: StoreSpec, sessions, db_url: str) -> None:
    make_fleet(sessions, store_env.open(), now=utcnow())
    result = CliRunner().invoke(assets_app, ["stats", "--db", db_url])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert lines[0] == ["BRAND", "STATUS", "COUNT", "FILES", "BYTES"]
    assert ["acme", "deleted", "1", "0", "0"] == lines[1]
    assert ["acme", "delivered", "3", "2"] == lines[2][:4]
    assert "total: 7 asset(s)" in result.output
    assert "rows (not deleted) whose file is missing: 1" in result.output

    db_only = CliRunner().invoke(assets_app, ["stats", "--db", db_url, "--no-files"])
    assert db_only.exit_code == 0 and "total: 7 asset(s)\n" in db_only.output


def test_cli_store_option_overrides_the_settings(tmp_path: Path, sessions, db_url) -> None:
    store = AssetStore(str(tmp_path / "elsewhere"))
    fleet = make_fleet(sessions, store, now=utcnow())
    result = CliRunner().invoke(
        assets_app, ["purge", "--db", db_url, "--store", str(tmp_path / "elsewhere")]
    )
    assert result.exit_code == 0, result.output
    assert "2 file(s) deleted" in result.output
    assert not store.exists(_path_of(sessions, fleet.expired[0]))


def _path_of(sessions: sessionmaker[Session], asset_id: str) -> str:
    with sessions() as s:
        row = s.get(Asset, asset_id)
        assert row is not None
        return row.path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["purge", "--db", "nosuchdb://x"], "assets: cannot use database URL 'nosuchdb://x'"),
        (["stats", "--db", "nosuchdb://x"], "assets: cannot use database URL 'nosuchdb://x'"),
        (["purge", "--store", "nosuchproto://b/x"], "assets: cannot use asset store URL"),
    ],
)
def test_cli_unusable_urls_are_one_red_line_and_exit_2(args, message, db_url) -> None:
    if "--db" not in args:
        args = [*args, "--db", db_url]
    result = CliRunner().invoke(assets_app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
