"""Tables of the SQL run store (SQLAlchemy Core). Alembic migrations create and evolve them.

This metadata is what the migrations (`migrations/versions/`) build, table for table, column
for column, with the same indexes, keys and constraints: `alembic revision --autogenerate`
diffs the database against it, so a table missing here would be dropped by the next revision.
`tests/contract/test_migrations.py` migrates fresh SQLite and PostgreSQL databases and holds
the diff to empty.

Times are seconds since the epoch (double precision) so that SQLite and PostgreSQL order and
compare them alike; the faces turn them into ISO 8601 with a UTC offset.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # an alias of the rowid on SQLite
_T = sa.Float(precision=53)

runs = sa.Table(
    "runs",
    metadata,
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
    sa.Index("ix_runs_workflow_started", "workflow", "started_at"),
    sa.Index("ix_runs_status", "status"),
    sa.Index("ix_runs_started", "started_at"),
    # 0002: what the scheduler asks of the runs table
    sa.Index("ix_runs_ended", "ended_at"),
    sa.Index("ix_runs_workflow_status", "workflow", "status"),
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
    sa.Column("started_at", _T, nullable=True),
    sa.Column("ended_at", _T, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("saved", sa.Text, nullable=False),
    sa.Column("variables", sa.Text, nullable=False),
    sa.Column("attempts", sa.Text, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", _T, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("task", sa.String(200), nullable=True),
    sa.Column("status", sa.String(20), nullable=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Index("ix_events_run", "run_id", "id"),
)

logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("task", sa.String(200), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("at", _T, nullable=False),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_logs_run", "run_id", "id"),
)

# --------------------------------------------------------------------------- 0002: deployments
workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("current_version", sa.Integer, nullable=False),
    sa.Column("activated_at", _T, nullable=False),
    sa.Column("created_at", _T, nullable=False),
    sa.Column("schedule_key", sa.Text, nullable=True),
    sa.Column("schedule_since", _T, nullable=True),
    sa.Column("event_key", sa.Text, nullable=True),
    sa.Column("event_since", _T, nullable=True),
)

workflow_versions = sa.Table(
    "workflow_versions",
    metadata,
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

workflow_activations = sa.Table(
    "workflow_activations",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("workflow", sa.String(200), sa.ForeignKey("workflows.name", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("previous", sa.Integer, nullable=True),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("at", _T, nullable=False),
    sa.Column("by", sa.String(255), nullable=True),
    sa.Index("ix_workflow_activations", "workflow", "id"),
)

trigger_fires = sa.Table(
    "trigger_fires",
    metadata,
    sa.Column("workflow", sa.String(200), primary_key=True),
    sa.Column("logical_time", _T, primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("fired_at", _T, nullable=False),
    sa.Column("fired_pid", sa.Integer, nullable=True),
    sa.Column("fired_host", sa.String(255), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Index("ix_trigger_fires_fired_at", "fired_at"),
    sa.Index("ix_trigger_fires_workflow_fired_at", "workflow", "fired_at"),
)

trigger_consumed = sa.Table(
    "trigger_consumed",
    metadata,
    sa.Column("workflow", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("fire_time", _T, nullable=False),
)

# --------------------------------------------------------------------------- 0003: the catalog
catalog_tables = sa.Table(
    "catalog_tables",
    metadata,
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("connection", sa.String(200), nullable=True),
    sa.Column("format", sa.String(40), nullable=True),
    sa.Column("columns", sa.Text, nullable=False),
    sa.Column("partitions", sa.Text, nullable=False),
    sa.Column("row_estimate", sa.BigInteger, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", _T, nullable=False),
    sa.Column("updated_at", _T, nullable=False),
    sa.Column("crawled_by", sa.String(64), nullable=True),
)

catalog_versions = sa.Table(
    "catalog_versions",
    metadata,
    sa.Column("name", sa.String(300), sa.ForeignKey("catalog_tables.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("columns", sa.Text, nullable=False),
    sa.Column("partitions", sa.Text, nullable=False),
    sa.Column("change", sa.Text, nullable=False),
    sa.Column("at", _T, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
)

# --------------------------------------------------------------------------- 0004: API tokens
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("secret_hash", sa.String(128), nullable=False),
    sa.Column("created_at", _T, nullable=False),
    sa.Column("expires_at", _T, nullable=True),
    sa.Column("revoked_at", _T, nullable=True),
    sa.Column("last_used_at", _T, nullable=True),
)

# --------------------------------------------------------------------------- 0005: alerts fired
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("workflow", sa.String(200), nullable=False),
    sa.Column("rule", sa.Integer, nullable=False),
    sa.Column("alert", sa.Text, nullable=False),
    sa.Column("rule_key", sa.String(64), nullable=False),
    sa.Column("task", sa.String(200), nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("value", sa.Text, nullable=True),
    sa.Column("notifier", sa.String(200), nullable=False),
    sa.Column("fired_at", _T, nullable=False),
    sa.Column("delivery", sa.String(20), nullable=False),
    sa.Column("tries", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("delivered_at", _T, nullable=True),
    sa.Column("repeats", sa.Integer, nullable=False),
    sa.Index("ix_alerts_run", "run_id", "id"),
    sa.Index("ix_alerts_rule", "workflow", "rule_key", "notifier", "id"),
)

# --------------------------------------------------------------------------- 0006: backfills
backfills = sa.Table(
    "backfills",
    metadata,
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
    sa.Index("ix_backfills_created_at", "created_at"),
)

backfill_times = sa.Table(
    "backfill_times",
    metadata,
    sa.Column("backfill_id", sa.String(64), sa.ForeignKey("backfills.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("logical_time", _T, primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("prior_run_id", sa.String(64), nullable=True),
    sa.Column("claimed_pid", sa.Integer, nullable=True),
    sa.Column("claimed_host", sa.String(255), nullable=True),
    sa.Column("claimed_at", _T, nullable=True),
    sa.Column("ended_at", _T, nullable=True),
    sa.Index("ix_backfill_times_status", "backfill_id", "status"),
)
