"""Retention: when an asset expires, purging expired assets (files, then rows), and statistics
of what the store holds per brand and status (`brandforge assets purge|stats`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from serving.assets.store import DEFAULT_BRAND, AssetStore, BadAssetKey

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# Rows purged per transaction: a crash loses at most one batch's bookkeeping, and a rerun
# finds those rows again (their files then count as missing).
PURGE_BATCH = 100


# --------------------------------------------------------------------------------------------
# Retention
# --------------------------------------------------------------------------------------------


def expiry_for(
    brand: str, created_at: datetime, retention_days: dict[str, float]
) -> datetime | None:
    """When an asset of `brand` created at `created_at` expires: its brand's retention, else
    the `*` entry's, else None (kept forever)."""
    days = retention_days.get(brand, retention_days.get(DEFAULT_BRAND))
    if days is None:
        return None
    if days < 0:
        raise ValueError(f"retention_days[{brand!r}] = {days}: give a number of days >= 0")
    if created_at.tzinfo is None or created_at.utcoffset() is None:
        raise ValueError(f"created_at {created_at!r} is naive: give a timezone-aware datetime")
    return created_at + timedelta(days=days)


@dataclass
class PurgeResult:
    """What `purge_expired` deleted (or, in a dry run, would delete).

    `assets` has one dict per asset: id, brand, path, expires_at, status (after the run) and
    file (`deleted`, `missing`; in a dry run `present` or `missing`).
    """

    assets: list[dict[str, Any]] = field(default_factory=list)
    deleted_files: int = 0
    missing_files: int = 0
    dry_run: bool = False


def purge_expired(
    session: Session,
    store: AssetStore,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    brand: str | None = None,
    limit: int | None = None,
    actor: str = "system",
) -> PurgeResult:
    """Delete the files of assets whose `expires_at` has passed and mark their rows deleted.

    Each asset with `expires_at <= now` and a status other than `deleted` (optionally of one
    `brand`, at most `limit` of them, oldest expiry first) loses its file; its row gets
    `status='deleted'` and `deleted_at=now` and stays, for the audit trail. A file already gone
    counts as missing, not as an error. Unlike the rest of `serving`, this COMMITS, once per
    batch of `PURGE_BATCH` rows, so a crash midway loses nothing and a rerun carries on: give
    it a session with no other pending work. A real run ends with one `asset.purge` audit row
    holding the counts (written by `actor`), also when nothing had expired.

    A dry run changes nothing (no file, row or audit row) and lists what would go, each
    file checked for presence. If the store fails (unreachable, permission refused), the rows
    done so far are committed, an audit row records the error, and the error is raised.
    """
    from sqlalchemy import select

    from serving.auth import audit
    from serving.db.models import Asset, utcnow

    now = now or utcnow()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now {now!r} is naive: give a timezone-aware (UTC) datetime")
    if limit is not None and limit < 0:
        raise ValueError(f"limit = {limit}: give a number of assets >= 0")

    def due(batch: int | None) -> list[Asset]:
        query = (
            select(Asset)
            .where(Asset.expires_at.is_not(None), Asset.expires_at <= now)
            .where(Asset.status != "deleted")
            .order_by(Asset.expires_at, Asset.id)
            .limit(batch)
        )
        if brand is not None:
            query = query.where(Asset.brand == brand)
        return list(session.scalars(query))

    result = PurgeResult(dry_run=dry_run)
    if dry_run:
        for row in due(limit):
            present = store.exists(row.path)
            result.deleted_files += present
            result.missing_files += not present
            result.assets.append(_purged(row, "present" if present else "missing"))
        return result

    error = _purge_batches(session, store, due, result, now=now, limit=limit)
    detail: dict[str, Any] = {
        "assets": len(result.assets),
        "deleted_files": result.deleted_files,
        "missing_files": result.missing_files,
        "store": store.url(),
        "now": now.isoformat(),
    }
    if error is not None:
        detail["error"] = f"{type(error).__name__}: {error}"
    audit(session, actor, "asset.purge", brand, **detail)
    session.commit()
    log.info(
        "purged %d expired assets (%d files deleted, %d already missing) from %s",
        len(result.assets),
        result.deleted_files,
        result.missing_files,
        store.url(),
    )
    if error is not None:
        raise error
    return result


def _purge_batches(
    session: Session,
    store: AssetStore,
    due: Callable[[int | None], list[Any]],
    result: PurgeResult,
    *,
    now: datetime,
    limit: int | None,
) -> Exception | None:
    """Delete files and mark rows, committing per batch; the store's error, if it failed."""
    while limit is None or len(result.assets) < limit:
        size = PURGE_BATCH if limit is None else min(PURGE_BATCH, limit - len(result.assets))
        rows = due(size)
        if not rows:
            return None
        for row in rows:
            try:
                existed = store.delete(row.path)
            except BadAssetKey:
                # A path no key can be (edited by hand?) names no file this store holds.
                log.warning("asset %s: path %r is no store key; marked deleted", row.id, row.path)
                existed = False
            except Exception as err:  # the store failed: keep what is done, then report
                session.commit()
                return err
            row.status = "deleted"
            row.deleted_at = now
            result.deleted_files += existed
            result.missing_files += not existed
            result.assets.append(_purged(row, "deleted" if existed else "missing"))
        session.commit()
    return None


def _purged(row: Any, file: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "brand": row.brand,
        "path": row.path,
        "expires_at": row.expires_at,
        "status": row.status,
        "file": file,
    }


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


@dataclass
class AssetStats:
    """Assets per brand and status, with the bytes their files take in the store.

    `groups`: dicts with brand, status, count, files (how many of those rows have a file),
    bytes (None when the store was not listed). `orphan_files`/`orphan_bytes`: files in the
    store that no row points to; `missing_files`: rows not deleted whose file is absent.
    """

    groups: list[dict[str, Any]] = field(default_factory=list)
    orphan_files: int = 0
    orphan_bytes: int = 0
    missing_files: int = 0
    listed: bool = False


def asset_stats(session: Session, store: AssetStore | None = None) -> AssetStats:
    """Count assets per (brand, status) from the database; with `store`, also the bytes of
    their files, orphan files and missing files, from one listing of the store.

    The database keeps no file sizes, so bytes come from the store itself.
    """
    from sqlalchemy import func, select

    from serving.db.models import Asset

    if store is None:
        query = (
            select(Asset.brand, Asset.status, func.count())
            .group_by(Asset.brand, Asset.status)
            .order_by(Asset.brand, Asset.status)
        )
        return AssetStats(
            groups=[
                {"brand": b, "status": s, "count": n, "files": None, "bytes": None}
                for b, s, n in session.execute(query)
            ]
        )

    sizes = store.sizes()
    seen: set[str] = set()
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    stats = AssetStats(listed=True)
    for brand, status, path in session.execute(select(Asset.brand, Asset.status, Asset.path)):
        group = groups.setdefault(
            (brand, status),
            {"brand": brand, "status": status, "count": 0, "files": 0, "bytes": 0},
        )
        group["count"] += 1
        size = sizes.get(path)
        if size is not None:
            seen.add(path)
            group["files"] += 1
            group["bytes"] += size
        elif status != "deleted":
            stats.missing_files += 1
    stats.groups = [groups[k] for k in sorted(groups)]
    orphans = [size for key, size in sizes.items() if key not in seen]
    stats.orphan_files = len(orphans)
    stats.orphan_bytes = sum(orphans)
    return stats
