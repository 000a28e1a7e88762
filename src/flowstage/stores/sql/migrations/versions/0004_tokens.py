"""API tokens: a role, an optional name and expiry, and a salted digest of the secret (never the secret).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_T = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
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


def downgrade() -> None:
    op.drop_table("api_tokens")
