"""The asset store: generated files addressed by opaque keys (DESIGN.md, decisions 2, 6, 9).

One class, `AssetStore`, over any fsspec filesystem: a local folder when embedded (the
settings' `asset_dir`), an S3-compatible bucket in production (`BRANDFORGE_ASSET_STORE=
s3://bucket/prefix`), chosen by settings alone. Files are addressed by keys the server makes
(`asset_key(brand, asset_id, ext)` → `acme/Xy/Xy3....png`), never by a path a client sent; a
key that could leave the store's root is refused before any I/O.

Reads go through a bounded LRU cache of bytes, per process. A `put` or `delete` through the
same store evicts the key, so this process never serves bytes it has replaced or deleted. The
cache is not shared between processes: keys are written once (ids are random and never
reused), so the one stale case is a file deleted by another process (`brandforge assets purge`)
still served from a server's cache until evicted. Callers that must not serve a purged asset
check its database row (`status`) first, which the HTTP API does anyway for access control.

Encryption at rest: given a key ring (`serving.assets.crypto`, from the settings' asset key),
`put` stores each file encrypted under the ring's newest key and returns its key id (the row's
`assets.key_id`), and `get` decrypts; files stored in clear before a key was set are read as
they are. The cache holds decrypted bytes, in this process's memory only. On S3 the settings'
server-side encryption (SSE-S3 or SSE-KMS) is asked for on every upload as well. A local
store's folders are created owner-only (0700) and its files 0600.

Retention (when an asset expires, purging, statistics) is `serving.assets.retention`.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.assets.crypto import KeyRing, decrypt, encrypt, is_encrypted, key_id_of, rewrap

if TYPE_CHECKING:
    from brandforge.settings import Settings

log = logging.getLogger(__name__)

# Keys: relative paths of these characters only. S3 allows 1024 bytes per key; local file
# systems 255 per name, which the ids we make stay far below.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.\-/]+$")
KEY_MAX = 1024
# The retention entry that applies to every brand not named.
DEFAULT_BRAND = "*"
ASSET_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{2,64}$")
EXT_PATTERN = re.compile(r"^[a-z0-9]{1,8}$")
# A local store holds prompts' pictures: readable by its owner only, like the database.
DIR_MODE = 0o700
FILE_MODE = 0o600


class AssetMissing(KeyError):
    """The key names no file in the store (never written, deleted or purged)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else "asset missing"


class BadAssetKey(ValueError):
    """A key that is not a plain relative path inside the store."""


def check_key(key: str) -> str:
    """`key` if it is a valid asset key, else `BadAssetKey` saying why.

    Valid: 1 to 1024 characters of letters, digits, `_`, `-`, `.` and `/`; no leading or
    trailing `/`, no empty segment, and no segment starting with `.` (which rules out `.` and
    `..`, and hidden files such as the store's own temporary files).
    """
    if not isinstance(key, str):
        raise BadAssetKey(f"asset key must be a string, got {type(key).__name__}")
    why = None
    if not key:
        why = "it is empty"
    elif len(key) > KEY_MAX:
        why = f"it is {len(key)} characters long (at most {KEY_MAX})"
    elif not KEY_PATTERN.match(key):
        bad = sorted({c for c in key if not KEY_PATTERN.match(c)})
        why = f"it contains {''.join(bad)!r}"
    elif key.startswith("/"):
        why = "it starts with '/' (keys are relative to the store)"
    elif key.endswith("/"):
        why = "it ends with '/' (a key names a file, not a folder)"
    elif any(not part for part in key.split("/")):
        why = "it has an empty segment ('//')"
    elif any(part.startswith(".") for part in key.split("/")):
        why = "a segment starts with '.' (no '.', '..' or hidden files)"
    if why:
        raise BadAssetKey(
            f"asset key {key!r} refused: {why}; a key is a relative path of letters, digits, "
            "'_', '-', '.' and '/', e.g. acme/Xy/Xy3d.png"
        )
    return key


def asset_key(brand: str, asset_id: str, ext: str) -> str:
    """The store key of an asset: `<brand>/<first 2 characters of the id>/<id>.<ext>`.

    The two-character shard keeps local folders small (64² of them per brand) and spreads S3
    request load across prefixes.
    """
    from brandforge.names import brand_problem

    problem = brand_problem(brand)
    if problem is not None:
        raise BadAssetKey(problem)
    if not ASSET_ID_PATTERN.match(asset_id):
        raise BadAssetKey(f"asset id {asset_id!r} is not an id (2-64 of A-Z a-z 0-9 _ -)")
    ext = ext.lower().lstrip(".")
    if not EXT_PATTERN.match(ext):
        raise BadAssetKey(f"file extension {ext!r} refused (1-8 lowercase letters or digits)")
    return check_key(f"{brand}/{asset_id[:2]}/{asset_id}.{ext}")


class AssetStore:
    """Asset files on a local folder or object storage, by opaque key, with a byte cache.

    Thread-safe: one store may serve every request thread of a process.
    """

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, url: str | None = None, cache: bool = True
    ) -> AssetStore:
        """The store the settings name: `url` if given, else `asset_store`, else the local
        folder `asset_dir`; with `asset_store_options`, the asset key ring and, on S3, the
        server-side encryption settings; cache of `asset_cache_mb` (none if not `cache`).
        Raises `serving.assets.crypto.KeyRingError` (a `ValueError`) for unusable keys."""
        from brandforge.settings import get_settings

        settings = settings or get_settings()
        url = url or settings.asset_store or str(settings.asset_dir)
        options = dict(settings.asset_store_options)
        sse = s3_encryption_kwargs(settings.asset_s3_sse, settings.asset_s3_kms_key_id)
        if sse and url.partition("://")[0] in ("s3", "s3a"):
            options["s3_additional_kwargs"] = {**options.get("s3_additional_kwargs", {}), **sse}
        elif sse:
            log.warning("BRANDFORGE_ASSET_S3_SSE is ignored: the asset store %s is not S3", url)
        return cls(
            url,
            options=options,
            cache_bytes=settings.asset_cache_mb * 2**20 if cache else 0,
            keys=KeyRing.from_settings(settings),
        )

    def __init__(
        self,
        url: str,
        *,
        options: dict[str, Any] | None = None,
        cache_bytes: int = 64 * 2**20,
        keys: KeyRing | None = None,
    ) -> None:
        """Open the store at `url` (fsspec URL or local path; `~` and a relative path are
        resolved now), encrypting new files with `keys` (None: in clear).

        Raises `ValueError` for a URL fsspec cannot use (unknown protocol, no bucket) and
        `ImportError` when the protocol's package is missing (s3fs for `s3://`). Nothing is
        read or written until the first call, so a store that is down fails there.
        """
        from fsspec.core import url_to_fs
        from fsspec.implementations.local import LocalFileSystem

        if not url or not str(url).strip():
            raise ValueError("asset store URL is empty: give a folder or s3://bucket/prefix")
        if cache_bytes < 0:
            raise ValueError(f"cache_bytes = {cache_bytes}: give 0 (no cache) or more")
        url = str(url) if "://" in str(url) else os.path.expanduser(str(url))
        try:
            fs, root = url_to_fs(url, **(options or {}))
        except ImportError as err:
            raise ImportError(
                f"asset store {url!r} needs a package that is not installed ({err}); "
                "for s3:// install s3fs (pip install 'brandforge[s3]')"
            ) from err
        except (ValueError, TypeError) as err:
            raise ValueError(f"cannot use asset store URL {url!r}: {err}") from err
        self._fs = fs
        self._local = isinstance(fs, LocalFileSystem)
        self._root = root.rstrip("/")
        if not self._root and not self._local:
            raise ValueError(f"asset store URL {url!r} names no bucket (s3://bucket/prefix)")
        self._cache_capacity = int(cache_bytes)
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._hits = 0
        self._misses = 0
        # A read that started before a put/delete of its key must not cache what it read:
        # keys with reads in flight, and those of them written meanwhile.
        self._reading: dict[str, int] = {}
        self._dirty: set[str] = set()
        # Cached keys whose file was in clear: never served from the cache to a caller that
        # expects an encrypted file (see `get`).
        self._clear: set[str] = set()
        self._lock = threading.Lock()
        self.keys = keys

    def __repr__(self) -> str:
        return f"AssetStore({self.url()!r})"

    def url(self) -> str:
        """The store's root as a URL (`file:///srv/assets`, `s3://bucket/prefix`); no secret."""
        return self._fs.unstrip_protocol(self._root or "/")

    def _path(self, key: str) -> str:
        return f"{self._root}/{check_key(key)}"

    def put(self, key: str, data: bytes) -> str | None:
        """Write `data` under `key`, replacing any file there; the id of the key that
        encrypts it (for `assets.key_id`), or None when it is stored in clear.

        Atomic on local disk (a temporary file in the same folder, flushed, then renamed over
        the target), so a reader or a crash never sees half a file; an S3 PUT is atomic by
        itself. The key is evicted from the cache.
        """
        path = self._path(key)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"asset {key!r}: data must be bytes, got {type(data).__name__}")
        stored = bytes(data) if self.keys is None else encrypt(data, ring=self.keys, store_key=key)
        self._invalidate(key)
        self._write(path, stored)
        self._invalidate(key)
        return None if self.keys is None else self.keys.newest

    def _write(self, path: str, stored: bytes) -> None:
        if self._local:
            _atomic_write(Path(path), stored)
        else:
            self._fs.pipe_file(path, stored)
            self._fs.invalidate_cache(path)

    def get(self, key: str, *, encrypted: bool = False) -> bytes:
        """The bytes stored under `key` (decrypted), from the cache when there; `AssetMissing`
        if none, `serving.assets.crypto.UnreadableAsset` if it cannot be decrypted or if
        `encrypted` (the asset's row has a key id) and the file is in clear."""
        path = self._path(key)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and not (encrypted and key in self._clear):
                self._cache.move_to_end(key)
                self._hits += 1
                return cached
            self._misses += 1
            self._reading[key] = self._reading.get(key, 0) + 1
        data: bytes | None = None
        try:
            stored = self._fs.cat_file(path)
            data = decrypt(stored, ring=self.keys, store_key=key, encrypted=encrypted)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass
        finally:
            with self._lock:
                left = self._reading[key] - 1
                fresh = key not in self._dirty
                if left:
                    self._reading[key] = left
                else:
                    del self._reading[key]
                    self._dirty.discard(key)
                if data is not None and fresh:
                    self._remember(key, data, clear=not is_encrypted(stored))
        if data is None:
            raise AssetMissing(
                f"asset {key!r} is not in the asset store {self.url()} "
                "(never written, deleted, or purged after its retention period)"
            )
        return data

    def rewrap(self, key: str, *, encrypt_clear: bool = False) -> tuple[str | None, str | None]:
        """Re-wrap the data key of the file under `key` with the ring's newest key, the body
        untouched: (key id before, key id after). A file already under the newest key is left
        as it is; a clear file too, unless `encrypt_clear` (then it is encrypted whole). The
        write is atomic, so a crash leaves the old file or the new one, both readable."""
        if self.keys is None:
            raise ValueError("no asset key is configured: set BRANDFORGE_ASSET_KEY_FILE")
        path = self._path(key)
        try:
            stored = self._fs.cat_file(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise AssetMissing(f"asset {key!r} is not in the asset store {self.url()}") from None
        before = key_id_of(stored, store_key=key)
        if before == self.keys.newest or (before is None and not encrypt_clear):
            return before, before
        if is_encrypted(stored):
            self._write(path, rewrap(stored, ring=self.keys, store_key=key))
        else:
            self._write(path, encrypt(stored, ring=self.keys, store_key=key))
        return before, self.keys.newest

    def exists(self, key: str) -> bool:
        """Whether a file is stored under `key` (asks the store, not the cache)."""
        return bool(self._fs.isfile(self._path(key)))

    def delete(self, key: str) -> bool:
        """Delete the file under `key`; True if there was one. Evicts the key from the cache."""
        path = self._path(key)
        self._invalidate(key)
        try:
            if self._local:
                os.remove(path)
                return True
            # S3 deletes a missing key without complaint, so ask first.
            if not self._fs.isfile(path):
                return False
            self._fs.rm_file(path)
            return True
        except FileNotFoundError:
            return False
        finally:
            if not self._local:
                self._fs.invalidate_cache(path)
            self._invalidate(key)

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every stored file under `prefix` (a key prefix such as `acme/`), key → size in bytes.

        One listing of the store (paginated on S3); files that are not valid keys (temporary
        files of interrupted writes) are left out. Empty when the store does not exist yet.
        """
        base = f"{self._root}/{prefix}".rstrip("/") if prefix else self._root
        try:
            found = self._fs.find(base or "/", detail=True)
        except FileNotFoundError:
            return {}
        out: dict[str, int] = {}
        for path, info in found.items():
            if info.get("type", "file") != "file":
                continue
            key = path[len(self._root) + 1 :] if self._root else path.lstrip("/")
            try:
                check_key(key)
            except BadAssetKey:
                continue
            out[key] = int(info.get("size") or 0)
        return out

    @property
    def cache_stats(self) -> dict[str, int]:
        """Cache counters: `hits`, `misses`, `bytes` held, `entries`, `capacity` (bytes)."""
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "bytes": self._cache_bytes,
                "entries": len(self._cache),
                "capacity": self._cache_capacity,
            }

    def _remember(self, key: str, data: bytes, *, clear: bool) -> None:
        # Caller holds the lock. An entry larger than the whole cache is not kept: it would
        # evict everything else for one file.
        if len(data) > self._cache_capacity:
            return
        old = self._cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= len(old)
        self._cache[key] = data
        self._cache_bytes += len(data)
        if clear:
            self._clear.add(key)
        else:
            self._clear.discard(key)
        while self._cache_bytes > self._cache_capacity:
            evicted_key, evicted = self._cache.popitem(last=False)
            self._cache_bytes -= len(evicted)
            self._clear.discard(evicted_key)

    def _invalidate(self, key: str) -> None:
        with self._lock:
            old = self._cache.pop(key, None)
            self._clear.discard(key)
            if old is not None:
                self._cache_bytes -= len(old)
            if key in self._reading:
                self._dirty.add(key)


def s3_encryption_kwargs(sse: str | None, kms_key_id: str | None) -> dict[str, str]:
    """The S3 request parameters of server-side encryption `sse` ("AES256", "aws:kms" with an
    optional KMS key id), as s3fs passes them on every upload (`s3_additional_kwargs`)."""
    if sse is None:
        return {}
    if sse not in ("AES256", "aws:kms"):
        raise ValueError(f"S3 server-side encryption {sse!r}: give 'AES256' or 'aws:kms'")
    if kms_key_id is not None and sse != "aws:kms":
        raise ValueError("a KMS key id needs server-side encryption 'aws:kms'")
    out = {"ServerSideEncryption": sse}
    if kms_key_id is not None:
        out["SSEKMSKeyId"] = kms_key_id
    return out


def _private_dirs(folder: Path) -> None:
    """Create `folder` and its missing parents owner-only (pathlib gives parents the umask's
    mode); folders that exist are left as they are."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:  # another writer made it meanwhile
            pass


def _atomic_write(target: Path, data: bytes) -> None:
    _private_dirs(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600 already; say so whatever it does
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
