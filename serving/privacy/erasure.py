"""Erasing one data subject (GDPR Art. 17): `brandforge privacy erase` and `POST
/v1/privacy/erase`.

    subject ──normalise, keyed hash──► subject_refs ──┐
            ──in clear, whole words──► stored texts ──┴─► plan: what goes ──► erase (one audit row)

`plan_erasure` finds what a subject's erasure takes: every object a reference of its hash
points to (recorded when the object was written, before redaction), and every stored text that
still holds the subject in clear (a customer id redaction does not know), as whole words. An
object takes what hangs on it: a campaign its items, an item its assets, since their pictures
may show its texts. `erase` then deletes the asset files, then the rows (assets with their
events, items, campaigns) and scrubs the audit rows, which stay as the trail of who did what,
with every text of their detail replaced by `[erased]`; the objects' references go with them;
and one `privacy.erase` audit row records the counts and the subject's hash, never the subject.

`brands` limits both to objects of those brands (an admin of one brand); None is every brand,
including audit rows of no brand. Pure decisions (`in_scope`, `mentions`, `scrubbed`) are
functions without I/O.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Text, delete, or_, select, type_coerce

from serving.db.models import Asset, AssetEvent, AuditLog, Campaign, CampaignItem, SubjectRef
from serving.privacy.subjects import privacy_key, subject_hash, subject_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

KINDS = ("asset", "campaign", "campaign_item", "audit_log")
ERASED = "[erased]"
# A subject shorter than this is not searched in clear: it would match too much.
CLEAR_MIN = 4
_CHUNK = 500  # ids per IN (...) list


class FileStore(Protocol):
    """The part of `serving.assets.store.AssetStore` erasure uses."""

    def delete(self, key: str) -> bool: ...


@dataclass(frozen=True)
class Target:
    """One stored object of the subject and what erasure does to it (`delete` or `scrub`)."""

    kind: str
    id: str
    brand: str | None
    action: str
    path: str | None = None  # an asset's file in the store


@dataclass
class ErasurePlan:
    """What erasing a subject takes, in the order it is done."""

    subject_hash: str
    brands: frozenset[str] | None
    targets: list[Target] = field(default_factory=list)

    def of(self, kind: str) -> list[Target]:
        return [t for t in self.targets if t.kind == kind]

    def counts(self) -> dict[str, int]:
        """Objects per kind: assets, campaigns, campaign_items, audit_records."""
        names = {"asset": "assets", "campaign": "campaigns", "campaign_item": "campaign_items"}
        return {names.get(k, "audit_records"): len(self.of(k)) for k in KINDS}


@dataclass
class ErasureResult:
    plan: ErasurePlan
    dry_run: bool
    files_deleted: int = 0
    files_missing: int = 0

    def summary(self) -> dict[str, Any]:
        """The counts the audit row and the answers give."""
        return {
            "subject_hash": self.plan.subject_hash,
            "dry_run": self.dry_run,
            **self.plan.counts(),
            "files_deleted": self.files_deleted,
            "files_missing": self.files_missing,
        }


# --------------------------------------------------------------------------------------------
# Pure decisions
# --------------------------------------------------------------------------------------------


def in_scope(brand: str | None, brands: frozenset[str] | None) -> bool:
    """Whether an object of `brand` may be erased by a caller of `brands` (None: every brand;
    an object of no brand, an audit row of a key's creation, only then)."""
    return brands is None or (brand is not None and brand in brands)


def mentions(text: str | None, subject: str) -> bool:
    """Whether `text` holds `subject` as whole words, ignoring case (`CUST-42` is in
    "for cust-42." but not in "cust-420")."""
    if not text or not subject.strip():
        return False
    pattern = r"(?<!\w)" + re.escape(subject.strip().casefold()) + r"(?!\w)"
    return re.search(pattern, text.casefold()) is not None


def scrubbed(detail: Any) -> Any:
    """An audit detail with every text in it replaced by `[erased]`; numbers, flags and the
    shape stay, so the row still says what was done, to how many, when."""
    if isinstance(detail, str):
        return ERASED
    if isinstance(detail, dict):
        return {k: scrubbed(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [scrubbed(v) for v in detail]
    return detail


# --------------------------------------------------------------------------------------------
# Finding (reads only)
# --------------------------------------------------------------------------------------------


def _chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    items = sorted(values)
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _ints(values: Iterable[str]) -> set[int]:
    return {int(v) for v in values if v.isdigit()}


def plan_erasure(session: Session, subject: str, *, brands: frozenset[str] | None) -> ErasurePlan:
    """Every stored object of `subject` within `brands` (see the module docstring)."""
    digest = subject_hash(privacy_key(session), subject_of(subject))
    found: dict[str, set[str]] = defaultdict(set)
    for kind, object_id in session.execute(
        select(SubjectRef.kind, SubjectRef.object_id).where(SubjectRef.subject_hash == digest)
    ):
        found[kind].add(object_id)
    if len(subject.strip()) >= CLEAR_MIN:
        for kind, ids in _in_clear(session, subject).items():
            found[kind] |= ids
    plan = ErasurePlan(subject_hash=digest, brands=brands)
    campaigns = _campaigns(session, found["campaign"], plan)
    items = _items(session, _ints(found["campaign_item"]), campaigns, plan)
    _assets(session, found["asset"], items, campaigns, plan)
    for chunk in _chunks(_ints(found["audit_log"])):
        for row_id, brand in session.execute(
            select(AuditLog.id, AuditLog.brand).where(AuditLog.id.in_(chunk))
        ):
            if in_scope(brand, brands):
                plan.targets.append(Target("audit_log", str(row_id), brand, "scrub"))
    return plan


def _in_clear(session: Session, subject: str) -> dict[str, set[str]]:
    """Objects whose stored texts hold `subject` in clear: a case-insensitive LIKE narrows,
    `mentions` decides (whole words)."""
    needle = subject.strip()
    searches: Sequence[tuple[str, Any, Sequence[Any]]] = (
        ("asset", Asset.id, (Asset.prompt, Asset.negative_prompt, Asset.review_reason)),
        ("campaign_item", CampaignItem.id, (CampaignItem.prompt,)),
        ("campaign", Campaign.id, (type_coerce(Campaign.spec, Text),)),
        ("audit_log", AuditLog.id, (type_coerce(AuditLog.detail, Text),)),
    )
    out: dict[str, set[str]] = defaultdict(set)
    for kind, id_column, columns in searches:
        query = select(id_column, *columns).where(
            or_(*(c.icontains(needle, autoescape=True) for c in columns))
        )
        for row in session.execute(query):
            if any(mentions(text, needle) for text in row[1:]):
                out[kind].add(str(row[0]))
    return out


def _campaigns(session: Session, ids: set[str], plan: ErasurePlan) -> list[str]:
    kept = []
    for chunk in _chunks(ids):
        for cid, brand in session.execute(
            select(Campaign.id, Campaign.brand).where(Campaign.id.in_(chunk))
        ):
            if in_scope(brand, plan.brands):
                plan.targets.append(Target("campaign", cid, brand, "delete"))
                kept.append(cid)
    return kept


def _items(session: Session, ids: set[int], campaigns: list[str], plan: ErasurePlan) -> list[int]:
    """The items named, and every item of a campaign that goes."""
    rows: dict[int, str] = {}
    for chunk in _chunks(ids):
        query = select(CampaignItem.id, CampaignItem.brand).where(CampaignItem.id.in_(chunk))
        rows.update(dict(session.execute(query).tuples().all()))
    for chunk in _chunks(campaigns):
        query = select(CampaignItem.id, CampaignItem.brand).where(
            CampaignItem.campaign_id.in_(chunk)
        )
        rows.update(dict(session.execute(query).tuples().all()))
    kept = sorted(i for i, brand in rows.items() if in_scope(brand, plan.brands))
    plan.targets.extend(Target("campaign_item", str(i), rows[i], "delete") for i in kept)
    return kept


def _assets(
    session: Session, ids: set[str], items: list[int], campaigns: list[str], plan: ErasurePlan
) -> None:
    """The assets named, and every asset of an item or a campaign that goes."""
    rows: dict[str, tuple[str, str]] = {}
    wheres = [
        *(Asset.id.in_(c) for c in _chunks(ids)),
        *(Asset.item_id.in_(c) for c in _chunks(items)),
        *(Asset.campaign_id.in_(c) for c in _chunks(campaigns)),
    ]
    for where in wheres:
        for asset_id, brand, path in session.execute(
            select(Asset.id, Asset.brand, Asset.path).where(where)
        ):
            rows[asset_id] = (brand, path)
    for asset_id in sorted(rows):
        brand, path = rows[asset_id]
        if in_scope(brand, plan.brands):
            plan.targets.append(Target("asset", asset_id, brand, "delete", path))


# --------------------------------------------------------------------------------------------
# Erasing (writes, commits)
# --------------------------------------------------------------------------------------------


def erase(
    session: Session, store: FileStore, plan: ErasurePlan, *, actor: str, dry_run: bool = False
) -> ErasureResult:
    """Carry `plan` out and commit, ending with one `privacy.erase` audit row; a dry run
    changes nothing. Files go first: if the store fails, nothing is committed and a rerun
    finds the same objects (their files then count as missing)."""
    from serving.auth import audit

    result = ErasureResult(plan=plan, dry_run=dry_run)
    if dry_run:
        return result
    for target in plan.of("asset"):
        if target.path and store.delete(target.path):
            result.files_deleted += 1
        else:
            result.files_missing += 1
    _delete_rows(session, plan)
    for target in plan.of("audit_log"):
        row = session.get(AuditLog, int(target.id))
        if row is not None:
            row.detail = scrubbed(row.detail)
    for kind in KINDS:
        for chunk in _chunks(t.id for t in plan.of(kind)):
            session.execute(
                delete(SubjectRef).where(SubjectRef.kind == kind, SubjectRef.object_id.in_(chunk))
            )
    scope = sorted(plan.brands) if plan.brands is not None else None
    brand = scope[0] if scope is not None and len(scope) == 1 else None
    audit(session, actor, "privacy.erase", brand, brands=scope or "*", **result.summary())
    session.commit()
    log.info("erased subject %s: %s", plan.subject_hash[:12], plan.counts())
    return result


def _delete_rows(session: Session, plan: ErasurePlan) -> None:
    """Assets (with their events), then items, then campaigns; an item that stays loses the
    ids of its erased assets."""
    assets = [t.id for t in plan.of("asset")]
    items = _ints(t.id for t in plan.of("campaign_item"))
    for chunk in _chunks(assets):
        kept_items = session.scalars(
            select(CampaignItem)
            .join(Asset, Asset.item_id == CampaignItem.id)
            .where(Asset.id.in_(chunk), CampaignItem.id.not_in(items or {-1}))
        ).unique()
        gone = set(chunk)
        for item in kept_items:
            item.asset_ids = [a for a in item.asset_ids or [] if a not in gone]
        session.execute(delete(AssetEvent).where(AssetEvent.asset_id.in_(chunk)))
        session.execute(delete(Asset).where(Asset.id.in_(chunk)))
    for int_chunk in _chunks(items):
        session.execute(delete(CampaignItem).where(CampaignItem.id.in_(int_chunk)))
    for chunk in _chunks(t.id for t in plan.of("campaign")):
        session.execute(delete(Campaign).where(Campaign.id.in_(chunk)))
