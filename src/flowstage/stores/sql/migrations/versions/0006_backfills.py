"""Backfills: one row per backfill, one per logical time of its range (key: backfill id, logical time).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_T = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "backfills",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("start_time", _T, nullable=False),
        sa.Column("end_time", _T, nullable=False),
        sa.Column("max_active", sa.Integer, nullable=False),
        sa.Column("reprocess", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", _T, nullable=False),
        sa.Column("updated_at", _T, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
    )
    op.create_index("ix_backfills_created_at", "backfills", ["created_at"])
    op.create_table(
        "backfill_times",
        sa.Column("backfill_id", sa.String(64), sa.ForeignKey("backfills.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("logical_time", _T, primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("prior_run_id", sa.String(64), nullable=True),
        sa.Column("claimed_pid", sa.Integer, nullable=True),
        sa.Column("claimed_host", sa.String(255), nullable=True),
        sa.Column("claimed_at", _T, nullable=True),
        sa.Column("ended_at", _T, nullable=True),
    )
    op.create_index("ix_backfill_times_status", "backfill_times", ["backfill_id", "status"])


def downgrade() -> None:
    op.drop_table("backfill_times")
    op.drop_table("backfills")
