"""Deployed workflows and their versions; trigger fires and the runs event triggers consumed.

`trigger_fires` has one row per start of a workflow by its trigger, keyed by (workflow,
logical_time): two schedulers that find the same due time both insert, the database lets one
in, and only that one starts the run (docs/adr/0004-fires-deduplicated-by-a-unique-key.md).
`trigger_consumed` does the same for event triggers, one row per watched run.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_T = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("activated_at", _T, nullable=False),
        sa.Column("created_at", _T, nullable=False),
        # what the current version's trigger waits for, and since when (reset when it changes)
        sa.Column("schedule_key", sa.Text, nullable=True),
        sa.Column("schedule_since", _T, nullable=True),
        sa.Column("event_key", sa.Text, nullable=True),
        sa.Column("event_since", _T, nullable=True),
    )
    op.create_table(
        "workflow_versions",
        sa.Column("workflow", sa.String(200), sa.ForeignKey("workflows.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("deployed_at", _T, nullable=False),
        sa.Column("deployed_by", sa.String(255), nullable=True),
        sa.UniqueConstraint("workflow", "content_hash", name="uq_workflow_versions_hash"),
    )
    op.create_table(
        "workflow_activations",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("workflow", sa.String(200), sa.ForeignKey("workflows.name", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("previous", sa.Integer, nullable=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("at", _T, nullable=False),
        sa.Column("by", sa.String(255), nullable=True),
    )
    op.create_index("ix_workflow_activations", "workflow_activations", ["workflow", "id"])
    op.create_table(
        "trigger_fires",
        sa.Column("workflow", sa.String(200), primary_key=True),
        sa.Column("logical_time", _T, primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("fired_at", _T, nullable=False),
        sa.Column("fired_pid", sa.Integer, nullable=True),
        sa.Column("fired_host", sa.String(255), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index("ix_trigger_fires_fired_at", "trigger_fires", ["fired_at"])
    op.create_index("ix_trigger_fires_workflow_fired_at", "trigger_fires", ["workflow", "fired_at"])
    op.create_table(
        "trigger_consumed",
        sa.Column("workflow", sa.String(200), primary_key=True),
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("fire_time", _T, nullable=False),
    )
    # what the scheduler asks of the runs table: runs ended since a time, running runs of a workflow
    op.create_index("ix_runs_ended", "runs", ["ended_at"])
    op.create_index("ix_runs_workflow_status", "runs", ["workflow", "status"])


def downgrade() -> None:
    op.drop_index("ix_runs_workflow_status", table_name="runs")
    op.drop_index("ix_runs_ended", table_name="runs")
    op.drop_table("trigger_consumed")
    op.drop_table("trigger_fires")
    op.drop_table("workflow_activations")
    op.drop_table("workflow_versions")
    op.drop_table("workflows")
