"""Encryption at rest of asset files: AES-GCM envelope encryption (DESIGN.md, decision 9).

Every file gets its own random 256-bit data key; the data key is stored in the file's header,
encrypted ("wrapped") with a key-encryption key from the settings' key ring. Rotating the
key-encryption key re-wraps the 60-byte wrapped data key of each file and leaves the body as
it is, so a rotation costs one small read-modify-write per file whatever its size.

    offset  size  field
    0       4     magic b"BFAE" (BrandForge Asset, Encrypted): no image format starts so
    4       1     format version (1)
    5       1     n, length of the key id
    6       n     key id (ASCII, the key-encryption key that wrapped the data key)
    6+n     12    nonce of the wrap
    18+n    48    wrapped data key: AES-GCM(KEK, data key), its 16-byte tag included
    66+n    12    nonce of the body
    78+n    ...   body: AES-GCM(data key, file bytes), its 16-byte tag at the end

Both encryptions are bound (as associated data) to the file's store key, so a file copied
over another asset's key fails to open instead of serving the wrong picture; the wrap is also
bound to its key id. A file that does not start with the magic is a clear file (stored while no
key was set) and is read as it is.

The key ring comes from the settings: `BRANDFORGE_ASSET_KEY_FILE`, a text file with one key
per line, `<key id> <base64 of 32 bytes>`, the last line the newest (it encrypts new files,
the older ones still open what they wrote), or `BRANDFORGE_ASSET_KEY`, one base64 key whose id
is derived from it. Everything here is pure (bytes in, bytes out) except reading the key file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from brandforge.settings import Settings

log = logging.getLogger(__name__)

MAGIC = b"BFAE"
FORMAT_VERSION = 1
KEY_BYTES = 32  # AES-256, for data keys and key-encryption keys alike
# AES-GCM's standard nonce, random per encryption. Each body has its own data key; a
# key-encryption key wraps one data key per file, and random 96-bit nonces stay safe for 2^32
# wraps under one key (NIST SP 800-38D, 8.3): rotate to a new key long before that.
NONCE_BYTES = 12
TAG_BYTES = 16
WRAPPED_BYTES = KEY_BYTES + TAG_BYTES
# Key ids are stored in each file's header and in `assets.key_id` (64 characters).
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAKE_A_KEY = "make one with: brandforge assets new-key (or: openssl rand -base64 32)"


class KeyRingError(ValueError):
    """The configured asset keys cannot be used (bad file, bad key, bad id); says where."""


class UnreadableAsset(Exception):
    """A stored asset file this server cannot decrypt: its key id is not in the key ring (or no
    key is configured), its header is malformed, or it fails authentication (altered or
    corrupt). A server-side problem: the message names the store key and key id, never a key."""

    def __init__(self, store_key: str, key_id: str | None, why: str) -> None:
        self.store_key = store_key
        self.key_id = key_id
        named = f" (key id {key_id!r})" if key_id is not None else ""
        super().__init__(f"asset file {store_key!r}{named} cannot be decrypted: {why}")


@dataclass(frozen=True)
class Header:
    """The parsed header of an encrypted asset file."""

    key_id: str
    wrap_nonce: bytes
    wrapped_key: bytes
    body_nonce: bytes
    body_offset: int


class KeyRing:
    """Named key-encryption keys; `newest` wraps the data keys of new files."""

    def __init__(self, keys: Mapping[str, bytes], *, newest: str, source: str = "keys") -> None:
        if not keys:
            raise KeyRingError(f"{source}: no asset key; {MAKE_A_KEY}")
        for key_id, key in keys.items():
            check_key_id(key_id, where=source)
            if len(key) != KEY_BYTES:
                raise KeyRingError(
                    f"{source}: key {key_id!r} has {len(key)} bytes, not {KEY_BYTES}; {MAKE_A_KEY}"
                )
        if newest not in keys:
            raise KeyRingError(f"{source}: the newest key {newest!r} is not among its keys")
        self._keys = dict(keys)
        self.newest = newest
        self.source = source

    def __repr__(self) -> str:  # ids only: a key never reaches a log
        return f"KeyRing({self.source}: {', '.join(self._keys)}; newest {self.newest!r})"

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def key(self, key_id: str) -> bytes:
        return self._keys[key_id]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing | None:
        """The ring the settings configure (`asset_key_file` or `asset_key`); None if neither
        is set, which stores files in clear."""
        if settings.asset_key_file is not None and settings.asset_key is not None:
            raise KeyRingError(
                "both BRANDFORGE_ASSET_KEY_FILE and BRANDFORGE_ASSET_KEY are set: "
                "keep one (a key file holds any number of keys)"
            )
        if settings.asset_key_file is not None:
            return read_key_file(Path(settings.asset_key_file))
        if settings.asset_key is not None:
            return single_key_ring(settings.asset_key.get_secret_value(), "BRANDFORGE_ASSET_KEY")
        return None


def check_key_id(key_id: str, *, where: str = "key id") -> str:
    """`key_id` if it can name a key (1-64 of A-Z a-z 0-9 _ . -), else `KeyRingError`."""
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.match(key_id):
        raise KeyRingError(f"{where}: key id {key_id!r} refused (1-64 of A-Z a-z 0-9 _ . -)")
    return key_id


def decode_key(text: str, *, where: str) -> bytes:
    """The 32 bytes of a base64 key, or `KeyRingError` saying where it was."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyRingError(f"{where}: the key is not base64; {MAKE_A_KEY}") from None
    if len(key) != KEY_BYTES:
        raise KeyRingError(f"{where}: the key has {len(key)} bytes, not {KEY_BYTES}; {MAKE_A_KEY}")
    return key


def derived_key_id(key: bytes) -> str:
    """The id of a key given without one (`BRANDFORGE_ASSET_KEY`): a fingerprint that
    reveals nothing of the key, the same on every replica."""
    return "k-" + hashlib.sha256(b"brandforge asset key id\0" + key).hexdigest()[:16]


def single_key_ring(text: str, source: str) -> KeyRing:
    """The ring of one base64 key, its id derived from it."""
    key = decode_key(text, where=source)
    key_id = derived_key_id(key)
    return KeyRing({key_id: key}, newest=key_id, source=source)


def parse_key_file(text: str, *, source: str) -> KeyRing:
    """The ring of a key file's text: `<key id> <base64 key>` per line, `#` comments and blank
    lines ignored, the last key the newest. Errors name the file and line."""
    keys: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {number}"
        parts = line.split()
        if len(parts) != 2:
            raise KeyRingError(
                f"{where}: expected '<key id> <base64 key>', got {len(parts)} fields"
            )
        key_id = check_key_id(parts[0], where=where)
        if key_id in keys:
            raise KeyRingError(f"{where}: key id {key_id!r} appears twice")
        keys[key_id] = decode_key(parts[1], where=where)
    if not keys:
        raise KeyRingError(f"{source}: no key in the file; {MAKE_A_KEY}")
    return KeyRing(keys, newest=list(keys)[-1], source=source)


def read_key_file(path: Path) -> KeyRing:
    """The ring in the key file `path`; a file others can read is used, with a warning."""
    try:
        text = path.read_text(encoding="ascii")
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise KeyRingError(f"asset key file {path} does not exist; {MAKE_A_KEY}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise KeyRingError(f"asset key file {path} cannot be read: {err}") from None
    if mode & 0o077:
        log.warning("asset key file %s has mode %o: make it owner-only (chmod 600)", path, mode)
    return parse_key_file(text, source=str(path))


def new_key_line(key_id: str) -> str:
    """A key-file line with a fresh random key under `key_id`."""
    check_key_id(key_id)
    return f"{key_id} {base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}\n"


def append_key(path: Path, key_id: str) -> None:
    """Add a fresh key named `key_id` at the end of the key file `path` (made owner-only when
    new), so that it becomes the newest; refuses an id already there."""
    check_key_id(key_id)
    existing = b""
    if path.exists():
        if key_id in read_key_file(path):
            raise KeyRingError(f"asset key file {path}: key id {key_id!r} is already there")
        existing = path.read_bytes()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as f:
        f.write(("\n" if existing and not existing.endswith(b"\n") else "") + new_key_line(key_id))
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------------------------
# The file format
# --------------------------------------------------------------------------------------------


def is_encrypted(blob: bytes) -> bool:
    """Whether stored bytes are an encrypted asset file (else a clear one)."""
    return blob[: len(MAGIC)] == MAGIC


def parse_header(blob: bytes, *, store_key: str) -> Header:
    """The header of an encrypted file, or `UnreadableAsset` if it is malformed."""
    if not is_encrypted(blob) or len(blob) < len(MAGIC) + 2:
        raise UnreadableAsset(store_key, None, "it has no encrypted-asset header")
    version, n = struct.unpack_from("BB", blob, len(MAGIC))
    if version != FORMAT_VERSION:
        raise UnreadableAsset(
            store_key, None, f"format version {version} is unknown here (this server reads 1)"
        )
    start = len(MAGIC) + 2
    body = start + n + NONCE_BYTES + WRAPPED_BYTES + NONCE_BYTES
    if n == 0 or len(blob) < body + TAG_BYTES:
        raise UnreadableAsset(store_key, None, "the file is truncated")
    key_id = blob[start : start + n].decode("ascii", "replace")
    if not KEY_ID_PATTERN.match(key_id):
        raise UnreadableAsset(store_key, None, "its header names no valid key id")
    at = start + n
    return Header(
        key_id=key_id,
        wrap_nonce=blob[at : at + NONCE_BYTES],
        wrapped_key=blob[at + NONCE_BYTES : at + NONCE_BYTES + WRAPPED_BYTES],
        body_nonce=blob[body - NONCE_BYTES : body],
        body_offset=body,
    )


def key_id_of(blob: bytes, *, store_key: str) -> str | None:
    """The key id an encrypted file names; None for a clear file."""
    return parse_header(blob, store_key=store_key).key_id if is_encrypted(blob) else None


def _wrap_aad(key_id: str, store_key: str) -> bytes:
    return b"wrap\0" + key_id.encode() + b"\0" + store_key.encode()


def _body_aad(store_key: str) -> bytes:
    return MAGIC + bytes([FORMAT_VERSION]) + store_key.encode()


def _header(key_id: str, wrap_nonce: bytes, wrapped: bytes, body_nonce: bytes) -> bytes:
    kid = key_id.encode("ascii")
    return MAGIC + bytes([FORMAT_VERSION, len(kid)]) + kid + wrap_nonce + wrapped + body_nonce


def _wrap(ring: KeyRing, data_key: bytes, store_key: str) -> tuple[bytes, bytes]:
    nonce = secrets.token_bytes(NONCE_BYTES)
    wrapped = AESGCM(ring.key(ring.newest)).encrypt(
        nonce, data_key, _wrap_aad(ring.newest, store_key)
    )
    return nonce, wrapped


def _unwrap(ring: KeyRing | None, header: Header, store_key: str) -> bytes:
    if ring is None:
        raise UnreadableAsset(
            store_key,
            header.key_id,
            "no asset key is configured: set BRANDFORGE_ASSET_KEY_FILE with this key id",
        )
    if header.key_id not in ring:
        raise UnreadableAsset(
            store_key,
            header.key_id,
            f"the key id is not in the key ring ({ring.source}: {', '.join(ring.ids)}); "
            "add that key back to the key file",
        )
    aad = _wrap_aad(header.key_id, store_key)
    try:
        return AESGCM(ring.key(header.key_id)).decrypt(header.wrap_nonce, header.wrapped_key, aad)
    except InvalidTag:
        raise UnreadableAsset(
            store_key,
            header.key_id,
            "its wrapped data key fails authentication: the header was altered, the file "
            "belongs to another store key, or the key under this id is not the one that wrote it",
        ) from None


def encrypt(plain: bytes, *, ring: KeyRing, store_key: str) -> bytes:
    """`plain` as an encrypted asset file for `store_key`, under the ring's newest key."""
    data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    body_nonce = secrets.token_bytes(NONCE_BYTES)
    body = AESGCM(data_key).encrypt(body_nonce, bytes(plain), _body_aad(store_key))
    wrap_nonce, wrapped = _wrap(ring, data_key, store_key)
    return _header(ring.newest, wrap_nonce, wrapped, body_nonce) + body


def decrypt(blob: bytes, *, ring: KeyRing | None, store_key: str, encrypted: bool = False) -> bytes:
    """The file bytes of stored `blob`: decrypted if encrypted, as they are if clear.
    `UnreadableAsset` when it cannot be opened or fails authentication, or when `encrypted`
    (its database row records a key id) yet the file is in clear: a clear file put in place
    of an encrypted one outside the server is refused, not served."""
    if not is_encrypted(blob):
        if encrypted:
            raise UnreadableAsset(
                store_key,
                None,
                "its database row says it was stored encrypted, yet the file is in clear: "
                "it was replaced outside the server",
            )
        return blob
    header = parse_header(blob, store_key=store_key)
    data_key = _unwrap(ring, header, store_key)
    try:
        return AESGCM(data_key).decrypt(
            header.body_nonce, blob[header.body_offset :], _body_aad(store_key)
        )
    except InvalidTag:
        raise UnreadableAsset(
            store_key,
            header.key_id,
            "its content fails authentication: the file was altered or corrupted after it "
            "was written, or it belongs to another store key",
        ) from None


def rewrap(blob: bytes, *, ring: KeyRing, store_key: str) -> bytes:
    """Encrypted `blob` with its data key re-wrapped under the ring's newest key; the body
    (nonce and ciphertext) is kept byte for byte. Needs the old key in the ring."""
    header = parse_header(blob, store_key=store_key)
    data_key = _unwrap(ring, header, store_key)
    wrap_nonce, wrapped = _wrap(ring, data_key, store_key)
    return _header(ring.newest, wrap_nonce, wrapped, header.body_nonce) + blob[header.body_offset :]
