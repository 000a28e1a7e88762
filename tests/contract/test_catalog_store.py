"""One conformance suite for the catalog: memory (the reference), SQLite and PostgreSQL.

`CatalogStoreContract` states what a catalog does with what crawlers find: a table's first crawl
is version 1, a crawl that finds the same schema makes no version, and added, removed or retyped
columns or changed partitions make the next one, kept in the table's history.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowstage.stores.base import RunStore
from flowstage.stores.catalog import CatalogStore, CatalogTable, describe_change, table_change
from flowstage.stores.memory import MemoryRunStore
from flowstage.stores.memory_catalog import MemoryCatalog
from flowstage.stores.sql.catalog import SqlCatalog
from flowstage.stores.sql.store import SqlRunStore

T0 = 1_800_000_000.0


def found(name: str = "raw.orders", columns: dict[str, str] | None = None, **extra: object) -> CatalogTable:
    cols = {"id": "BIGINT", "amount": "DOUBLE"} if columns is None else columns
    table = CatalogTable(
        name=name,
        location="data/orders/*.csv",
        connection=None,
        format="csv",
        columns=[{"name": n, "type": t} for n, t in cols.items()],
        row_estimate=100,
    )
    for key, value in extra.items():
        setattr(table, key, value)
    return table


class CatalogStoreContract:
    """What every catalog does. A backend's class provides the `store` fixture; the tests are shared."""

    @pytest.fixture
    def store(self) -> Iterator[RunStore]:
        raise NotImplementedError("each backend's test class opens its store")

    @pytest.fixture
    def catalog(self, store: RunStore) -> CatalogStore:
        found: CatalogStore = store.catalog
        return found

    def test_a_run_store_hands_out_one_catalog(self, store: RunStore) -> None:
        assert store.catalog is store.catalog

    def test_a_first_crawl_creates_version_one_with_every_column(self, catalog: CatalogStore) -> None:
        version, change = catalog.record(found(partitions=["day"]), at=T0, run_id="r1")
        assert (version, change) == (1, {"created": True, "added": ["id", "amount"], "removed": [], "retyped": []})
        table = catalog.get("raw.orders")
        assert table is not None
        assert (table.version, table.location, table.connection, table.format, table.row_estimate) == (
            1,
            "data/orders/*.csv",
            None,
            "csv",
            100,
        )
        assert table.columns == [{"name": "id", "type": "BIGINT"}, {"name": "amount", "type": "DOUBLE"}]
        assert (table.partitions, table.created_at, table.updated_at) == (["day"], T0, T0)
        assert catalog.history("raw.orders") == [
            {
                "version": 1,
                "columns": table.columns,
                "partitions": ["day"],
                "change": change,
                "at": T0,
                "run_id": "r1",
            }
        ]

    def test_an_unchanged_schema_makes_no_version_but_refreshes_the_table(self, catalog: CatalogStore) -> None:
        catalog.record(found(), at=T0)
        version, change = catalog.record(found(row_estimate=250, location="data/orders/2024/*.csv"), at=T0 + 10, run_id="r2")
        assert (version, change) == (1, None)
        table = catalog.get("raw.orders")
        assert table is not None
        assert (table.version, table.row_estimate, table.location, table.created_at, table.updated_at) == (
            1,
            250,
            "data/orders/2024/*.csv",
            T0,
            T0 + 10,
        )
        assert [h["version"] for h in catalog.history("raw.orders")] == [1]

    def test_added_removed_and_retyped_columns_make_the_next_versions(self, catalog: CatalogStore) -> None:
        catalog.record(found(), at=T0)
        added = catalog.record(found(columns={"id": "BIGINT", "amount": "DOUBLE", "ts": "TIMESTAMP"}), at=T0 + 1)
        assert added == (2, {"added": ["ts"], "removed": [], "retyped": []})
        retyped = catalog.record(found(columns={"id": "VARCHAR", "ts": "TIMESTAMP"}), at=T0 + 2, run_id="r3")
        assert retyped == (
            3,
            {"added": [], "removed": ["amount"], "retyped": [{"name": "id", "from": "BIGINT", "to": "VARCHAR"}]},
        )
        history = catalog.history("raw.orders")
        assert [(h["version"], h["at"], h["run_id"]) for h in history] == [(3, T0 + 2, "r3"), (2, T0 + 1, None), (1, T0, None)]
        assert history[0]["columns"] == [{"name": "id", "type": "VARCHAR"}, {"name": "ts", "type": "TIMESTAMP"}]

    def test_changed_partitions_make_a_version_even_with_the_same_columns(self, catalog: CatalogStore) -> None:
        catalog.record(found(partitions=["day"]), at=T0)
        assert catalog.record(found(partitions=["day"]), at=T0 + 1) == (1, None)
        version, change = catalog.record(found(partitions=["day", "region"]), at=T0 + 2)
        assert (version, change) == (2, {"added": [], "removed": [], "retyped": [], "partitions": ["day", "region"]})
        assert catalog.record(found(partitions=["region", "day"]), at=T0 + 3) == (2, None)  # the same set
        assert catalog.record(found(partitions=[]), at=T0 + 4)[0] == 3
        assert catalog.history("raw.orders")[0]["partitions"] == []

    def test_tables_list_the_latest_crawled_first(self, catalog: CatalogStore) -> None:
        assert catalog.tables() == []
        catalog.record(found("b"), at=T0)
        catalog.record(found("a"), at=T0 + 1)
        catalog.record(found("c"), at=T0 + 1)
        assert [t.name for t in catalog.tables()] == ["a", "c", "b"]
        catalog.record(found("b"), at=T0 + 2)
        assert [t.name for t in catalog.tables()] == ["b", "a", "c"]
        assert catalog.get("nope") is None
        assert catalog.history("nope") == []

    def test_what_the_catalog_returns_is_a_copy(self, catalog: CatalogStore) -> None:
        crawled = found()
        catalog.record(crawled, at=T0)
        crawled.columns.append({"name": "sneaky", "type": "TEXT"})
        table = catalog.get("raw.orders")
        assert table is not None
        table.columns.clear()
        catalog.history("raw.orders")[0]["columns"].clear()
        again = catalog.get("raw.orders")
        assert again is not None
        assert [c["name"] for c in again.columns] == ["id", "amount"]
        assert [c["name"] for c in catalog.history("raw.orders")[0]["columns"]] == ["id", "amount"]

    def test_crawls_of_one_table_at_once_each_get_their_own_version(self, catalog: CatalogStore) -> None:
        catalog.record(found(), at=T0)
        versions: list[int] = []
        lock = threading.Lock()
        start = threading.Barrier(4)

        def crawl(i: int) -> None:
            start.wait(timeout=30)
            version, _ = catalog.record(found(columns={"id": "BIGINT", f"c{i}": "TEXT"}), at=T0 + 1 + i)
            with lock:
                versions.append(version)

        threads = [threading.Thread(target=crawl, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(versions) == [2, 3, 4, 5]
        assert [h["version"] for h in catalog.history("raw.orders")] == [5, 4, 3, 2, 1]


class TestMemoryCatalog(CatalogStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[RunStore]:
        store = MemoryRunStore()
        yield store
        store.close()

    def test_the_memory_store_hands_out_its_reference_catalog(self, store: RunStore) -> None:
        assert isinstance(store.catalog, MemoryCatalog)


class SqlCatalogContract(CatalogStoreContract):
    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError("each SQL backend's test class gives its URL")

    @pytest.fixture
    def store(self, url: str) -> Iterator[RunStore]:
        store = SqlRunStore(url)
        yield store
        store.close()

    def test_the_sql_store_hands_out_its_catalog_and_another_store_on_the_database_sees_it(
        self, store: SqlRunStore, url: str
    ) -> None:
        assert isinstance(store.catalog, SqlCatalog)
        store.catalog.record(found(), at=T0)
        other = SqlRunStore(url)
        try:
            assert [t.name for t in other.catalog.tables()] == ["raw.orders"]
        finally:
            other.close()


class TestSqliteCatalog(SqlCatalogContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.mark.postgres
class TestPostgresCatalog(SqlCatalogContract):
    @pytest.fixture
    def url(self, pg_schema_url: str) -> str:
        return pg_schema_url


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"created": True, "added": ["a", "b"], "removed": [], "retyped": []}, "new table with 2 columns"),
        (
            {"added": ["c"], "removed": ["d"], "retyped": [{"name": "e", "from": "INT", "to": "TEXT"}]},
            "added c; removed d; e INT -> TEXT",
        ),
        ({"added": [], "removed": [], "retyped": [], "partitions": ["day"]}, "partitions day"),
        ({"added": [], "removed": [], "retyped": [], "partitions": []}, "partitions removed"),
    ],
)
def test_a_schema_change_reads_as_one_line(change: dict[str, object], line: str) -> None:
    assert describe_change(change) == line


def test_a_table_seen_for_the_first_time_changes_everything_and_a_same_one_nothing() -> None:
    assert table_change(None, found()) == {"created": True, "added": ["id", "amount"], "removed": [], "retyped": []}
    assert table_change(found(version=3), found()) is None
