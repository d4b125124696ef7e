"""The serving tier's durable state: the tables of one SQLAlchemy database (DESIGN.md, 6).

Tables: `api_keys` and `audit_log` (access control, see `serving.auth`), `assets` and
`asset_events` (metadata of generated images and their impressions and clicks; the files live in
the asset store, addressed by the opaque id, never by a client-supplied path), `campaigns` and
`campaign_items` (the batch queue), `rollouts`, `rollout_decisions` and `request_log` (canary
rollouts), `usage_windows` (admission limits, `serving.admission`) and `subject_refs`
(erasure, `serving.privacy`). Connecting is `serving.db.engine`; the schema is made and changed
only by the Alembic revisions of `serving.db.migrate` (a change here needs a new revision:
`brandforge db revision`, and `tests/serving/db/test_migrations.py` fails until it exists).

Conventions, so that both backends give back the same values:

- Every timestamp is a timezone-aware UTC `datetime` (`UTCDateTime`): PostgreSQL keeps
  `timestamptz`, SQLite has no time zones, so the UTC wall time is stored and UTC re-attached
  on the way out. Naive datetimes are refused rather than guessed.
- JSON columns (`detail`, `compliance`) are stored as text (`JSONText`) and read back as Python
  objects: portable, readable with `sqlite3`/`psql`, no dialect-specific JSON operators needed.
- Functions here never commit: callers own the transaction (unit of work).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator

# Longest key name, brand name and role list we accept (validated in serving.auth too).
NAME_MAX = 100
BRAND_MAX = 100


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (what every timestamp column holds)."""
    return datetime.now(UTC)


def new_asset_id() -> str:
    """An opaque, unguessable asset id (22 URL-safe characters, 128 random bits)."""
    return secrets.token_urlsafe(16)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (see the module docstring)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware (UTC) datetime")
        value = value.astimezone(UTC)
        # SQLite's DATETIME silently drops an offset; store the UTC wall time explicitly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """A JSON document (dict or list) stored as text, read back as Python objects.

    Refuses anything but a dict or a list, so that an already-encoded string is not encoded a
    second time (it would read back as a string, not the object).
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, dict | list):
            raise TypeError(
                f"JSON column takes a dict or a list, got {type(value).__name__} "
                "(pass the object, not its json.dumps)"
            )
        return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


class Base(DeclarativeBase):
    """Declarative base of every serving table; `Base.metadata` is what the migrations build.

    Constraint names follow a fixed convention, so a future Alembic migration can refer to
    them by name on both SQLite and PostgreSQL.
    """

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# --------------------------------------------------------------------------------------------
# Access control (serving.auth)
# --------------------------------------------------------------------------------------------


class ApiKey(Base):
    """One API key: who (name), what it may do (roles) and on which brands (DESIGN.md, 7).

    Only the SHA-256 of the key is stored (`key_hash`), plus its first 12 characters
    (`key_prefix`) so a person can tell keys apart in `brandforge keys list` and logs. `roles`
    and `brands` are comma-separated; `brands` is `*` for every brand. A revoked key is kept
    (with `revoked_at`) so the audit log's actor names stay meaningful.
    """

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("length(name) > 0", name="name_not_empty"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(12), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    roles: Mapped[str] = mapped_column(Text)
    brands: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Admission limits of this key (None: the settings' defaults; serving.admission).
    rate_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)
    daily_images: Mapped[int | None] = mapped_column(Integer, default=None)

    @property
    def role_list(self) -> list[str]:
        """`roles` as a list (stored comma-separated)."""
        return [r for r in self.roles.split(",") if r]

    @property
    def brand_list(self) -> list[str]:
        """`brands` as a list; `["*"]` means every brand."""
        return [b for b in self.brands.split(",") if b]

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def __repr__(self) -> str:  # never the hash: logs and tracebacks need no more than this
        return f"ApiKey(name={self.name!r}, prefix={self.key_prefix!r}, roles={self.roles!r})"


class AuditLog(Base):
    """One security-relevant event: who (`actor`: a key's name, `cli:<login>` or `system`) did
    what (`action`, e.g. `api_key.create`) to which brand, with details as JSON."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    brand: Mapped[str | None] = mapped_column(String(BRAND_MAX), default=None, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONText(), default=dict)

    def __repr__(self) -> str:
        return f"AuditLog(at={self.at!r}, actor={self.actor!r}, action={self.action!r})"


class UsageWindow(Base):
    """How much of a limit one scope used in one time window (`serving.admission`).

    `scope` is `key:<name>` or `brand:<brand>`; `metric` what is counted (`requests`,
    `images`, `cost`); `window_start` the start of the window (a minute, a UTC day). Counting
    in the database makes a limit hold across every ingress replica; old windows are deleted
    by `window_start`."""

    __tablename__ = "usage_windows"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    metric: Mapped[str] = mapped_column(String(16), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True, index=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)

    def __repr__(self) -> str:
        return f"UsageWindow({self.scope!r}, {self.metric!r}, {self.window_start!r}: {self.count})"


class SubjectRef(Base):
    """A data subject (an e-mail, phone, customer id...) that a stored object mentioned before
    redaction, by keyed hash only (`serving.privacy`): erasure finds every object of a subject
    without the database ever holding the subject in clear. `kind` names the table (`asset`,
    `campaign`, `campaign_item`, `audit_log`), `object_id` the row's id as text."""

    __tablename__ = "subject_refs"
    __table_args__ = (Index("ix_subject_refs_kind_object", "kind", "object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_hash: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(200))
    brand: Mapped[str | None] = mapped_column(String(BRAND_MAX), default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def __repr__(self) -> str:
        return f"SubjectRef({self.kind!r}, {self.object_id!r})"


# --------------------------------------------------------------------------------------------
# Generated assets
# --------------------------------------------------------------------------------------------

VARIANTS = ("champion", "canary")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Asset(Base):
    """Metadata of one generated image: everything needed to reproduce and audit it (model
    version, canary or champion, prompt, seed, sampler settings) and its compliance report.

    `id` is opaque and random, the only handle clients get; `path` is relative to the asset
    directory and is set by the server, never taken from a request. Every asset belongs to one
    brand; listings are per brand and newest first, hence the (brand, created_at) index.
    """

    __tablename__ = "assets"
    __table_args__ = (
        CheckConstraint("variant IN ('champion', 'canary')", name="variant"),
        Index("ix_assets_brand_created_at", "brand", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_asset_id)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    brand: Mapped[str] = mapped_column(String(BRAND_MAX))
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger)  # generators take up to 64-bit seeds
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    guidance: Mapped[float] = mapped_column(Float)
    format: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    compliance: Mapped[dict[str, Any]] = mapped_column(JSONText(), default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(16), default="delivered")
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSONText(), default=dict)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSONText(), default=dict)
    campaign_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    item_id: Mapped[int | None] = mapped_column(Integer, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None, index=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    reviewed_by: Mapped[str | None] = mapped_column(String(200), default=None)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    review_reason: Mapped[str | None] = mapped_column(Text, default=None)
    # The key that encrypts the stored file (None: stored in clear; serving.assets.crypto).
    key_id: Mapped[str | None] = mapped_column(String(64), default=None)

    def __repr__(self) -> str:
        return (
            f"Asset(id={self.id!r}, brand={self.brand!r}, variant={self.variant!r}, "
            f"status={self.status!r})"
        )


ASSET_EVENTS = ("impression", "click")


class AssetEvent(Base):
    """Impressions and clicks of a delivered asset, reported by the marketing application
    (`POST /v1/assets/{id}/events`); `count` lets a client report a batch in one row. Brand and
    model version are copied from the asset so click-through rates per version are one query."""

    __tablename__ = "asset_events"
    __table_args__ = (
        CheckConstraint(_in("kind", ASSET_EVENTS), name="kind"),
        CheckConstraint("count > 0", name="count"),
        Index("ix_asset_events_brand_version", "brand", "model_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), index=True)
    brand: Mapped[str] = mapped_column(String(BRAND_MAX))
    model_version: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer, default=1)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


# --------------------------------------------------------------------------------------------
# Campaigns (batch generation jobs, `serving.campaigns.queue`)
# --------------------------------------------------------------------------------------------

CAMPAIGN_STATES = ("queued", "running", "done", "cancelled", "failed")
ITEM_STATES = ("pending", "running", "done", "review", "failed", "cancelled")


class Campaign(Base):
    """One batch job: a prompt template expanded over its variables, for each channel's aspect
    ratio and `variants` seeds per combination, rendered in `formats`. The model versions are
    pinned at submission (`champion_version`, and `canary_version` with the rollout's share
    `canary_weight` when a live rollout was running); each item records which it got.
    `spec` is the request as submitted (template, variables, ratios, formats, layout texts,
    motion options), so a campaign can be audited and re-run."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(_in("state", CAMPAIGN_STATES), name="state"),
        Index("ix_campaigns_brand_created_at", "brand", "created_at"),
        Index(
            "uq_campaigns_brand_created_by_idempotency_key",
            "brand",
            "created_by",
            "idempotency_key",
            unique=True,
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_asset_id)
    brand: Mapped[str] = mapped_column(String(BRAND_MAX))
    name: Mapped[str] = mapped_column(String(200), default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSONText())
    priority: Mapped[int] = mapped_column(Integer, default=0)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    model_name: Mapped[str] = mapped_column(String(200))
    champion_version: Mapped[str] = mapped_column(String(64))
    canary_version: Mapped[str | None] = mapped_column(String(64), default=None)
    canary_weight: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    created_by: Mapped[str] = mapped_column(String(200))
    # A client's retry of the same submission (same key, brand and API key) gets the campaign it
    # already created instead of a second one.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    def __repr__(self) -> str:
        return f"Campaign(id={self.id!r}, brand={self.brand!r}, state={self.state!r})"


class CampaignItem(Base):
    """One image (or motion clip) of a campaign: one combination of the variables, one aspect
    ratio, one variant. `key` is unique within the campaign and derived from those, so
    expanding a campaign twice, or a worker retrying after a crash, never creates or delivers
    an item twice. A worker claims an item by moving it to `running` with a lease
    (`lease_owner`, `lease_expires_at`); a lease that expires (the worker died) puts it back in
    the queue. `attempts` counts renders (regenerations after a failed compliance check
    included); `asset_ids` are the delivered (or sent-to-review) files, one per format."""

    __tablename__ = "campaign_items"
    __table_args__ = (
        CheckConstraint(_in("state", ITEM_STATES), name="state"),
        CheckConstraint(_in("variant", VARIANTS), name="variant"),
        Index("uq_campaign_items_campaign_key", "campaign_id", "key", unique=True),
        Index("ix_campaign_items_queue", "state", "priority", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    brand: Mapped[str] = mapped_column(String(BRAND_MAX))
    prompt: Mapped[str] = mapped_column(Text)
    values: Mapped[dict[str, Any]] = mapped_column(JSONText(), default=dict)
    ratio: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str] = mapped_column(String(16), default="champion")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    seed: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    asset_ids: Mapped[list[str]] = mapped_column(JSONText(), default=list)
    compliance: Mapped[dict[str, Any] | None] = mapped_column(JSONText(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    def __repr__(self) -> str:
        return f"CampaignItem({self.campaign_id!r}/{self.key!r}, state={self.state!r})"


# --------------------------------------------------------------------------------------------
# Rollouts (canary router and rollout controller)
# --------------------------------------------------------------------------------------------

ROLLOUT_MODES = ("live", "shadow")
ROLLOUT_STATES = ("running", "promoted", "rolled_back", "aborted")
ROLLOUT_DECISIONS = ("start", "pass", "fail", "promote", "rollback", "abort")


class Rollout(Base):
    """One canary rollout of a brand's model version (`serving.rollout.controller`).

    `steps` are the canary's traffic percentages (e.g. `[5, 25, 50, 100]`); `step_index` is the
    step in force since `step_started_at`. `mode` is `live` (the canary answers its share of
    the clients) or `shadow` (the champion answers everyone; the canary's share is copied to
    the canary and only measured). `state` is `running` until the rollout ends `promoted`,
    `rolled_back` (a step failed its checks) or `aborted` (by a person, or because the registry
    changed under it), with `reason` saying why. The versions are pinned at the start, so the
    router and the analysis keep comparing the same two models.

    At most one `running` rollout per brand: the controller checks it, and the partial unique
    index `uq_rollouts_running_brand` (SQLite and PostgreSQL both have partial indexes) makes a
    concurrent second start fail instead of racing.
    """

    __tablename__ = "rollouts"
    __table_args__ = (
        CheckConstraint(_in("mode", ROLLOUT_MODES), name="mode"),
        CheckConstraint(_in("state", ROLLOUT_STATES), name="state"),
        CheckConstraint("step_index >= 0", name="step_index"),
        Index(
            "uq_rollouts_running_brand",
            "brand",
            unique=True,
            sqlite_where=text("state = 'running'"),
            postgresql_where=text("state = 'running'"),
        ),
        Index("ix_rollouts_brand_created_at", "brand", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    brand: Mapped[str] = mapped_column(String(BRAND_MAX))
    model_name: Mapped[str] = mapped_column(String(200))
    canary_version: Mapped[str] = mapped_column(String(64))
    champion_version: Mapped[str] = mapped_column(String(64))
    steps: Mapped[list[int]] = mapped_column(JSONText())
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    mode: Mapped[str] = mapped_column(String(16), default="live")
    min_requests: Mapped[int] = mapped_column(Integer)
    min_seconds: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default="running")
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def __repr__(self) -> str:
        return (
            f"Rollout(id={self.id!r}, brand={self.brand!r}, v{self.canary_version} over "
            f"v{self.champion_version}, step={self.step_index!r}, state={self.state!r})"
        )


class RolloutDecision(Base):
    """One decision of a rollout, with the measurements it was taken on: `start`, `pass` (the
    step's checks held), `fail` (one did not), then `promote`, `rollback` or `abort`.
    `weight` is the canary's traffic percentage of the step the decision was taken at."""

    __tablename__ = "rollout_decisions"
    __table_args__ = (CheckConstraint(_in("decision", ROLLOUT_DECISIONS), name="decision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    step_index: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    measurements: Mapped[dict[str, Any]] = mapped_column(JSONText(), default=dict)

    def __repr__(self) -> str:
        return f"RolloutDecision(rollout={self.rollout_id!r}, {self.decision!r} at {self.at!r})"


class RequestLog(Base):
    """One served generation request, as the rollout analysis needs it: which version and
    variant answered, whether it succeeded, how long it took, how many images it produced and
    how they scored against the brand kit (`compliance_mean` over the scored images, None when
    none could be scored; `compliance_failed` images that failed the kit).

    No prompt and no client id: nothing personal is kept here. `rollout_id` is the rollout in
    force (None outside one); it is not a foreign key, so logging never waits on the rollout
    tables. The analysis reads one brand's rows since a time (index on brand, at); old rows can
    be deleted by time (index on `at`)."""

    __tablename__ = "request_log"
    __table_args__ = (
        CheckConstraint(_in("variant", VARIANTS), name="variant"),
        Index("ix_request_log_brand_at", "brand", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    brand: Mapped[str] = mapped_column(String(BRAND_MAX))  # indexed with `at`
    model_version: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str] = mapped_column(String(16))
    rollout_id: Mapped[int | None] = mapped_column(Integer, default=None)
    ok: Mapped[bool] = mapped_column(Boolean)
    latency_s: Mapped[float] = mapped_column(Float)
    images: Mapped[int] = mapped_column(Integer, default=0)
    compliance_mean: Mapped[float | None] = mapped_column(Float, default=None)
    compliance_failed: Mapped[int] = mapped_column(Integer, default=0)

    def __repr__(self) -> str:
        return (
            f"RequestLog(brand={self.brand!r}, v{self.model_version} {self.variant}, "
            f"ok={self.ok!r}, at={self.at!r})"
        )
