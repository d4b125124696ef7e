"""The serving database's models as the last release without Alembic defined them (frozen).

`serving/db.py` of commit c9915d7, docstrings, comments and engine helpers left out: its
tables and its start-up `init_db` (create missing tables, then `ALTER TABLE ... ADD COLUMN`
for columns a newer release added). `tests/serving/db/test_migrations.py` builds databases
with it, as that release left them, to upgrade them. Never change this file.
"""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import DateTime, TypeDecorator

NAME_MAX = 100
BRAND_MAX = 100

SQLITE_BUSY_TIMEOUT_S = 30


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_asset_id() -> str:
    return secrets.token_urlsafe(16)


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware (UTC) datetime")
        value = value.astimezone(UTC)

        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
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
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class ApiKey(Base):
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

    @property
    def role_list(self) -> list[str]:
        return [r for r in self.roles.split(",") if r]

    @property
    def brand_list(self) -> list[str]:
        return [b for b in self.brands.split(",") if b]

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def __repr__(self) -> str:  # never the hash: logs and tracebacks need no more than this
        return f"ApiKey(name={self.name!r}, prefix={self.key_prefix!r}, roles={self.roles!r})"


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    brand: Mapped[str | None] = mapped_column(String(BRAND_MAX), default=None, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONText(), default=dict)

    def __repr__(self) -> str:
        return f"AuditLog(at={self.at!r}, actor={self.actor!r}, action={self.action!r})"


VARIANTS = ("champion", "canary")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Asset(Base):
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

    def __repr__(self) -> str:
        return (
            f"Asset(id={self.id!r}, brand={self.brand!r}, variant={self.variant!r}, "
            f"status={self.status!r})"
        )


ASSET_EVENTS = ("impression", "click")


class AssetEvent(Base):
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


CAMPAIGN_STATES = ("queued", "running", "done", "cancelled", "failed")
ITEM_STATES = ("pending", "running", "done", "review", "failed", "cancelled")


class Campaign(Base):
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

    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    def __repr__(self) -> str:
        return f"Campaign(id={self.id!r}, brand={self.brand!r}, state={self.state!r})"


class CampaignItem(Base):
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


ROLLOUT_MODES = ("live", "shadow")
ROLLOUT_STATES = ("running", "promoted", "rolled_back", "aborted")
ROLLOUT_DECISIONS = ("start", "pass", "fail", "promote", "rollback", "abort")


class Rollout(Base):
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


def init_db(engine: Engine) -> None:
    from sqlalchemy import inspect

    Base.metadata.create_all(engine, checkfirst=True)
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                default = _added_column_default(column)
                conn.execute(
                    text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{default}')
                )


def _added_column_default(column: Any) -> str:
    default = column.default
    if default is not None and default.is_scalar and isinstance(default.arg, str):
        return " DEFAULT '" + default.arg.replace("'", "''") + "'"
    return ""
