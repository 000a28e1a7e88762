"""The data catalog: tables found by crawlers and their schema versions.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_T = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "catalog_tables",
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
    op.create_table(
        "catalog_versions",
        sa.Column("name", sa.String(300), sa.ForeignKey("catalog_tables.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("columns", sa.Text, nullable=False),
        sa.Column("partitions", sa.Text, nullable=False),
        sa.Column("change", sa.Text, nullable=False),
        sa.Column("at", _T, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("catalog_versions")
    op.drop_table("catalog_tables")
