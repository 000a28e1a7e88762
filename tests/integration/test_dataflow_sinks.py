"""Dataflow table sinks and table sources on DuckDB (the warehouse), PostgreSQL and MariaDB.

Sinks: overwrite replaces, append adds, upsert inserts new keys and updates existing ones, and
running the same upsert twice changes nothing. Sources: a table (or a query) of PostgreSQL or
MariaDB moves into the dataflow as Arrow and joins a file source. Every table is read back here
with a plain query and compared with what Python computes from the generated input.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from tests.conftest import Project
from tests.records import record_of

Row = dict[str, Any]
COUNTRIES = ["DE", "FR", "US", "JP"]
STATUSES = ["paid", "open", "refunded"]


def make_orders(ids: range, seed: int) -> list[Row]:
    rng = random.Random(seed)
    return [
        {
            "order_id": i,
            "customer_id": rng.randint(1, 45),
            "country": rng.choice(COUNTRIES),
            "amount": None if i % 13 == 0 else round(rng.uniform(1, 500), 2),
            "status": rng.choice(STATUSES),
        }
        for i in ids
    ]


def orders_csv(rows: list[Row]) -> str:
    cols = ["order_id", "customer_id", "country", "amount", "status"]
    return "\n".join([",".join(cols)] + [",".join("NA" if r[c] is None else str(r[c]) for c in cols) for r in rows]) + "\n"


def norm(value: Any) -> Any:
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def as_set(rows: list[Row], columns: list[str]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(norm(r[c]) for c in columns) for r in rows)


def task_of(record: dict[str, Any], name: str) -> dict[str, Any]:
    task = next(t for t in record["tasks"] if t["name"] == name)
    assert task["status"] == "succeeded", f"{name}: {task['status']}: {task['error']}"
    return task


# ---------------------------------------------------------------------------------------------- backends
@dataclass
class Backend:
    name: str
    connection: str  # the connection name in the project
    url: str | None  # None: the project's DuckDB warehouse
    project: Project

    def env(self) -> dict[str, str]:
        return self.project.env(**({f"FLOWSTAGE_CONN_{self.connection.upper()}": self.url} if self.url else {}))

    def run(self, workflow: str, *args: str) -> dict[str, Any]:
        result = self.project.cli("run", workflow, *args, "--json", env=self.env())
        record = record_of(result)
        assert result.code == 0, [(t["name"], t["status"], t["error"]) for t in record["tasks"]]
        return record

    def rows(self, sql: str) -> list[Row]:
        if self.url is None:
            con = duckdb.connect(str(self.project.root / ".flowstage" / "warehouse.duckdb"), read_only=True)
            try:
                cur = con.execute(sql)
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
            finally:
                con.close()
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(sa.text(sql))]
        finally:
            engine.dispose()

    def create(self, ddl: str, insert: str, rows: list[Row]) -> None:
        assert self.url is not None
        engine = sa.create_engine(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(ddl))
                conn.execute(sa.text(insert), rows)
        finally:
            engine.dispose()


BACKENDS = [
    pytest.param("duckdb", id="duckdb"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mariadb", marks=pytest.mark.mysql),
]
SERVERS = BACKENDS[1:]


@pytest.fixture
def backend(request: pytest.FixtureRequest, project: Project) -> Backend:
    """The sink's database: the warehouse, or a fresh PostgreSQL schema / MariaDB database."""
    kind = request.param
    if kind == "duckdb":
        return Backend("duckdb", "warehouse", None, project)
    if kind == "postgres":
        return Backend("postgres", "db", request.getfixturevalue("pg_schema_url"), project)
    return Backend("mariadb", "db", request.getfixturevalue("mysql_db_url"), project)


def write_sink_workflow(backend: Backend, mode: str, keys: list[str] | None = None) -> None:
    key_text = f", keys: [{', '.join(keys)}]" if keys else ""
    backend.project.write(
        f"workflows/{mode}.yaml",
        f"""
        name: {mode}
        variables: {{status: paid}}
        tasks:
          - name: load
            dataflow:
              name: load_{mode}
              sources: {{orders: {{file: data/orders.csv}}}}
              steps:
                - from: orders
                - filter: "status = :status"
                - select: [order_id, country, amount, status]
              sink: {{table: orders_out, connection: {backend.connection}, mode: {mode}{key_text}}}
        """,
    )


COLUMNS = ["order_id", "country", "amount", "status"]


def table_rows(backend: Backend) -> Counter[tuple[Any, ...]]:
    return as_set(backend.rows("SELECT order_id, country, amount, status FROM orders_out"), COLUMNS)


# ---------------------------------------------------------------------------------------------- sinks
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_overwrite_replaces_the_whole_table(backend: Backend) -> None:
    orders = make_orders(range(1, 301), seed=1)
    backend.project.write("data/orders.csv", orders_csv(orders))
    write_sink_workflow(backend, "overwrite")

    record = backend.run("overwrite")
    paid = [o for o in orders if o["status"] == "paid"]
    assert task_of(record, "load")["metrics"]["rows_written"] == len(paid)
    assert table_rows(backend) == as_set(paid, COLUMNS)

    backend.run("overwrite", "--var", "status=open")
    assert table_rows(backend) == as_set([o for o in orders if o["status"] == "open"], COLUMNS)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_append_adds_the_rows_of_every_run(backend: Backend) -> None:
    orders = make_orders(range(1, 301), seed=2)
    backend.project.write("data/orders.csv", orders_csv(orders))
    write_sink_workflow(backend, "append")

    backend.run("append")  # creates the table
    record = backend.run("append", "--var", "status=refunded")
    refunded = [o for o in orders if o["status"] == "refunded"]
    assert task_of(record, "load")["metrics"]["rows_written"] == len(refunded)
    assert table_rows(backend) == as_set([o for o in orders if o["status"] in ("paid", "refunded")], COLUMNS)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_upsert_inserts_new_keys_updates_old_ones_and_is_idempotent(backend: Backend) -> None:
    write_sink_workflow(backend, "upsert", keys=["order_id"])
    first = make_orders(range(1, 201), seed=3)
    # the second feed overlaps the first on 101..200 with other values, and adds 201..300
    second = make_orders(range(101, 301), seed=4)
    for o in second:
        o["status"] = "paid"  # every row passes the filter, so every overlapping key is updated
    for o in first:
        o["status"] = "paid"

    backend.project.write("data/orders.csv", orders_csv(first))
    backend.run("upsert")
    assert table_rows(backend) == as_set(first, COLUMNS)

    backend.project.write("data/orders.csv", orders_csv(second))
    backend.run("upsert")
    merged = {o["order_id"]: o for o in first} | {o["order_id"]: o for o in second}  # the newer values win
    expected = as_set(list(merged.values()), COLUMNS)
    assert len(merged) == 300
    assert table_rows(backend) == expected

    record = backend.run("upsert")  # the same feed again: nothing changes
    assert task_of(record, "load")["metrics"]["rows_written"] == len(second)
    assert table_rows(backend) == expected
    assert backend.rows("SELECT count(*) AS n FROM orders_out")[0]["n"] == 300


# ---------------------------------------------------------------------------------------------- sources
@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_server_table_and_query_sources_join_a_file_source_through_arrow(backend: Backend) -> None:
    orders = make_orders(range(1, 301), seed=5)
    rng = random.Random(6)
    customers = [
        {
            "customer_id": c,
            "name": f"customer {c}",
            "segment": rng.choice(["smb", "ent", "gov"]),
            "credit": Decimal(f"{rng.randint(0, 99999)}.{rng.randint(0, 99):02d}"),
        }
        for c in range(1, 41)
    ]
    text_type = "VARCHAR(40)" if backend.name == "mariadb" else "TEXT"
    backend.create(
        f"CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name {text_type}, segment {text_type}, credit DECIMAL(9, 2))",
        "INSERT INTO customers VALUES (:customer_id, :name, :segment, :credit)",
        customers,
    )
    backend.project.write("data/orders.csv", orders_csv(orders))
    backend.project.write(
        "workflows/mix.yaml",
        f"""
        name: mix
        tasks:
          - name: by_table
            dataflow:
              name: by_table
              sources:
                orders: {{file: data/orders.csv}}
                customers: {{table: customers, connection: {backend.connection}}}
              steps:
                - from: orders
                - join: {{with: customers, using: [customer_id]}}
                - aggregate: {{by: [segment], metrics: {{revenue: sum(amount), n: count(*), credit: max(credit)}}}}
              sink: {{file: out/by_table.parquet}}
          - name: by_query
            variables: {{segment: ent}}
            dataflow:
              name: by_query
              sources:
                orders: {{file: data/orders.csv}}
                ent: {{query: "SELECT customer_id, name FROM customers WHERE segment = :segment", connection: {backend.connection}}}
              steps:
                - from: orders
                - join: {{with: ent, using: [customer_id], how: semi}}
                - select: [order_id]
              sink: {{file: out/by_query.csv}}
        """,
    )
    record = backend.run("mix")

    by_id = {c["customer_id"]: c for c in customers}
    groups: dict[str, list[Row]] = {}
    for o in orders:
        if o["customer_id"] in by_id:
            groups.setdefault(by_id[o["customer_id"]]["segment"], []).append(o)
    expected = [
        {
            "segment": seg,
            "revenue": sum(o["amount"] for o in rows if o["amount"] is not None),
            "n": len(rows),
            "credit": max(by_id[o["customer_id"]]["credit"] for o in rows),
        }
        for seg, rows in groups.items()
    ]
    con = duckdb.connect()
    try:
        cur = con.execute("SELECT * FROM read_parquet(?)", [str(backend.project.root / "out" / "by_table.parquet")])
        cols = [d[0] for d in cur.description]
        got = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
    assert cols == ["segment", "revenue", "n", "credit"]
    assert as_set(got, cols) == as_set(expected, cols)

    metrics = task_of(record, "by_table")["metrics"]
    assert metrics["rows_read_by_source"] == {"orders": 300, "customers": 40}
    assert metrics["rows_read"] == 340

    ent = {c["customer_id"] for c in customers if c["segment"] == "ent"}
    lines = (backend.project.root / "out" / "by_query.csv").read_text().split()
    assert sorted(int(x) for x in lines[1:]) == sorted(o["order_id"] for o in orders if o["customer_id"] in ent)
    assert task_of(record, "by_query")["metrics"]["rows_read_by_source"]["ent"] == len(ent)

    logs = backend.project.cli("logs", record["id"], "by_table", env=backend.env())
    assert logs.code == 0, logs
    assert "source customers: 40 rows" in logs.out
    assert "(Arrow)" in logs.out
