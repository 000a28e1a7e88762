"""Crawlers and the catalog: schema inference, schema versions, hive partitions, database tables.

Files are generated here; what the crawler must find is known from how they were written (the
columns, their kinds, the number of rows), and a `{catalog: name}` source must read back exactly
the rows written.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from tests.conftest import Project
from tests.records import record_of

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


def run_json(project: Project, workflow: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = project.cli("run", workflow, "--json", env=env)
    record = record_of(result)
    assert result.code == 0, [(t["name"], t["status"], t["error"]) for t in record["tasks"]]
    return record


def task_of(record: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in record["tasks"] if t["name"] == name)


def catalog(project: Project, *name: str, env: dict[str, str] | None = None) -> Any:
    result = project.cli("catalog", *name, "--json", env=env)
    assert result.code == 0, result
    return record_of(result)


def columns_of(entry: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["type"] for c in entry["columns"]}


# ---------------------------------------------------------------------------------------------- files
def write_orders_v1(project: Project) -> list[dict[str, Any]]:
    """Orders in region=…/year=… folders: id BIGINT, amount DOUBLE (with null markers), note VARCHAR."""
    rows = []
    markers = iter(["NA", "", "N/A", "NULL", "null"] * 10)
    for region, year, ids in (("EU", 2024, range(1, 21)), ("EU", 2025, range(21, 31)), ("US", 2024, range(31, 46))):
        lines = ["id,amount,note,ordered_on"]
        for i in ids:
            amount = None if i % 7 == 0 else round(i * 1.25, 2)
            lines.append(f"{i},{next(markers) if amount is None else amount},note {i},2024-03-{1 + i % 28:02d}")
            rows.append({"id": i, "amount": amount, "region": region, "year": year})
        project.write(f"data/orders/region={region}/year={year}/part.csv", "\n".join(lines) + "\n")
    return rows


def write_orders_v2(project: Project) -> None:
    """The same folders, now: `qty` added, `amount` text, `note` gone."""
    for region, year, ids in (("EU", 2024, range(1, 21)), ("EU", 2025, range(21, 31)), ("US", 2024, range(31, 46))):
        lines = ["id,amount,ordered_on,qty"] + [f"{i},EUR {i},2024-03-{1 + i % 28:02d},{i % 5}" for i in ids]
        project.write(f"data/orders/region={region}/year={year}/part.csv", "\n".join(lines) + "\n")


CRAWL_WORKFLOW = """
name: crawl
tasks:
  - name: crawl_orders
    crawl: {path: "data/orders/**/*.csv", table: raw.orders}
    save: found
"""


def test_schema_changes_make_new_versions_and_an_unchanged_crawl_adds_none(project: Project) -> None:
    rows = write_orders_v1(project)
    project.write("workflows/crawl.yaml", CRAWL_WORKFLOW)

    first = run_json(project, "crawl")
    found = task_of(first, "crawl_orders")["saved"]["found"]["tables"]
    assert [(t["table"], t["version"]) for t in found] == [("raw.orders", 1)]
    assert found[0]["change"]["created"] is True
    entry = catalog(project, "raw.orders")
    assert columns_of(entry) == {
        "id": "BIGINT",
        "amount": "DOUBLE",  # NA, N/A, NULL, null and empty cells are nulls, not text
        "note": "VARCHAR",
        "ordered_on": "DATE",
        "region": "VARCHAR",
        "year": "BIGINT",
    }
    assert entry["partitions"] == ["region", "year"]  # hive partition columns, from the folders
    assert entry["format"] == "csv"
    assert entry["location"] == "data/orders/**/*.csv"
    assert entry["row_estimate"] == len(rows)
    assert [h["version"] for h in entry["history"]] == [1]

    again = run_json(project, "crawl")
    found = task_of(again, "crawl_orders")["saved"]["found"]["tables"]
    assert [(t["version"], t["change"]) for t in found] == [(1, None)]
    assert [h["version"] for h in catalog(project, "raw.orders")["history"]] == [1]

    write_orders_v2(project)
    changed = run_json(project, "crawl")
    found = task_of(changed, "crawl_orders")["saved"]["found"]["tables"]
    expected_change = {"added": ["qty"], "removed": ["note"], "retyped": [{"name": "amount", "from": "DOUBLE", "to": "VARCHAR"}]}
    assert [(t["version"], t["change"]) for t in found] == [(2, expected_change)]
    assert task_of(changed, "crawl_orders")["metrics"]["schema_changes"] == 1
    logs = project.cli("logs", changed["id"], "crawl_orders")
    assert "schema version 2: added qty; removed note; amount DOUBLE -> VARCHAR" in logs.out, logs

    entry = catalog(project, "raw.orders")
    assert entry["version"] == 2
    assert columns_of(entry) == {
        "id": "BIGINT",
        "amount": "VARCHAR",
        "ordered_on": "DATE",
        "qty": "BIGINT",
        "region": "VARCHAR",
        "year": "BIGINT",
    }
    history = entry["history"]
    assert [h["version"] for h in history] == [2, 1]  # newest first
    assert history[0]["change"] == expected_change
    assert [c["name"] for c in history[1]["columns"]] == ["id", "amount", "note", "ordered_on", "region", "year"]
    assert all(ISO_UTC.match(h["at"]) for h in history), history
    assert history[0]["at"] > history[1]["at"]

    run_json(project, "crawl")  # nothing changed since version 2
    entry = catalog(project, "raw.orders")
    assert entry["version"] == 2
    assert [h["version"] for h in entry["history"]] == [2, 1]


def test_catalog_source_reads_the_crawled_files_and_catalog_lists_every_table(project: Project) -> None:
    rows = write_orders_v1(project)
    project.write("data/events/a.ndjson", '{"kind": "view", "n": 1}\n{"kind": "buy", "n": 2}\n')
    project.write(
        "workflows/use.yaml",
        """
        name: use
        stages:
          - name: crawl
            tasks:
              - name: crawl_orders
                crawl: {path: "data/orders/**/*.csv", table: raw.orders}
              - name: crawl_events
                crawl: {path: "data/events/*.ndjson", table: raw.events}
          - name: read
            tasks:
              - name: revenue
                dataflow:
                  name: revenue
                  sources: {orders: {catalog: raw.orders}}
                  steps:
                    - from: orders
                    - aggregate: {by: [region, year], metrics: {revenue: sum(amount), n: count(*), missing: count(*) - count(amount)}}
                  sink: {file: out/revenue.parquet}
        """,
    )
    record = run_json(project, "use")
    assert task_of(record, "revenue")["metrics"]["rows_read"] == len(rows)

    expected: dict[tuple[str, int], list[Any]] = {}
    for r in rows:
        bucket = expected.setdefault((r["region"], r["year"]), [0.0, 0, 0])
        bucket[0] += r["amount"] or 0
        bucket[1] += 1
        bucket[2] += r["amount"] is None
    con = duckdb.connect()
    try:
        got = con.execute(
            "SELECT region, year, revenue, n, missing FROM read_parquet(?)", [str(project.root / "out" / "revenue.parquet")]
        ).fetchall()
    finally:
        con.close()
    assert Counter((g[0], int(g[1]), round(g[2], 6), g[3], g[4]) for g in got) == Counter(
        (k[0], k[1], round(v[0], 6), v[1], v[2]) for k, v in expected.items()
    )

    listing = catalog(project)
    assert isinstance(listing, list)
    assert sorted(t["name"] for t in listing) == ["raw.events", "raw.orders"]
    events = next(t for t in listing if t["name"] == "raw.events")
    assert events["format"] == "json"
    assert columns_of(events) == {"kind": "VARCHAR", "n": "BIGINT"}
    assert events["row_estimate"] == 2
    assert events["partitions"] == []
    for t in listing:
        assert {"name", "location", "format", "columns", "partitions", "row_estimate"} <= set(t)

    missing = project.cli("catalog", "raw.nothing", "--json")
    assert missing.code != 0
    assert "Traceback" not in missing.out + missing.err


# ---------------------------------------------------------------------------------------------- database tables
@pytest.mark.postgres
def test_crawl_postgres_tables_by_pattern_with_columns_and_row_estimates(project: Project, pg_schema_url: str) -> None:
    engine = sa.create_engine(pg_schema_url)
    try:
        with engine.begin() as conn:
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
            conn.execute(
                sa.text(
                    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, credit NUMERIC(9, 2), "
                    "since DATE, active BOOLEAN)"
                )
            )
            conn.execute(sa.text("CREATE TABLE orders (id BIGINT, customer_id INTEGER, amount DOUBLE PRECISION)"))
            conn.execute(sa.text("CREATE TABLE audit_log (line TEXT)"))
            conn.execute(
                sa.text(
                    "INSERT INTO customers SELECT g, 'c' || g, g * 1.5, DATE '2024-01-01' + g, g % 2 = 0 FROM generate_series(1, 37) g"
                )
            )
            conn.execute(sa.text("INSERT INTO orders SELECT g, 1 + g % 37, g * 0.5 FROM generate_series(1, 250) g"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE customers"))
            conn.execute(sa.text("ANALYZE orders"))
    finally:
        engine.dispose()
    assert isinstance(schema, str)
    assert schema.startswith("t_")

    env = project.env(FLOWSTAGE_CONN_PG=pg_schema_url)
    project.write(
        "workflows/crawl_pg.yaml",
        f"""
        name: crawl_pg
        stages:
          - name: crawl
            tasks:
              - name: everything
                crawl: {{connection: pg, tables: ["{schema}.*"], table: shop}}
                save: found
              - name: some
                crawl: {{connection: pg, tables: ["{schema}.cust*", "{schema}.ord*"], table: picked}}
                save: picked
          - name: read
            tasks:
              - name: from_catalog
                dataflow:
                  name: from_catalog
                  sources: {{customers: {{catalog: shop.customers}}}}
                  steps:
                    - from: customers
                    - filter: active
                    - aggregate: {{metrics: {{n: count(*), credit: sum(credit)}}}}
                  sink: {{file: out/active.csv}}
        """,
    )
    record = run_json(project, "crawl_pg", env=env)

    found = task_of(record, "everything")["saved"]["found"]["tables"]
    assert sorted(t["table"] for t in found) == ["shop.audit_log", "shop.customers", "shop.orders"]
    picked = task_of(record, "some")["saved"]["picked"]["tables"]
    assert sorted(t["table"] for t in picked) == ["picked.customers", "picked.orders"]

    customers = catalog(project, "shop.customers", env=env)
    assert customers["location"] == f"{schema}.customers"
    assert customers["connection"] == "pg"
    assert columns_of(customers) == {
        "id": "INTEGER",
        "name": "TEXT",
        "credit": "NUMERIC(9, 2)",
        "since": "DATE",
        "active": "BOOLEAN",
    }
    assert customers["row_estimate"] == 37
    orders = catalog(project, "shop.orders", env=env)
    assert columns_of(orders) == {"id": "BIGINT", "customer_id": "INTEGER", "amount": "DOUBLE PRECISION"}
    assert orders["row_estimate"] == 250
    assert [h["version"] for h in orders["history"]] == [1]

    lines = (project.root / "out" / "active.csv").read_text().split()
    assert lines[0] == "n,credit"
    n, credit = lines[1].split(",")
    even = [g for g in range(1, 38) if g % 2 == 0]
    assert int(n) == len(even)
    assert float(credit) == pytest.approx(sum(g * 1.5 for g in even))
