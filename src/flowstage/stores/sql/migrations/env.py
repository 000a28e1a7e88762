"""Alembic environment: runs on the connection the store hands over.

`target_metadata` declares every table the revisions create (stores/sql/schema.py), so
``alembic revision --autogenerate`` proposes only real changes; tests/contract/test_migrations.py
holds the diff of a freshly migrated database to empty, with the same comparisons as here.
"""

from __future__ import annotations

from alembic import context

from flowstage.stores.sql.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    compare_type=True,
    compare_server_default=True,
)
with context.begin_transaction():
    context.run_migrations()
