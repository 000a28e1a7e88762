"""The in-memory catalog: the reference implementation of `CatalogStore` (stores/catalog.py).

What a `MemoryRunStore` hands out as `store.catalog`. It copies what goes in and what comes out,
so callers never edit the record behind its back.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from flowstage.stores.catalog import CatalogTable, table_change


class MemoryCatalog:
    """Catalog tables kept in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, CatalogTable] = {}
        self._history: dict[str, list[dict[str, Any]]] = {}

    def get(self, name: str) -> CatalogTable | None:
        with self._lock:
            found = self._tables.get(name)
            return copy.deepcopy(found)

    def tables(self) -> list[CatalogTable]:
        with self._lock:
            found = copy.deepcopy(list(self._tables.values()))
        found.sort(key=lambda t: t.name)
        found.sort(key=lambda t: t.updated_at or 0.0, reverse=True)
        return found

    def history(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._history.get(name, [])[::-1])

    def record(self, found: CatalogTable, *, at: float, run_id: str | None = None) -> tuple[int, dict[str, Any] | None]:
        """Store what a crawl found; returns (current version, the change or None)."""
        found = copy.deepcopy(found)
        with self._lock:
            current = self._tables.get(found.name)
            change = table_change(current, found)
            version = 1 if current is None else current.version + (1 if change else 0)
            self._tables[found.name] = CatalogTable(
                name=found.name,
                location=found.location,
                connection=found.connection,
                format=found.format,
                columns=found.columns,
                partitions=found.partitions,
                row_estimate=found.row_estimate,
                version=version,
                created_at=at if current is None else current.created_at,
                updated_at=at,
            )
            if change is not None:
                self._history.setdefault(found.name, []).append(
                    {
                        "version": version,
                        "columns": copy.deepcopy(found.columns),
                        "partitions": list(found.partitions),
                        "change": copy.deepcopy(change),
                        "at": at,
                        "run_id": run_id,
                    }
                )
        return version, copy.deepcopy(change)


__all__ = ["MemoryCatalog"]
