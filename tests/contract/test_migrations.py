"""The schema metadata matches what the migrations build, on SQLite and on PostgreSQL.

`alembic revision --autogenerate` diffs the database against `stores/sql/schema.py`; a table,
column, index or constraint the migrations create but the metadata lacks would be dropped (or
altered) by the next revision. So a fresh database is migrated the way a store does it, on
open, and the diff must be empty.
"""

from __future__ import annotations

import pprint
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from flowstage.stores.sql.schema import metadata
from flowstage.stores.sql.store import HEAD_REVISION, SqlRunStore

MIGRATED_TABLES = {
    "runs",
    "task_runs",
    "events",
    "logs",
    "workflows",
    "workflow_versions",
    "workflow_activations",
    "trigger_fires",
    "trigger_consumed",
    "catalog_tables",
    "catalog_versions",
    "api_tokens",
    "alerts",
    "backfills",
    "backfill_times",
}


def schema_diff(url: str, schema: str | None = None) -> list[Any]:
    """What autogenerate would change in the database at `url` (within `schema`) to match the metadata."""
    store = SqlRunStore(url)  # migrates on open, as every store does
    try:
        assert store.revision() == HEAD_REVISION
    finally:
        store.close()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            opts: dict[str, Any] = {"compare_type": True, "compare_server_default": True}
            if schema is not None:
                # only the test's own schema: other tests' schemas in the same database are not ours
                opts["include_name"] = lambda name, type_, _parent: type_ != "schema" or name in (None, schema)
            context = MigrationContext.configure(conn, opts=opts)
            tables = set(sa.inspect(conn).get_table_names(schema=schema))
            return [tables, compare_metadata(context, metadata)]
    finally:
        engine.dispose()


def test_the_metadata_declares_every_table_the_migrations_create() -> None:
    assert set(metadata.tables) == MIGRATED_TABLES


def test_a_migrated_sqlite_database_matches_the_metadata(tmp_path: Path) -> None:
    tables, diff = schema_diff(f"sqlite:///{tmp_path / 'store.db'}")
    assert tables == MIGRATED_TABLES | {"alembic_version"}
    assert diff == [], "autogenerate would change the migrated database:\n" + pprint.pformat(diff)


@pytest.mark.postgres
def test_a_migrated_postgres_schema_matches_the_metadata(pg_schema_url: str) -> None:
    schema = pg_schema_url.rsplit("search_path%3D", 1)[1]
    engine = sa.create_engine(pg_schema_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_schema()")).scalar() == schema
    finally:
        engine.dispose()
    tables, diff = schema_diff(pg_schema_url, schema)
    assert tables == MIGRATED_TABLES | {"alembic_version"}
    assert diff == [], "autogenerate would change the migrated schema:\n" + pprint.pformat(diff)
