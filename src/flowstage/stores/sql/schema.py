"""Tables of the SQL run store (SQLAlchemy Core). Alembic migrations create and evolve them.

Times are seconds since the epoch (double precision) so that SQLite and PostgreSQL order and
compare them alike; the faces turn them into ISO 8601 with a UTC offset.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workflow", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", sa.Float(precision=53), nullable=False),
    sa.Column("ended_at", sa.Float(precision=53), nullable=True),
    sa.Column("variables", sa.Text, nullable=False),
    sa.Column("overrides", sa.Text, nullable=False),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("root", sa.Text, nullable=False),
    sa.Column("logical_time", sa.Float(precision=53), nullable=False),
    sa.Column("runner_pid", sa.Integer, nullable=True),
    sa.Column("runner_host", sa.String(255), nullable=True),
    sa.Column("runner_started", sa.Float(precision=53), nullable=True),
    sa.Column("heartbeat_at", sa.Float(precision=53), nullable=True),
    sa.Column("cancel_requested_at", sa.Float(precision=53), nullable=True),
    sa.Column("resumes", sa.Text, nullable=False),
    sa.Column("parent_run_id", sa.String(64), nullable=True),
    sa.Column("source", sa.Text, nullable=True),
    sa.Index("ix_runs_workflow_started", "workflow", "started_at"),
    sa.Index("ix_runs_status", "status"),
    sa.Index("ix_runs_started", "started_at"),
)

task_runs = sa.Table(
    "task_runs",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("stage", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("started_at", sa.Float(precision=53), nullable=True),
    sa.Column("ended_at", sa.Float(precision=53), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("saved", sa.Text, nullable=False),
    sa.Column("variables", sa.Text, nullable=False),
    sa.Column("attempts", sa.Text, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", sa.Float(precision=53), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("task", sa.String(200), nullable=True),
    sa.Column("status", sa.String(20), nullable=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Index("ix_events_run", "run_id", "id"),
)

logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("task", sa.String(200), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("at", sa.Float(precision=53), nullable=False),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_logs_run", "run_id", "id"),
)
