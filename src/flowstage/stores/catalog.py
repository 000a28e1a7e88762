"""The data catalog's port: tables crawlers found, their columns, and a version per schema change.

`CatalogStore` is what crawlers write through and the faces read (`flowstage catalog`, the API).
`MemoryCatalog` (stores/memory_catalog.py) is its reference implementation and `SqlCatalog`
(stores/sql/catalog.py) keeps it in a SQL run store's database; a run store hands out its own
as `store.catalog`. `record` compares what a crawl found with the current version: a new version
is written only when columns were added, removed or changed type, or the partitions changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


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


def table_change(current: CatalogTable | None, found: CatalogTable) -> dict[str, Any] | None:
    """What a crawl that found `found` changes in the table now recorded as `current` (None: nothing)."""
    change = schema_change(current.columns if current else None, found.columns)
    if current is not None and sorted(current.partitions) != sorted(found.partitions):
        change = dict(change or {"added": [], "removed": [], "retyped": []}, partitions=found.partitions)
    return change


def describe_change(change: dict[str, Any]) -> str:
    """One line for a schema change, as `flowstage catalog NAME` and the crawl's log show it."""
    if change.get("created"):
        return f"new table with {len(change['added'])} columns"
    parts = []
    if change["added"]:
        parts.append("added " + ", ".join(change["added"]))
    if change["removed"]:
        parts.append("removed " + ", ".join(change["removed"]))
    for r in change["retyped"]:
        parts.append(f"{r['name']} {r['from']} -> {r['to']}")
    if "partitions" in change:
        parts.append("partitions " + ", ".join(change["partitions"]) if change["partitions"] else "partitions removed")
    return "; ".join(parts)


class CatalogStore(Protocol):
    """The catalog tables of one run store."""

    def get(self, name: str) -> CatalogTable | None:
        """The table `name` as last crawled, or None."""
        ...

    def tables(self) -> list[CatalogTable]:
        """Every table, the latest crawled first (then by name)."""
        ...

    def history(self, name: str) -> list[dict[str, Any]]:
        """The schema versions of `name`, newest first: version, columns, partitions, change, at, run_id."""
        ...

    def record(self, found: CatalogTable, *, at: float, run_id: str | None = None) -> tuple[int, dict[str, Any] | None]:
        """Store what a crawl found; returns (the current version, the change or None)."""
        ...


class HasCatalog(Protocol):
    """A run store that keeps a catalog beside its runs."""

    @property
    def catalog(self) -> CatalogStore: ...


__all__ = ["CatalogStore", "CatalogTable", "HasCatalog", "describe_change", "schema_change", "table_change"]
