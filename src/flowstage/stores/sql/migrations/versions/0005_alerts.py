"""Alerts fired: one row per firing and notifier, with the rule as written and the delivery.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_T = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "alerts",
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
    )
    op.create_index("ix_alerts_run", "alerts", ["run_id", "id"])
    op.create_index("ix_alerts_rule", "alerts", ["workflow", "rule_key", "notifier", "id"])


def downgrade() -> None:
    op.drop_table("alerts")
