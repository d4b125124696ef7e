"""The schema of the last release without Alembic (commit c9915d7); adopts its databases.

On an empty database this creates every table. A database that a release before Alembic
created has these tables but no `alembic_version`; Alembic runs this revision on it too, and
it adds only what is missing, keeping every row:

- tables a newer release introduced (`asset_events`, `campaigns`, `campaign_items`);
- columns its start-up `ALTER TABLE ... ADD COLUMN` loop added, or would have added (the
  asset's status, settings, provenance, campaign, retention and review columns), filled with
  their default where they have one;
- the indexes that loop could not add (`ix_assets_campaign_id`, `ix_assets_expires_at`), and
  NOT NULL where the loop left a column nullable (`assets.status`).

The tables are written out here, not imported from `serving.db.models`: a revision describes
the schema at its own point in history, and the models move on.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The models' naming convention (serving.db.models.Base), so names match on both backends.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
UTC_DATETIME = sa.DateTime(timezone=True)  # serving.db.models.UTCDateTime's column type
JSON_TEXT = sa.Text()  # serving.db.models.JSONText's column type
RUNNING = sa.text("state = 'running'")


def _column(name: str, kind: sa.types.TypeEngine[Any], *args: Any, **kw: Any) -> sa.Column[Any]:
    """A NOT NULL column unless `nullable=True` (the models' `Mapped[X]` vs `Mapped[X | None]`)."""
    kw.setdefault("nullable", False)
    return sa.Column(name, kind, *args, **kw)


def _access(metadata: sa.MetaData) -> None:
    sa.Table(
        "api_keys",
        metadata,
        _column("id", sa.Integer(), primary_key=True),
        _column("name", sa.String(100), unique=True),
        _column("key_prefix", sa.String(12), index=True),
        _column("key_hash", sa.String(64), unique=True),
        _column("roles", sa.Text()),
        _column("brands", sa.Text()),
        _column("created_at", UTC_DATETIME),
        _column("revoked_at", UTC_DATETIME, nullable=True),
        _column("last_used_at", UTC_DATETIME, nullable=True),
        sa.CheckConstraint("length(name) > 0", name="name_not_empty"),
    )
    sa.Table(
        "audit_log",
        metadata,
        _column("id", sa.Integer(), primary_key=True),
        _column("at", UTC_DATETIME, index=True),
        _column("actor", sa.String(200)),
        _column("action", sa.String(100)),
        _column("brand", sa.String(100), nullable=True, index=True),
        _column("detail", JSON_TEXT),
    )


def _assets(metadata: sa.MetaData) -> None:
    sa.Table(
        "assets",
        metadata,
        _column("id", sa.String(64), primary_key=True),
        _column("request_id", sa.String(64), index=True),
        _column("brand", sa.String(100)),
        _column("model_name", sa.String(200)),
        _column("model_version", sa.String(64)),
        _column("variant", sa.String(16)),
        _column("prompt", sa.Text()),
        _column("negative_prompt", sa.Text()),
        _column("seed", sa.BigInteger()),
        _column("width", sa.Integer()),
        _column("height", sa.Integer()),
        _column("steps", sa.Integer()),
        _column("guidance", sa.Float()),
        _column("format", sa.String(16)),
        _column("path", sa.Text()),
        _column("compliance", JSON_TEXT),
        _column("created_at", UTC_DATETIME, index=True),
        # Added to existing databases by the pre-Alembic ALTER loop (see the docstring).
        _column("status", sa.String(16), info={"fill": "delivered"}),
        _column("settings", JSON_TEXT, nullable=True),
        _column("provenance", JSON_TEXT, nullable=True),
        _column("campaign_id", sa.String(64), nullable=True, index=True),
        _column("item_id", sa.Integer(), nullable=True),
        _column("expires_at", UTC_DATETIME, nullable=True, index=True),
        _column("deleted_at", UTC_DATETIME, nullable=True),
        _column("reviewed_by", sa.String(200), nullable=True),
        _column("reviewed_at", UTC_DATETIME, nullable=True),
        _column("review_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("variant IN ('champion', 'canary')", name="variant"),
        sa.Index("ix_assets_brand_created_at", "brand", "created_at"),
    )
    sa.Table(
        "asset_events",
        metadata,
        _column("id", sa.Integer(), primary_key=True),
        _column("asset_id", sa.String(64), sa.ForeignKey("assets.id"), index=True),
        _column("brand", sa.String(100)),
        _column("model_version", sa.String(64)),
        _column("variant", sa.String(16)),
        _column("kind", sa.String(16)),
        _column("count", sa.Integer()),
        _column("at", UTC_DATETIME, index=True),
        sa.CheckConstraint("kind IN ('impression', 'click')", name="kind"),
        sa.CheckConstraint("count > 0", name="count"),
        sa.Index("ix_asset_events_brand_version", "brand", "model_version"),
    )


def _campaigns(metadata: sa.MetaData) -> None:
    sa.Table(
        "campaigns",
        metadata,
        _column("id", sa.String(64), primary_key=True),
        _column("brand", sa.String(100)),
        _column("name", sa.String(200)),
        _column("spec", JSON_TEXT),
        _column("priority", sa.Integer()),
        _column("deadline", UTC_DATETIME, nullable=True),
        _column("model_name", sa.String(200)),
        _column("champion_version", sa.String(64)),
        _column("canary_version", sa.String(64), nullable=True),
        _column("canary_weight", sa.Integer()),
        _column("state", sa.String(16)),
        _column("created_by", sa.String(200)),
        _column("idempotency_key", sa.String(200), nullable=True),
        _column("created_at", UTC_DATETIME),
        _column("updated_at", UTC_DATETIME),
        _column("finished_at", UTC_DATETIME, nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'cancelled', 'failed')", name="state"
        ),
        sa.Index("ix_campaigns_brand_created_at", "brand", "created_at"),
        sa.Index(
            "uq_campaigns_brand_created_by_idempotency_key",
            "brand",
            "created_by",
            "idempotency_key",
            unique=True,
        ),
    )
    sa.Table(
        "campaign_items",
        metadata,
        _column("id", sa.Integer(), primary_key=True),
        _column("campaign_id", sa.String(64), sa.ForeignKey("campaigns.id"), index=True),
        _column("key", sa.String(200)),
        _column("brand", sa.String(100)),
        _column("prompt", sa.Text()),
        _column("values", JSON_TEXT),
        _column("ratio", sa.String(16)),
        _column("width", sa.Integer()),
        _column("height", sa.Integer()),
        _column("model_version", sa.String(64)),
        _column("variant", sa.String(16)),
        _column("priority", sa.Integer()),
        _column("seed", sa.BigInteger()),
        _column("state", sa.String(16)),
        _column("attempts", sa.Integer()),
        _column("lease_owner", sa.String(100), nullable=True),
        _column("lease_expires_at", UTC_DATETIME, nullable=True),
        _column("error", sa.Text(), nullable=True),
        _column("asset_ids", JSON_TEXT),
        _column("compliance", JSON_TEXT, nullable=True),
        _column("created_at", UTC_DATETIME),
        _column("updated_at", UTC_DATETIME),
        _column("finished_at", UTC_DATETIME, nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'running', 'done', 'review', 'failed', 'cancelled')",
            name="state",
        ),
        sa.CheckConstraint("variant IN ('champion', 'canary')", name="variant"),
        sa.Index("uq_campaign_items_campaign_key", "campaign_id", "key", unique=True),
        sa.Index("ix_campaign_items_queue", "state", "priority", "id"),
    )


def _rollouts(metadata: sa.MetaData) -> None:
    sa.Table(
        "rollouts",
        metadata,
        _column("id", sa.Integer(), primary_key=True),
        _column("brand", sa.String(100)),
        _column("model_name", sa.String(200)),
        _column("canary_version", sa.String(64)),
        _column("champion_version", sa.String(64)),
        _column("steps", JSON_TEXT),
        _column("step_index", sa.Integer()),
        _column("mode", sa.String(16)),
        _column("min_requests", sa.Integer()),
        _column("min_seconds", sa.Float()),
        _column("state", sa.String(16)),
        _column("reason", sa.Text(), nullable=True),
        _column("step_started_at", UTC_DATETIME),
        _column("created_at", UTC_DATETIME),
        _column("updated_at", UTC_DATETIME),
        sa.CheckConstraint("mode IN ('live', 'shadow')", name="mode"),
        sa.CheckConstraint(
            "state IN ('running', 'promoted', 'rolled_back', 'aborted')", name="state"
        ),
        sa.CheckConstraint("step_index >= 0", name="step_index"),
        sa.Index(
            "uq_rollouts_running_brand",
            "brand",
            unique=True,
            sqlite_where=RUNNING,
            postgresql_where=RUNNING,
        ),
        sa.Index("ix_rollouts_brand_created_at", "brand", "created_at"),
    )
    sa.Table(
        "rollout_decisions",
        metadata,
        _column("id", sa.Integer(), primary_key=True),
        _column("rollout_id", sa.Integer(), sa.ForeignKey("rollouts.id"), index=True),
        _column("at", UTC_DATETIME),
        _column("step_index", sa.Integer()),
        _column("weight", sa.Integer()),
        _column("decision", sa.String(16)),
        _column("reason", sa.Text()),
        _column("measurements", JSON_TEXT),
        sa.CheckConstraint(
            "decision IN ('start', 'pass', 'fail', 'promote', 'rollback', 'abort')",
            name="decision",
        ),
    )
    sa.Table(
        "request_log",
        metadata,
        _column("id", sa.Integer(), primary_key=True),
        _column("at", UTC_DATETIME, index=True),
        _column("brand", sa.String(100)),
        _column("model_version", sa.String(64)),
        _column("variant", sa.String(16)),
        _column("rollout_id", sa.Integer(), nullable=True),
        _column("ok", sa.Boolean()),
        _column("latency_s", sa.Float()),
        _column("images", sa.Integer()),
        _column("compliance_mean", sa.Float(), nullable=True),
        _column("compliance_failed", sa.Integer()),
        sa.CheckConstraint("variant IN ('champion', 'canary')", name="variant"),
        sa.Index("ix_request_log_brand_at", "brand", "at"),
    )


def schema() -> sa.MetaData:
    """Every table of this revision."""
    metadata = sa.MetaData(naming_convention=NAMING)  # type: ignore[arg-type]
    _access(metadata)
    _assets(metadata)
    _campaigns(metadata)
    _rollouts(metadata)
    return metadata


def _adopt(bind: sa.Connection, table: sa.Table) -> None:
    """Bring a pre-Alembic table to this revision: add missing columns, fill and tighten
    nullable ones, add missing indexes. Data is kept; nothing is dropped."""
    present = {c["name"]: c for c in sa.inspect(bind).get_columns(table.name)}
    for column in table.columns:
        if column.name not in present:
            # Nullable first: existing rows get their value below, then NOT NULL.
            op.add_column(table.name, sa.Column(column.name, column.type, nullable=True))
    loose = [
        c
        for c in table.columns
        if not c.nullable and (c.name not in present or present[c.name]["nullable"])
    ]
    for column in loose:
        if "fill" in column.info:
            bind.execute(
                table.update().where(column.is_(None)).values({column.name: column.info["fill"]})
            )
        nulls = bind.scalar(sa.select(sa.func.count()).where(column.is_(None)))
        if nulls:
            raise RuntimeError(
                f"{table.name}.{column.name} is NULL in {nulls} row(s) and must not be: "
                "set a value in those rows, then run `brandforge db upgrade` again"
            )
    if loose:
        # SQLite cannot add NOT NULL to a column: batch mode copies the table into one built
        # from this revision's definition (indexes and CHECK constraints included).
        with op.batch_alter_table(table.name, copy_from=table) as batch:
            for column in loose:
                batch.alter_column(column.name, existing_type=column.type, nullable=False)
    indexes = {ix["name"] for ix in sa.inspect(bind).get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in indexes:
            index.create(bind)


def upgrade() -> None:
    bind = op.get_bind()
    present = set(sa.inspect(bind).get_table_names())
    for table in schema().sorted_tables:
        if table.name in present:
            _adopt(bind, table)
        else:
            table.create(bind)


def downgrade() -> None:
    raise NotImplementedError(
        "0001 is the first revision: there is no older schema to go back to "
        "(restore a backup of the serving database instead)"
    )
