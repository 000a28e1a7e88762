"""`sql:` / `sql_file:` tasks on real databases: saving results, transactions, metrics, timeouts.

DuckDB (the default `warehouse`) and SQLite need nothing; PostgreSQL and MariaDB come from
FLOWSTAGE_TEST_POSTGRES_URL / FLOWSTAGE_TEST_MYSQL_URL (one fresh schema or database per test).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Project
from tests.records import record_of, tasks_of, wait_until


def run_json(project: Project, workflow: str, *args: str, env: dict[str, str] | None = None, code: int = 0) -> dict[str, Any]:
    result = project.cli("run", workflow, *args, "--json", env=env)
    assert result.code == code, result
    return record_of(result)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------- save
def test_save_keeps_first_column_of_first_row_and_none_without_rows(project: Project) -> None:
    project.write(
        "workflows/save.yaml",
        """
        name: save
        tasks:
          - name: top
            sql: SELECT x, x * 100 AS y FROM (VALUES (3), (1), (2)) t(x) ORDER BY x DESC
            save: top
          - name: nothing
            sql: SELECT 1 AS one WHERE 1 = 0
            save: nothing
          - name: use
            after: [top, nothing]
            sql: SELECT :top + 1 AS next, :nothing IS NULL AS was_none
            params: {top: "{{ var.top }}", nothing: "{{ var.nothing }}"}
            save: {next: next, was_none: was_none}
        """,
    )
    record = run_json(project, "save")

    tasks = tasks_of(record)
    assert tasks["top"]["saved"] == {"top": 3}
    assert tasks["nothing"]["saved"] == {"nothing": None}
    assert record["variables"]["nothing"] is None
    assert tasks["use"]["saved"] == {"next": 4, "was_none": True}


def test_save_mapping_stores_named_columns_of_first_row(project: Project) -> None:
    project.write(
        "workflows/named.yaml",
        """
        name: named
        tasks:
          - name: pick
            sql: SELECT 'EU' AS region, 42 AS total, 'ignored' AS other UNION ALL SELECT 'US', 7, 'x' ORDER BY total DESC
            save: {best_region: region, best_total: total}
          - name: empty
            sql: SELECT 'EU' AS region, 42 AS total WHERE 1 = 0
            save: {none_region: region, none_total: total}
        """,
    )
    record = run_json(project, "named")

    tasks = tasks_of(record)
    assert tasks["pick"]["saved"] == {"best_region": "EU", "best_total": 42}
    assert tasks["empty"]["saved"] == {"none_region": None, "none_total": None}
    assert "other" not in record["variables"]


def test_save_rows_stores_every_row_as_a_mapping_in_order(project: Project) -> None:
    project.write(
        "workflows/rows.yaml",
        """
        name: rows
        tasks:
          - name: all
            sql: |
              SELECT * FROM (VALUES (1, 'EU', 10.50, DATE '2024-01-02'), (2, 'US', 20.00, DATE '2024-01-03'))
                t(id, region, amount, placed) ORDER BY id
            save_rows: orders
          - name: none
            sql: SELECT 1 AS id WHERE 1 = 0
            save_rows: no_orders
        """,
    )
    record = run_json(project, "rows")

    assert record["variables"]["orders"] == [
        {"id": 1, "region": "EU", "amount": 10.5, "placed": "2024-01-02"},
        {"id": 2, "region": "US", "amount": 20, "placed": "2024-01-03"},
    ]
    assert record["variables"]["no_orders"] == []
    assert tasks_of(record)["all"]["metrics"]["rows_read"] == 2


def test_save_rows_accepts_10000_rows_and_fails_past_the_cap(project: Project) -> None:
    project.write(
        "workflows/cap.yaml",
        """
        name: cap
        tasks:
          - name: at_cap
            sql: SELECT range AS n FROM range(10000)
            save_rows: at_cap
          - name: past_cap
            sql: SELECT range AS n FROM range(10001)
            save_rows: past_cap
        """,
    )
    record = run_json(project, "cap", code=1)

    tasks = tasks_of(record)
    assert tasks["at_cap"]["status"] == "succeeded"
    assert len(record["variables"]["at_cap"]) == 10_000
    assert record["variables"]["at_cap"][-1] == {"n": 9999}
    assert tasks["past_cap"]["status"] == "failed"
    assert "10,000 rows" in tasks["past_cap"]["error"]
    assert "past_cap" not in record["variables"]
    assert tasks["past_cap"]["saved"] == {}


# ---------------------------------------------------------------------------------------------- files, metrics
def test_sql_file_runs_every_statement_in_order_and_counts_rows(project: Project) -> None:
    project.write(
        "sql/load.sql",
        """
        -- a file of several statements; :names are bound from params
        CREATE TABLE sales (region VARCHAR, amount INTEGER);
        INSERT INTO sales VALUES ('EU', 10), ('US', 20), ('EU', :extra);
        /* a block comment with a ; inside */
        UPDATE sales SET amount = amount * 2 WHERE region = :region;
        SELECT region, SUM(amount) AS total FROM sales GROUP BY region ORDER BY region;
        """,
    )
    project.write(
        "workflows/file.yaml",
        """
        name: file
        tasks:
          - name: load
            sql_file: sql/load.sql
            params: {extra: 5, region: EU}
            save_rows: totals
          - name: count
            after: [load]
            sql: SELECT COUNT(*) FROM sales
            save: n
        """,
    )
    record = run_json(project, "file")

    tasks = tasks_of(record)
    assert record["variables"]["totals"] == [{"region": "EU", "total": 30}, {"region": "US", "total": 20}]
    assert record["variables"]["n"] == 3
    # 3 rows inserted + 2 updated; the last SELECT read 2 rows
    assert tasks["load"]["metrics"]["rows_written"] == 5
    assert tasks["load"]["metrics"]["rows_read"] == 2
    assert tasks["count"]["metrics"]["rows_read"] == 1


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_failing_statement_rolls_back_every_statement_of_the_attempt(
    project: Project, request: pytest.FixtureRequest, backend: str
) -> None:
    url = request.getfixturevalue("pg_schema_url") if backend == "postgres" else f"sqlite:///{project.root / 'db.sqlite'}"
    project.write(
        "sql/half.sql",
        """
        CREATE TABLE made_by_failed_attempt (a INTEGER);
        INSERT INTO kept VALUES (2);
        UPDATE kept SET a = 100 WHERE a = 1;
        INSERT INTO missing_table VALUES (3);
        """,
    )
    project.write(
        "workflows/tx.yaml",
        """
        name: tx
        tasks:
          - name: setup
            connection: db
            sql: CREATE TABLE kept (a INTEGER); INSERT INTO kept VALUES (1)
          - name: half
            after: [setup]
            connection: db
            sql_file: sql/half.sql
            retries: 1
            retry_delay: 0s
        """,
    )
    record = run_json(project, "tx", env=project.env(FLOWSTAGE_CONN_DB=url), code=1)

    half = tasks_of(record)["half"]
    assert half["status"] == "failed"
    assert "missing_table" in half["error"]
    # the retry found a clean slate: had attempt 1 kept its CREATE TABLE, attempt 2 would fail on it
    assert [a["status"] for a in half["attempts"]] == ["failed", "failed"]
    assert all("missing_table" in a["error"] for a in half["attempts"])
    assert query(url, "SELECT a FROM kept ORDER BY a") == [(1,)]
    assert "made_by_failed_attempt" not in table_names(url)


def test_rows_metrics_count_rows_read_and_written(project: Project) -> None:
    project.write(
        "workflows/metrics.yaml",
        """
        name: metrics
        stages:
          - name: write
            tasks:
              - name: insert
                connection: lite
                sql: CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2), (3), (4)
          - name: change
            tasks:
              - name: update
                connection: lite
                sql: UPDATE t SET a = a + 10 WHERE a > 2
              - name: read
                connection: lite
                sql: SELECT a FROM t
        """,
    )
    project.write("flowstage.yaml", "connections:\n  lite: sqlite:///lite.db\n")
    record = run_json(project, "metrics")

    tasks = tasks_of(record)
    assert tasks["insert"]["metrics"]["rows_written"] == 4
    assert tasks["update"]["metrics"]["rows_written"] == 2
    assert tasks["read"]["metrics"]["rows_read"] == 4
    assert tasks["read"]["metrics"]["rows_written"] == 0
    assert (project.root / "lite.db").is_file()


# ---------------------------------------------------------------------------------------------- connections
def test_default_warehouse_connection_is_a_duckdb_file_without_any_config(project: Project) -> None:
    (project.root / "flowstage.yaml").unlink()
    project.write(
        "workflows/wh.yaml",
        """
        name: wh
        tasks:
          - name: build
            sql: CREATE TABLE answers AS SELECT 42 AS answer, version() AS engine
          - name: read
            after: [build]
            sql: SELECT answer FROM answers
            save: answer
        """,
    )
    record = run_json(project, "wh")

    assert record["variables"]["answer"] == 42
    import duckdb

    warehouse = project.root / ".flowstage" / "warehouse.duckdb"
    assert warehouse.is_file()
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        assert conn.execute("SELECT answer FROM answers").fetchall() == [(42,)]


def test_unknown_connection_fails_the_task_naming_it_and_the_known_ones(project: Project) -> None:
    project.write(
        "workflows/unknown.yaml",
        """
        name: unknown
        tasks:
          - name: q
            connection: nowhere
            sql: SELECT 1
        """,
    )
    record = run_json(project, "unknown", code=1)

    task = tasks_of(record)["q"]
    assert record["status"] == "failed"
    assert task["status"] == "failed"
    assert "unknown connection 'nowhere'" in task["error"]
    assert "warehouse" in task["error"]
    assert "Traceback" not in task["error"]


@pytest.mark.postgres
def test_timed_out_query_is_stopped_on_the_postgres_server(project: Project, pg_schema_url: str) -> None:
    # a sleep of a duration no other query on the server uses, to find this one in pg_stat_activity
    marker = f"120.{secrets.randbelow(10**6):06d}"
    project.write(
        "workflows/slow.yaml",
        f"""
        name: slow
        tasks:
          - name: sleepy
            connection: pg
            sql: SELECT pg_sleep({marker})
            timeout: 1s
        """,
    )
    started = time.monotonic()
    record = run_json(project, "slow", env=project.env(FLOWSTAGE_CONN_PG=pg_schema_url), code=1)
    took = time.monotonic() - started

    task = tasks_of(record)["sleepy"]
    assert task["status"] == "timed_out"
    assert [a["status"] for a in task["attempts"]] == ["timed_out"]
    assert took < 60, f"the run took {took:.1f}s for a 1s timeout: it waited for the query"

    def still_running() -> list[tuple[Any, ...]]:
        return query(
            pg_schema_url,
            f"SELECT pid, state FROM pg_stat_activity WHERE query LIKE '%pg_sleep({marker})%' AND pid <> pg_backend_pid()",
        )

    wait_until(lambda: still_running() == [], 30, "the query to end on the server")


@pytest.mark.postgres
@pytest.mark.mysql
def test_rows_extracted_from_mariadb_are_loaded_into_postgres_one_per_item(
    project: Project, pg_schema_url: str, mysql_db_url: str
) -> None:
    project.write(
        "workflows/copy.yaml",
        """
        name: copy
        stages:
          - name: setup
            tasks:
              - name: source
                connection: maria
                sql: |
                  CREATE TABLE orders (id INTEGER PRIMARY KEY, region VARCHAR(10), amount DECIMAL(10,2), placed DATE);
                  INSERT INTO orders VALUES (1, 'EU', 10.50, '2024-01-02'), (2, 'US', 20, '2024-01-03'), (3, 'APAC', 7.25, '2024-01-04');
              - name: target
                connection: pg
                sql: CREATE TABLE orders_copy (id INTEGER PRIMARY KEY, region TEXT, amount NUMERIC(10,2), placed DATE)
          - name: extract
            tasks:
              - name: extract
                connection: maria
                sql: SELECT id, region, amount, placed FROM orders ORDER BY id
                save_rows: rows
          - name: load
            tasks:
              - name: load
                for_each: "{{ var.rows }}"
                connection: pg
                sql: INSERT INTO orders_copy VALUES (:id, :region, :amount, CAST(:placed AS DATE))
                params:
                  id: "{{ task.item.id }}"
                  region: "{{ task.item.region }}"
                  amount: "{{ task.item.amount }}"
                  placed: "{{ task.item.placed }}"
        """,
    )
    env = project.env(FLOWSTAGE_CONN_MARIA=mysql_db_url, FLOWSTAGE_CONN_PG=pg_schema_url)
    record = run_json(project, "copy", env=env)

    rows = [
        {"id": 1, "region": "EU", "amount": 10.5, "placed": "2024-01-02"},
        {"id": 2, "region": "US", "amount": 20, "placed": "2024-01-03"},
        {"id": 3, "region": "APAC", "amount": 7.25, "placed": "2024-01-04"},
    ]
    assert record["variables"]["rows"] == rows
    load = tasks_of(record)["load"]
    assert load["status"] == "succeeded"
    assert [a["item"] for a in load["attempts"]] == rows
    assert load["metrics"]["rows_written"] == 3
    copied = query(pg_schema_url, "SELECT id, region, amount::float8, placed::text FROM orders_copy ORDER BY id")
    assert copied == [(1, "EU", 10.5, "2024-01-02"), (2, "US", 20.0, "2024-01-03"), (3, "APAC", 7.25, "2024-01-04")]


def test_parallel_copies_writing_one_sqlite_connection_queue_for_its_lock(project: Project) -> None:
    """Eight copies at once on one SQLite file: each waits its turn, none fails with "database is locked"."""
    project.write("flowstage.yaml", "connections:\n  shop: sqlite:///shop.db\n")
    project.write(
        "workflows/par.yaml",
        """
        name: par
        preferences: {max_parallel: 8}
        tasks:
          - name: ins
            for_each: "{{ [1, 2, 3, 4, 5, 6, 7, 8] }}"
            sql: "CREATE TABLE IF NOT EXISTS t (v INTEGER); INSERT INTO t VALUES (:v)"
            params: {v: "{{ task.item }}"}
            connection: shop
        """,
    )
    result = project.cli("run", "par", "--json")
    assert result.code == 0, result.out + result.err
    import sqlite3

    with sqlite3.connect(project.root / "shop.db") as conn:
        assert sorted(v for (v,) in conn.execute("SELECT v FROM t")) == list(range(1, 9))
    conn.close()
