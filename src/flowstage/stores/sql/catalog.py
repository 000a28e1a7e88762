"""The data catalog in the run store: tables, their columns, and a version per schema change.

`record` compares what a crawler found with the current version in one write transaction: a new
version is written only when columns were added, removed or changed type (or partitions changed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flowstage.stores.sql.store import SqlRunStore


@dataclass
class CatalogTable:
    name: str
    location: str
    connection: str | None
    format: str | None
    columns: list[dict[str, str]]
    partitions: list[str] = field(default_factory=list)
    row_estimate: int | None = None
    version: int = 0
    created_at: float | None = None
    updated_at: float | None = None


def schema_change(old: list[dict[str, str]] | None, new: list[dict[str, str]]) -> dict[str, Any] | None:
    """What changed between two column lists, or None when nothing did."""
    if old is None:
        return {"created": True, "added": [c["name"] for c in new], "removed": [], "retyped": []}
    before = {c["name"]: c["type"] for c in old}
    after = {c["name"]: c["type"] for c in new}
    added = [n for n in after if n not in before]
    removed = [n for n in before if n not in after]
    retyped = [{"name": n, "from": before[n], "to": after[n]} for n in after if n in before and before[n] != after[n]]
    if not (added or removed or retyped):
        return None
    return {"added": added, "removed": removed, "retyped": retyped}


def describe_change(change: dict[str, Any]) -> str:
    if change.get("created"):
        return f"new table with {len(change['added'])} columns"
    parts = []
    if change["added"]:
        parts.append("added " + ", ".join(change["added"]))
    if change["removed"]:
        parts.append("removed " + ", ".join(change["removed"]))
    for r in change["retyped"]:
        parts.append(f"{r['name']} {r['from']} -> {r['to']}")
    if change.get("partitions"):
        parts.append("partitions " + ", ".join(change["partitions"]) if change["partitions"] else "partitions removed")
    return "; ".join(parts)


class SqlCatalog:
    """Catalog tables kept in a SQL run store's database."""

    def __init__(self, store: SqlRunStore) -> None:
        self.store = store

    def get(self, name: str) -> CatalogTable | None:
        with self.store._read() as tx:
            rows = tx.query("SELECT * FROM catalog_tables WHERE name = :n", {"n": name})
        return _table(rows[0]) if rows else None

    def tables(self) -> list[CatalogTable]:
        with self.store._read() as tx:
            rows = tx.query("SELECT * FROM catalog_tables ORDER BY updated_at DESC, name")
        return [_table(r) for r in rows]

    def history(self, name: str) -> list[dict[str, Any]]:
        with self.store._read() as tx:
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
        with self.store._write() as tx:
            rows = tx.query("SELECT * FROM catalog_tables WHERE name = :n", {"n": found.name})
            current = _table(rows[0]) if rows else None
            change = schema_change(current.columns if current else None, found.columns)
            if current is not None and sorted(current.partitions) != sorted(found.partitions):
                change = dict(change or {"added": [], "removed": [], "retyped": []}, partitions=found.partitions)
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
