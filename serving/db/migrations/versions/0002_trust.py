"""Production trust: admission limits per key, usage windows, data-subject references for
erasure, and the encryption key id of each stored asset file.

- `api_keys.rate_per_minute`, `api_keys.daily_images`: a key's own limits (NULL: the settings'
  defaults), set by `brandforge keys create --rate/--daily-images`;
- `usage_windows`: what each key and brand used per minute and per day (`serving.admission`),
  in the database so that limits hold across ingress replicas;
- `subject_refs`: keyed hashes of the personal data a stored object mentioned before
  redaction (`serving.privacy`), so `brandforge privacy erase` finds them;
- `assets.key_id`: which key encrypts the asset's file (NULL: stored in clear).

Only additions: every existing row stays as it is (new columns are NULL).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)  # serving.db.models.UTCDateTime's column type


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rate_per_minute", sa.Integer(), nullable=True))
    op.add_column("api_keys", sa.Column("daily_images", sa.Integer(), nullable=True))
    op.add_column("assets", sa.Column("key_id", sa.String(64), nullable=True))
    op.create_table(
        "usage_windows",
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("window_start", UTC_DATETIME, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "metric", "window_start", name="pk_usage_windows"),
    )
    op.create_index("ix_usage_windows_window_start", "usage_windows", ["window_start"])
    op.create_table(
        "subject_refs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("brand", sa.String(100), nullable=True),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subject_refs"),
    )
    op.create_index("ix_subject_refs_subject_hash", "subject_refs", ["subject_hash"])
    op.create_index("ix_subject_refs_kind_object", "subject_refs", ["kind", "object_id"])


def downgrade() -> None:
    op.drop_index("ix_subject_refs_kind_object", table_name="subject_refs")
    op.drop_index("ix_subject_refs_subject_hash", table_name="subject_refs")
    op.drop_table("subject_refs")
    op.drop_index("ix_usage_windows_window_start", table_name="usage_windows")
    op.drop_table("usage_windows")
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("key_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("daily_images")
        batch.drop_column("rate_per_minute")
