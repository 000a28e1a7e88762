"""Runs, task runs, events and log lines.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_T = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", _T, nullable=False),
        sa.Column("ended_at", _T, nullable=True),
        sa.Column("variables", sa.Text, nullable=False),
        sa.Column("overrides", sa.Text, nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("root", sa.Text, nullable=False),
        sa.Column("logical_time", _T, nullable=False),
        sa.Column("runner_pid", sa.Integer, nullable=True),
        sa.Column("runner_host", sa.String(255), nullable=True),
        sa.Column("runner_started", _T, nullable=True),
        sa.Column("heartbeat_at", _T, nullable=True),
        sa.Column("cancel_requested_at", _T, nullable=True),
        sa.Column("resumes", sa.Text, nullable=False),
        sa.Column("parent_run_id", sa.String(64), nullable=True),
        sa.Column("source", sa.Text, nullable=True),
    )
    op.create_index("ix_runs_workflow_started", "runs", ["workflow", "started_at"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_started", "runs", ["started_at"])
    op.create_table(
        "task_runs",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("started_at", _T, nullable=True),
        sa.Column("ended_at", _T, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("saved", sa.Text, nullable=False),
        sa.Column("variables", sa.Text, nullable=False),
        sa.Column("attempts", sa.Text, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", _T, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("task", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_events_run", "events", ["run_id", "id"])
    op.create_table(
        "logs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task", sa.String(200), nullable=True),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("at", _T, nullable=False),
        sa.Column("level", sa.SmallInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_logs_run", "logs", ["run_id", "id"])


def downgrade() -> None:
    op.drop_table("logs")
    op.drop_table("events")
    op.drop_table("task_runs")
    op.drop_table("runs")
