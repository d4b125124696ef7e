"""Encryption at rest of the asset store (serving.assets.crypto, serving.assets.rotation,
`brandforge assets new-key|rotate-key`): real files on a local folder, real SQLite, and the
S3 server-side encryption options against moto's S3 server on loopback. The HTTP path is
tests/serving/api/test_encryption.py.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from brandforge.settings import Settings, get_settings
from serving.assets.crypto import (
    KeyRing,
    KeyRingError,
    UnreadableAsset,
    append_key,
    decrypt,
    encrypt,
    parse_key_file,
    read_key_file,
    rewrap,
    single_key_ring,
)
from serving.assets.store import AssetStore, asset_key
from tests.serving.assets.test_store import BUCKET, CREDENTIALS, s3_endpoint  # noqa: F401

PROMPT = "summer sale for jane.doe@example.com"


def picture() -> bytes:
    """A real PNG carrying the prompt in a text chunk, as a careless encoder might."""
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", PROMPT)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 40)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def ring(*ids: str) -> KeyRing:
    """A ring of fixed keys (the same id always has the same key); the last id is newest."""
    return KeyRing({i: (i.encode() * 32)[:32] for i in ids}, newest=ids[-1])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------------------------
# The file format
# --------------------------------------------------------------------------------------------


def test_a_stored_file_is_ciphertext_on_disk_and_reads_back_whole(tmp_path: Path) -> None:
    store = AssetStore(str(tmp_path / "assets"), keys=ring("k1"), cache_bytes=0)
    key = asset_key("acme", "Ab12cd", "png")
    png = picture()
    assert store.put(key, png) == "k1"  # the id the row records
    on_disk = (tmp_path / "assets" / key).read_bytes()
    assert b"PNG" not in on_disk and b"summer sale" not in on_disk and b"jane" not in on_disk
    assert on_disk.startswith(b"BFAE\x01\x02k1")
    assert store.get(key) == png
    Image.open(io.BytesIO(store.get(key))).verify()
    # The same bytes twice give two different files (fresh data key and nonces).
    assert encrypt(png, ring=ring("k1"), store_key=key) != on_disk


def test_a_file_stored_in_clear_is_still_read_after_a_key_is_set(tmp_path: Path) -> None:
    key = asset_key("acme", "Cl34ar", "png")
    assert AssetStore(str(tmp_path)).put(key, b"\x89PNG clear") is None
    assert AssetStore(str(tmp_path), keys=ring("k1")).get(key) == b"\x89PNG clear"


def test_a_clear_file_where_the_row_records_a_key_is_refused_even_from_the_cache(
    tmp_path: Path,
) -> None:
    key = asset_key("acme", "Sw4pme", "png")
    store = AssetStore(str(tmp_path), keys=ring("k1"))
    assert store.put(key, picture()) == "k1"
    (tmp_path / key).write_bytes(b"\x89PNG planted in clear")
    assert store.get(key) == b"\x89PNG planted in clear"  # cached, as read in clear
    for _ in range(2):
        with pytest.raises(UnreadableAsset, match="row says it was stored encrypted") as caught:
            store.get(key, encrypted=True)
        assert caught.value.store_key == key
    store.put(key, picture())  # written again through the store: encrypted, cached as such
    assert store.get(key, encrypted=True) == store.get(key, encrypted=True) == picture()
    assert store.cache_stats["hits"] >= 1


@pytest.mark.parametrize(
    ("reader", "why"),
    [
        (ring("k2"), "cannot be decrypted: the key id is not in the key ring"),
        (None, "cannot be decrypted: no asset key is configured"),
        (KeyRing({"k1": b"x" * 32}, newest="k1"), "its wrapped data key fails authentication"),
    ],
    ids=["unknown-key-id", "no-key", "other-key-same-id"],
)
def test_a_file_without_its_key_is_a_clear_error_naming_store_key_and_key_id(
    tmp_path: Path, reader: KeyRing | None, why: str
) -> None:
    key = asset_key("acme", "Wr0ng1", "png")
    AssetStore(str(tmp_path), keys=ring("k1")).put(key, picture())
    with pytest.raises(UnreadableAsset) as caught:
        AssetStore(str(tmp_path), keys=reader).get(key)
    message = str(caught.value)
    assert f"asset file {key!r} (key id 'k1')" in message and why in message
    assert caught.value.key_id == "k1" and caught.value.store_key == key


@pytest.mark.parametrize("where", ["body", "tag", "wrapped-key", "key-id"])
def test_a_tampered_file_fails_to_open(tmp_path: Path, where: str) -> None:
    key = asset_key("acme", "Ta3per", "png")
    keys = ring("k1", "k2")
    blob = bytearray(encrypt(picture(), ring=keys, store_key=key))
    offset = {"body": 100, "tag": len(blob) - 1, "wrapped-key": 6 + 2 + 12 + 5, "key-id": 7}
    blob[offset[where]] ^= 0x01  # "k2" -> "k3" for the key id
    with pytest.raises(UnreadableAsset, match="cannot be decrypted"):
        decrypt(bytes(blob), ring=keys, store_key=key)


def test_a_file_copied_over_another_assets_key_fails_to_open() -> None:
    keys = ring("k1")
    blob = encrypt(picture(), ring=keys, store_key="acme/Aa/Aa1111.png")
    with pytest.raises(UnreadableAsset, match="another store key"):
        decrypt(blob, ring=keys, store_key="acme/Bb/Bb2222.png")
    with pytest.raises(UnreadableAsset, match="truncated"):
        decrypt(blob[:40], ring=keys, store_key="acme/Aa/Aa1111.png")


def test_rewrap_changes_the_header_only_and_the_old_key_is_no_longer_needed() -> None:
    key = "acme/Rw/Rw1234.png"
    png = picture()
    old = encrypt(png, ring=ring("k1"), store_key=key)
    new = rewrap(old, ring=ring("k1", "k2"), store_key=key)
    assert new[6:8] == b"k2" and new[-len(png) - 16 :] == old[-len(png) - 16 :]  # same body
    assert decrypt(new, ring=ring("k2"), store_key=key) == png


# --------------------------------------------------------------------------------------------
# Key ring from the settings
# --------------------------------------------------------------------------------------------


def test_key_file_newest_last_and_errors_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "asset.keys"
    append_key(path, "k2025")
    append_key(path, "k2026")
    assert _mode(path) == 0o600
    keys = read_key_file(path)
    assert keys.ids == ["k2025", "k2026"] and keys.newest == "k2026"
    assert "k2026" not in path.read_text().split()[1]  # the key is not its id
    with pytest.raises(KeyRingError, match="already there"):
        append_key(path, "k2025")

    good = path.read_text().splitlines()[0].split()[1]
    for text, expected in [
        (f"# comment\n\nk1 {good}\nk1 {good}\n", "f, line 4: key id 'k1' appears twice"),
        ("k1 not*base64\n", "f, line 1: the key is not base64"),
        ("k1 c2hvcnQ=\n", "f, line 1: the key has 5 bytes, not 32"),
        (f"bad/id {good}\n", "f, line 1: key id 'bad/id' refused"),
        (f"k1 {good} extra\n", "f, line 1: expected '<key id> <base64 key>', got 3 fields"),
        ("# nothing\n", "f: no key in the file"),
    ]:
        with pytest.raises(KeyRingError) as caught:
            parse_key_file(text, source="f")
        assert expected in str(caught.value), text


def test_settings_give_a_ring_from_a_file_or_one_key_never_both(tmp_path: Path) -> None:
    path = tmp_path / "asset.keys"
    append_key(path, "k1")
    assert KeyRing.from_settings(Settings()) is None  # unset: files in clear
    from_file = KeyRing.from_settings(Settings(asset_key_file=path))
    assert from_file is not None and from_file.newest == "k1"
    one = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="  # 32 bytes
    single = KeyRing.from_settings(Settings(asset_key=one))
    assert single is not None and single.ids == [single_key_ring(one, "x").newest]
    assert single.newest.startswith("k-") and "QUJD" not in repr(single)
    with pytest.raises(KeyRingError, match="both BRANDFORGE_ASSET_KEY_FILE and"):
        KeyRing.from_settings(Settings(asset_key_file=path, asset_key=one))
    with pytest.raises(KeyRingError, match="does not exist"):
        KeyRing.from_settings(Settings(asset_key_file=tmp_path / "nope"))


def test_encryption_settings_blank_is_unset_and_a_kms_key_needs_kms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    for name in ("ASSET_KEY_FILE", "ASSET_KEY", "ASSET_S3_SSE", "ASSET_S3_KMS_KEY_ID"):
        monkeypatch.setenv(f"BRANDFORGE_{name}", " ")
    blank = Settings()
    assert (blank.asset_key_file, blank.asset_key, blank.asset_s3_sse) == (None, None, None)
    with pytest.raises(ValidationError, match="BRANDFORGE_ASSET_S3_SSE is not 'aws:kms'"):
        Settings(asset_s3_sse="AES256", asset_s3_kms_key_id="alias/x")
    with pytest.raises(ValidationError, match="asset_s3_sse"):
        Settings(asset_s3_sse="aws:kms:dsse")
    assert "c2VjcmV0" not in repr(Settings(asset_key="c2VjcmV0"))  # a key stays out of logs


# --------------------------------------------------------------------------------------------
# Owner-only local store
# --------------------------------------------------------------------------------------------


def test_a_local_store_is_created_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual: world-readable unless asked otherwise
    try:
        root = tmp_path / "srv" / "assets"
        store = AssetStore(str(root))
        key = asset_key("acme", "Ow1234", "png")
        store.put(key, b"\x89PNG")
        assert _mode(tmp_path / "srv") == _mode(root) == 0o700
        assert _mode(root / "acme") == _mode(root / "acme" / "Ow") == 0o700
        assert _mode(root / key) == 0o600
    finally:
        os.umask(old_umask)


# --------------------------------------------------------------------------------------------
# S3 server-side encryption (moto on loopback)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sse", "kms_key_id"), [("AES256", None), ("aws:kms", "alias/brandforge-assets")]
)
def test_s3_uploads_ask_for_server_side_encryption_on_top_of_ours(
    s3_endpoint: str,  # noqa: F811
    tmp_path: Path,
    sse: str,
    kms_key_id: str | None,
) -> None:
    import boto3

    prefix = f"sse-{sse.replace(':', '-')}"
    key_file = tmp_path / "asset.keys"
    append_key(key_file, "k1")
    settings = Settings(
        asset_store=f"s3://{BUCKET}/{prefix}",
        asset_store_options={"endpoint_url": s3_endpoint, **CREDENTIALS},
        asset_s3_sse=sse,
        asset_s3_kms_key_id=kms_key_id,
        asset_key_file=key_file,
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["key"],
        aws_secret_access_key=CREDENTIALS["secret"],
    )
    key = asset_key("acme", "S3sse1", "png")
    png = picture()
    assert AssetStore.from_settings(settings).put(key, png) == "k1"
    append_key(key_file, "k2")
    store = AssetStore.from_settings(settings)
    assert store.rewrap(key) == ("k1", "k2")  # a rotation's upload asks for it too
    head = s3.head_object(Bucket=BUCKET, Key=f"{prefix}/{key}")
    assert head["ServerSideEncryption"] == sse
    if kms_key_id is not None:
        assert kms_key_id in head["SSEKMSKeyId"]
    stored = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{key}")["Body"].read()
    assert stored.startswith(b"BFAE\x01\x02k2") and b"summer sale" not in stored
    assert store.get(key) == png


def test_a_bad_key_file_stops_serve_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import brandforge.cli

    key_file = tmp_path / "asset.keys"
    key_file.write_text("k1 not-a-key\n")
    monkeypatch.setenv("BRANDFORGE_ASSET_KEY_FILE", str(key_file))
    monkeypatch.setenv("BRANDFORGE_SERVING_DB", f"sqlite:///{tmp_path / 'serving.db'}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(brandforge.cli.app, ["serve", "--dev"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert f"{key_file}, line 1: the key is not base64" in result.stderr
    assert not (tmp_path / "serving.db").exists()  # stopped before the database, and Ray
