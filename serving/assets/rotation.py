"""Key rotation of encrypted asset files (`brandforge assets rotate-key`).

After a new key is added to the key file (it becomes the newest; `brandforge assets
new-key`), every stored file whose data key is wrapped by an older key gets it re-wrapped by
the newest, and its row's `assets.key_id` follows. Only the header changes (the body is kept
byte for byte), so a rotation reads and writes each file once, without decrypting it. Once a
rotation reports nothing left, the old keys can leave the key file.

Resumable: each file is replaced atomically, and rows are committed per batch. A crash between
a file's rewrite and its row's commit leaves a file already under the newest key with its row
still naming the old one; the next run finds that row again, sees the file's header and only
fixes the row. Nothing is lost as long as the old key stays in the ring until a run finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serving.assets.crypto import UnreadableAsset
from serving.assets.store import AssetMissing, AssetStore, BadAssetKey

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# Rows per transaction: a crash loses at most one batch's row updates, which a rerun redoes.
ROTATE_BATCH = 100
CLEAR = "(clear)"  # how a plan names files stored in clear


@dataclass
class RotationResult:
    """What `rotate_keys` did (or, in a dry run, would do).

    `plan`: rows to visit per current key id (`CLEAR` for files in clear, visited only with
    `encrypt_clear`); `rewrapped`: files moved from an older key to `newest`; `encrypted`:
    clear files encrypted; `already`: files found under `newest` whose row named another key (a
    resumed run); `missing`: rows whose file is gone; `failed`: rows whose file cannot be
    opened (id, path, error); `left_clear`: rows in clear not visited.
    """

    newest: str
    dry_run: bool
    plan: dict[str, int] = field(default_factory=dict)
    rewrapped: int = 0
    encrypted: int = 0
    already: int = 0
    missing: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    left_clear: int = 0

    @property
    def counts(self) -> dict[str, Any]:
        """The figures of the audit record (no key, no path)."""
        return {
            "newest": self.newest,
            "planned": sum(self.plan.values()),
            "rewrapped": self.rewrapped,
            "encrypted": self.encrypted,
            "already": self.already,
            "missing": self.missing,
            "failed": len(self.failed),
            "left_clear": self.left_clear,
        }


def _pending(newest: str, encrypt_clear: bool) -> Any:
    """The SQL condition of a row whose file needs work (not deleted, not under `newest`)."""
    from sqlalchemy import or_

    from serving.db.models import Asset

    older = Asset.key_id != newest  # NULL (clear) is not "!=" anything in SQL
    wanted = or_(older, Asset.key_id.is_(None)) if encrypt_clear else older
    return (Asset.status != "deleted") & wanted


def rotation_plan(session: Session, newest: str, *, encrypt_clear: bool) -> dict[str, int]:
    """Rows to visit per current key id, `CLEAR` for clear files (only with `encrypt_clear`)."""
    from sqlalchemy import func, select

    from serving.db.models import Asset

    rows = session.execute(
        select(Asset.key_id, func.count())
        .where(_pending(newest, encrypt_clear))
        .group_by(Asset.key_id)
        .order_by(Asset.key_id)
    )
    return {key_id or CLEAR: int(n) for key_id, n in rows}


def rotate_keys(
    session: Session,
    store: AssetStore,
    *,
    dry_run: bool = False,
    encrypt_clear: bool = False,
    actor: str = "system",
    progress: Callable[[int], None] | None = None,
) -> RotationResult:
    """Re-wrap every stored file under an older key with the store's newest key, and set
    its row's `key_id`; with `encrypt_clear`, encrypt the files stored in clear as well.

    COMMITS once per `ROTATE_BATCH` rows (give it a session with no other pending work), then
    writes one `asset.rotate_key` audit row with the counts. `progress(n)` is called after each
    row. A dry run reads no file and changes nothing: the plan only. A file that cannot be
    opened (its key is not in the ring, it fails authentication) is listed in `failed` and
    its row left as it is; if the store itself fails, the rows done so far are committed, the
    audit row records the error, and the error is raised.
    """
    from sqlalchemy import func, select

    from serving.auth import audit
    from serving.db.models import Asset

    if store.keys is None:
        raise ValueError(
            "no asset key is configured: set BRANDFORGE_ASSET_KEY_FILE (its last key is the "
            "newest) before rotating"
        )
    newest = store.keys.newest
    result = RotationResult(newest=newest, dry_run=dry_run)
    result.plan = rotation_plan(session, newest, encrypt_clear=encrypt_clear)
    if not encrypt_clear:
        clear = select(func.count()).where(Asset.status != "deleted", Asset.key_id.is_(None))
        result.left_clear = int(session.scalar(clear) or 0)
    if dry_run:
        return result
    error = _rotate_batches(session, store, result, encrypt_clear=encrypt_clear, progress=progress)
    detail: dict[str, Any] = {**result.counts, "store": store.url()}
    if error is not None:
        detail["error"] = f"{type(error).__name__}: {error}"
    audit(session, actor, "asset.rotate_key", None, **detail)
    session.commit()
    log.info("asset key rotation to %s: %s", newest, result.counts)
    if error is not None:
        raise error
    return result


def _rotate_batches(
    session: Session,
    store: AssetStore,
    result: RotationResult,
    *,
    encrypt_clear: bool,
    progress: Callable[[int], None] | None,
) -> Exception | None:
    """Visit the pending rows in id order, committing per batch; the store's error, if any."""
    from sqlalchemy import select

    from serving.db.models import Asset

    after = ""
    while True:
        query = (
            select(Asset)
            .where(_pending(result.newest, encrypt_clear), Asset.id > after)
            .order_by(Asset.id)
            .limit(ROTATE_BATCH)
        )
        rows = list(session.scalars(query))
        if not rows:
            return None
        for row in rows:
            try:
                _rotate_one(row, store, result, encrypt_clear=encrypt_clear)
            except Exception as err:  # the store failed: keep what is done, then report
                session.commit()
                return err
            if progress is not None:
                progress(1)
        after = rows[-1].id
        session.commit()


def _rotate_one(
    row: Any, store: AssetStore, result: RotationResult, *, encrypt_clear: bool
) -> None:
    """Re-wrap one row's file and set its key id; counts what happened in `result`."""
    try:
        before, now = store.rewrap(row.path, encrypt_clear=encrypt_clear)
    except (AssetMissing, BadAssetKey):
        result.missing += 1
        return
    except UnreadableAsset as err:
        log.warning("asset %s: %s", row.id, err)
        result.failed.append({"id": row.id, "path": row.path, "error": str(err)})
        return
    if before is None and now is None:  # in clear, though its row named a key: say so
        result.left_clear += 1
    elif before is None:
        result.encrypted += 1
    elif before == now:
        result.already += 1
    else:
        result.rewrapped += 1
    row.key_id = now
