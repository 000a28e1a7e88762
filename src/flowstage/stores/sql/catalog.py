"""The catalog (`CatalogStore`, stores/catalog.py) in a SQL run store's database.

The tables of migration 0003. `record` reads the current version and writes the new one in one
write transaction of the run store, so two crawls of one table never both make version N+1.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flowstage.stores.catalog import CatalogTable, table_change

if TYPE_CHECKING:  # the run store opens these lazily: a type, not an import
    from flowstage.stores.sql.store import SqlRunStore


class SqlCatalog:
    """Catalog tables kept in a SQL run store's database."""

    def __init__(self, store: SqlRunStore) -> None:
        self.store = store

    def get(self, name: str) -> CatalogTable | None:
        with self.store.read_transaction() as tx:
            rows = tx.query("SELECT * FROM catalog_tables WHERE name = :n", {"n": name})
        return _table(rows[0]) if rows else None

    def tables(self) -> list[CatalogTable]:
        with self.store.read_transaction() as tx:
            rows = tx.query("SELECT * FROM catalog_tables ORDER BY updated_at DESC, name")
        return [_table(r) for r in rows]

    def history(self, name: str) -> list[dict[str, Any]]:
        with self.store.read_transaction() as tx:
            rows = tx.query("SELECT * FROM catalog_versions WHERE name = :n ORDER BY version DESC", {"n": name})
        return [
            {
                "version": r["version"],
                "columns": json.loads(r["columns"]),
                "partitions": json.loads(r["partitions"]),
                "change": json.loads(r["change"]),
                "at": r["at"],
                "run_id": r["run_id"],
            }
            for r in rows
        ]

    def record(self, found: CatalogTable, *, at: float, run_id: str | None = None) -> tuple[int, dict[str, Any] | None]:
        """Store what a crawl found; returns (current version, the change or None)."""
        lock = "" if self.store.is_sqlite else " FOR UPDATE"
        with self.store.write_transaction() as tx:
            rows = tx.query(f"SELECT * FROM catalog_tables WHERE name = :n{lock}", {"n": found.name})
            current = _table(rows[0]) if rows else None
            change = table_change(current, found)
            values = {
                "n": found.name,
                "loc": found.location,
                "conn": found.connection,
                "fmt": found.format,
                "cols": json.dumps(found.columns),
                "parts": json.dumps(found.partitions),
                "rows": found.row_estimate,
                "at": at,
                "run": run_id,
            }
            if current is None:
                version = 1
                tx.execute(
                    "INSERT INTO catalog_tables (name, location, connection, format, columns, partitions, row_estimate, version, "
                    "created_at, updated_at, crawled_by) VALUES (:n, :loc, :conn, :fmt, :cols, :parts, :rows, 1, :at, :at, :run)",
                    values,
                )
            else:
                version = current.version + (1 if change else 0)
                tx.execute(
                    "UPDATE catalog_tables SET location = :loc, connection = :conn, format = :fmt, columns = :cols, "
                    "partitions = :parts, row_estimate = :rows, version = :v, updated_at = :at, crawled_by = :run WHERE name = :n",
                    {**values, "v": version},
                )
            if change is not None:
                tx.execute(
                    "INSERT INTO catalog_versions (name, version, columns, partitions, change, at, run_id) "
                    "VALUES (:n, :v, :cols, :parts, :change, :at, :run)",
                    {**values, "v": version, "change": json.dumps(change)},
                )
        return version, change


def _table(r: Any) -> CatalogTable:
    return CatalogTable(
        name=r["name"],
        location=r["location"],
        connection=r["connection"],
        format=r["format"],
        columns=json.loads(r["columns"]),
        partitions=json.loads(r["partitions"]),
        row_estimate=r["row_estimate"],
        version=r["version"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


__all__ = ["SqlCatalog"]
