"""Regressions, each through the CLI on real files and databases; each test fails if its fix is undone.

- A DuckDB upsert merges by column name, not by position.
- A file sink in overwrite mode swaps the new output in only after the query succeeded.
- Sources and sinks on a second DuckDB connection read and write that database, not the warehouse.
- An in-process attempt left behind by its timeout does not hold the only slot of the pool.
- A DuckDB `sql:` task saves the result of its SELECT (not the row count of a later CREATE ... AS),
  counts the rows CREATE ... AS wrote, and counts every row a saved SELECT read.
- MariaDB: an upsert needs a primary or unique key on its keys; an overwrite that fails midway
  keeps the old table.
- A sub-run's id is on the parent's attempt while it runs, so a resumed parent resumes the sub-run.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from tests.conftest import Project
from tests.records import record_of, shell_wait_for, tasks_of, wait_until


def run_json(project: Project, workflow: str, *args: str, code: int = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = project.cli("run", workflow, *args, "--json", env=env)
    record = record_of(result)
    assert result.code == code, [(t["name"], t["status"], t["error"]) for t in record["tasks"]]
    return record


def show(project: Project, run_id: str) -> dict[str, Any]:
    result = project.cli("show", run_id, "--json")
    assert result.code == 0, result
    return record_of(result)


def duck_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def parquet_rows(path: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        return con.execute("SELECT id, name FROM read_parquet(?) ORDER BY id", [str(path)]).fetchall()
    finally:
        con.close()


def warehouse(project: Project) -> Path:
    return project.root / ".flowstage" / "warehouse.duckdb"


# ---------------------------------------------------------------------------------------------- DuckDB upsert
def test_duckdb_upsert_matches_columns_by_name_not_position(project: Project) -> None:
    project.write(
        "workflows/ups.yaml",
        """
        name: ups
        stages:
          - name: setup
            tasks:
              - name: create
                sql: "CREATE TABLE ups(id BIGINT, amount BIGINT); INSERT INTO ups VALUES (0, 0), (9, 9)"
          - name: load
            tasks:
              - name: load
                dataflow:
                  name: ups
                  sources:
                    src: {query: "SELECT 50 AS amount, 0::BIGINT AS id UNION ALL SELECT 70, 1"}
                  steps:
                    - from: src
                  sink: {table: ups, mode: upsert, keys: [id]}
        """,
    )
    record = run_json(project, "workflows/ups.yaml")

    assert record["status"] == "succeeded"
    assert duck_rows(warehouse(project), "SELECT id, amount FROM ups ORDER BY id") == [(0, 50), (1, 70), (9, 9)]
    assert duck_rows(warehouse(project), "SELECT column_name FROM duckdb_columns() WHERE table_name = 'ups'") == [
        ("id",),
        ("amount",),
    ]


# ---------------------------------------------------------------------------------------------- file overwrite
def test_failed_file_overwrite_keeps_the_previous_output_and_leaves_no_temporary_file(project: Project) -> None:
    project.write("data/in.csv", "id,name\n1,ann\n2,bob\n3,cy\n")
    project.write(
        "workflows/export.yaml",
        """
        name: export
        variables: {fail: false}
        tasks:
          - name: export
            variables: {broken: "{{ var.fail }}"}
            dataflow:
              name: export
              sources: {people: {file: data/in.csv}}
              steps:
                - from: people
                - filter: "CASE WHEN :broken THEN error('bad') ELSE id > 0 END"
              sink: {file: out/people.parquet, mode: overwrite}
        """,
    )
    out = project.root / "out"
    first = run_json(project, "workflows/export.yaml")
    assert tasks_of(first)["export"]["metrics"]["rows_written"] == 3
    good = parquet_rows(out / "people.parquet")
    assert good == [(1, "ann"), (2, "bob"), (3, "cy")]

    failed = run_json(project, "workflows/export.yaml", "--var", "fail=true", code=1)

    task = tasks_of(failed)["export"]
    assert task["status"] == "failed"
    assert "bad" in (task["error"] or "")
    assert (out / "people.parquet").exists(), "the failed overwrite removed the last good output"
    assert parquet_rows(out / "people.parquet") == good
    assert sorted(p.name for p in out.iterdir()) == ["people.parquet"], "a temporary file was left behind"


# ---------------------------------------------------------------------------------------------- other DuckDB
def test_sources_and_sinks_on_a_second_duckdb_connection_use_that_database(project: Project) -> None:
    project.write("flowstage.yaml", "connections: {other: duckdb:///other.duckdb}\n")
    project.write(
        "workflows/other.yaml",
        """
        name: other
        stages:
          - name: setup
            tasks:
              - name: warehouse_t
                sql: CREATE TABLE t AS SELECT 'warehouse' AS x
              - name: other_tables
                connection: other
                sql: >-
                  CREATE TABLE t AS SELECT 'other' AS x;
                  CREATE TABLE t2 AS SELECT i, i * 10 AS v FROM range(5) r(i)
          - name: move
            tasks:
              - name: read_query
                dataflow:
                  name: read_query
                  sources: {src: {query: "SELECT x FROM t", connection: other}}
                  steps:
                    - from: src
                  sink: {file: out/x.csv}
              - name: copy_table
                dataflow:
                  name: copy_table
                  sources: {t2: {table: t2, connection: other}}
                  steps:
                    - from: t2
                  sink: {table: t3, connection: other}
        """,
    )
    record = run_json(project, "workflows/other.yaml")

    tasks = tasks_of(record)
    assert {name: t["status"] for name, t in tasks.items()} == dict.fromkeys(tasks, "succeeded")
    with (project.root / "out" / "x.csv").open(newline="", encoding="utf-8") as fh:
        assert list(csv.DictReader(fh)) == [{"x": "other"}]
    assert tasks["copy_table"]["metrics"]["rows_written"] == 5
    other = project.root / "other.duckdb"
    assert duck_rows(other, "SELECT i, v FROM t3 ORDER BY i") == [(i, i * 10) for i in range(5)]
    tables = {r[0] for r in duck_rows(warehouse(project), "SELECT table_name FROM duckdb_tables()")}
    assert "t3" not in tables
    assert duck_rows(warehouse(project), "SELECT x FROM t") == [("warehouse",)]


# ---------------------------------------------------------------------------------------------- pool starvation
def test_a_timed_out_in_process_task_does_not_starve_the_next_task(project: Project) -> None:
    project.write(
        "tasks/stuck.py",
        """
        import os
        import time


        def stuck():
            # holds its thread long past its timeout: until the writer has written (at most 60 s)
            deadline = time.monotonic() + 60
            while not os.path.exists("written.txt") and time.monotonic() < deadline:
                time.sleep(0.05)
        """,
    )
    # were the slot held, the writer would wait for the stuck thread and time out first
    project.write(
        "workflows/starve.yaml",
        """
        name: starve
        preferences: {max_parallel: 1}
        tasks:
          - {name: stuck, python: tasks/stuck.py:stuck, in_process: true, timeout: 1s}
          - {name: writer, shell: echo written > written.txt, timeout: 30s}
        """,
    )
    record = run_json(project, "workflows/starve.yaml", code=1)

    tasks = tasks_of(record)
    assert tasks["stuck"]["status"] == "timed_out"
    assert tasks["writer"]["status"] == "succeeded", tasks["writer"]["error"]
    assert (project.root / "written.txt").read_text().strip() == "written"


# ---------------------------------------------------------------------------------------------- sql metrics
def test_duckdb_sql_task_saves_its_select_and_counts_rows_written_and_read(project: Project) -> None:
    project.write(
        "workflows/metrics.yaml",
        """
        name: metrics
        tasks:
          - name: tag
            sql: "SELECT 'release-42' AS tag; CREATE OR REPLACE TABLE t9 AS SELECT * FROM range(100)"
            save: tag
          - name: big
            sql: SELECT * FROM range(500)
            save: x
        """,
    )
    record = run_json(project, "workflows/metrics.yaml")

    tasks = tasks_of(record)
    assert tasks["tag"]["saved"] == {"tag": "release-42"}
    assert record["variables"]["tag"] == "release-42"
    assert tasks["tag"]["metrics"]["rows_written"] == 100
    assert tasks["big"]["saved"] == {"x": 0}
    assert tasks["big"]["metrics"]["rows_read"] == 500
    assert duck_rows(warehouse(project), "SELECT count(*) FROM t9") == [(100,)]


# ---------------------------------------------------------------------------------------------- MariaDB
def mysql_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def mysql_exec(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for stmt in statements:
                conn.execute(sa.text(stmt))
    finally:
        engine.dispose()


UPSERT_NO_KEY = """
name: upsert
tasks:
  - name: load
    dataflow:
      name: load
      sources: {src: {query: "SELECT 1 AS id, 11 AS amount UNION ALL SELECT 3, 30"}}
      steps:
        - from: src
      sink: {table: nokey, connection: db, mode: upsert, keys: [id]}
"""


def upsert_without_key(project: Project, url: str) -> dict[str, Any]:
    """Upsert by `id` into a MariaDB table that has no key at all; the failed `load` task."""
    mysql_exec(url, "CREATE TABLE nokey (id INT, amount INT)", "INSERT INTO nokey VALUES (1, 10), (2, 20)")
    project.write("workflows/upsert.yaml", UPSERT_NO_KEY)
    record = run_json(project, "workflows/upsert.yaml", code=1, env=project.env(FLOWSTAGE_CONN_DB=url))
    load = tasks_of(record)["load"]
    assert load["status"] == "failed"
    return load


@pytest.mark.mysql
def test_mariadb_upsert_without_a_unique_key_fails_and_changes_nothing(project: Project, mysql_db_url: str) -> None:
    upsert_without_key(project, mysql_db_url)

    assert mysql_rows(mysql_db_url, "SELECT id, amount FROM nokey ORDER BY id") == [(1, 10), (2, 20)]


@pytest.mark.mysql
def test_mariadb_upsert_without_a_unique_key_names_the_key(project: Project, mysql_db_url: str) -> None:
    error = upsert_without_key(project, mysql_db_url)["error"] or ""

    assert "upsert into nokey needs a primary or unique key on (id)" in error, error


@pytest.mark.mysql
@pytest.mark.slow
def test_mariadb_overwrite_that_fails_midway_keeps_the_old_table(project: Project, mysql_db_url: str) -> None:
    mysql_exec(mysql_db_url, "CREATE TABLE target (id BIGINT, amount BIGINT)", "INSERT INTO target VALUES (1, 10), (2, 20)")
    project.write(
        "workflows/overwrite.yaml",
        """
        name: overwrite
        tasks:
          - name: load
            dataflow:
              name: load
              sources:
                src:
                  query: >-
                    SELECT i AS id, CASE WHEN i > 150000 THEN error('bad row') ELSE i END AS amount
                    FROM range(200000) r(i)
              steps:
                - from: src
              sink: {table: target, connection: db, mode: overwrite}
        """,
    )
    record = run_json(project, "workflows/overwrite.yaml", code=1, env=project.env(FLOWSTAGE_CONN_DB=mysql_db_url))

    load = tasks_of(record)["load"]
    assert load["status"] == "failed"
    assert "bad row" in (load["error"] or "")
    assert mysql_rows(mysql_db_url, "SELECT id, amount FROM target ORDER BY id") == [(1, 10), (2, 20)]
    tables = {r[0] for r in mysql_rows(mysql_db_url, "SHOW TABLES")}
    assert tables == {"target"}, f"tables left behind: {tables}"


# ---------------------------------------------------------------------------------------------- sub-run resume
@pytest.mark.slow
def test_a_killed_parent_resumes_its_recorded_sub_run_instead_of_starting_another(project: Project) -> None:
    # the child's second stage holds until the test writes go.ok, after the kill
    project.write(
        "workflows/child.yaml",
        f"""
        name: child
        stages:
          - name: first
            tasks:
              - {{name: mark, shell: echo first >> ledger.txt}}
          - name: second
            tasks:
              - {{name: wait, shell: {json.dumps(shell_wait_for("go.ok"))}}}
        """,
    )
    project.write(
        "workflows/parent.yaml",
        """
        name: parent
        tasks:
          - {name: call, workflow: child}
        """,
    )
    ledger = project.root / "ledger.txt"
    proc = project.popen("run", "parent")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.match(r"^run (\S+) started$", first.strip())
        assert m, f"unexpected first line {first!r}"
        parent_id = m.group(1)

        def running_sub_run() -> str | None:
            assert proc.poll() is None, "the parent ended before it was killed"
            attempts = tasks_of(show(project, parent_id))["call"]["attempts"]
            if attempts and attempts[-1]["status"] == "running":
                sub_run_id: str | None = attempts[-1].get("sub_run_id")
                return sub_run_id
            return None

        child_id = wait_until(running_sub_run, 60, "the running attempt to record its sub_run_id")
        # the child's first stage is recorded done (a kill before that would rightly run it again)
        wait_until(lambda: tasks_of(show(project, child_id))["mark"]["status"] == "succeeded", 60, "the child's first stage")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        (project.root / "go.ok").write_text("")
    assert proc.returncode == -signal.SIGKILL
    assert show(project, child_id)["status"] == "interrupted"

    result = project.cli("resume", parent_id, "--json")

    assert result.code == 0, result
    record = record_of(result)
    assert record["status"] == "succeeded"
    assert ledger.read_text().splitlines() == ["first"], "the child run was started anew instead of resumed"
    assert tasks_of(record)["call"]["metrics"]["sub_run_id"] == child_id
    listed = project.cli("runs", "--json")
    assert listed.code == 0, listed
    runs: list[dict[str, Any]] = json.loads(listed.out)
    children = [r for r in runs if r["workflow"] == "child"]
    assert [(r["id"], r["status"]) for r in children] == [(child_id, "succeeded")]
    child = show(project, child_id)
    assert child["parent_run_id"] == parent_id
    assert len(child["resumes"]) == 1
