"""Dataflows facing hostile or broken input: injection, malformed packages, bad columns, auto flush.

- An expression that tries to become another statement is refused; a variable is bound, never
  pasted: the targeted tables survive and the value is compared literally.
- A malformed package is a `file:line:col` validation error (exit 2), never a traceback.
- A column that does not exist fails the task at run time with one clear line.
- `preferences.flush` rebuilds its tables after a successful run only, and a failing flush fails
  the run.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from typing import Any

import duckdb
import pytest

from tests.conftest import Project
from tests.records import record_of, tasks_of

HOSTILE = "x'; DROP TABLE victim_var; --"
MATCH_ALL = "' OR '1'='1"


def warehouse_rows(project: Project, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(project.root / ".flowstage" / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def warehouse_tables(project: Project) -> set[str]:
    return {r[0] for r in warehouse_rows(project, "SELECT table_name FROM duckdb_tables()")}


def csv_rows(project: Project, rel: str) -> list[dict[str, str]]:
    with (project.root / rel).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------------------- injection
def test_expressions_cannot_run_other_statements_and_variables_are_bound(project: Project) -> None:
    victims = ["victim_filter", "victim_smuggled", "victim_var", "victim_task_var", "victim_sql_step"]
    project.write("data/people.csv", f"id,name\n1,ann\n2,{HOSTILE}\n3,bob\n")
    project.write(
        "workflows/inject.yaml",
        f"""
        name: inject
        stages:
          - name: setup
            tasks:
              - name: tables
                sql: "{" ".join(f"CREATE TABLE {v} AS SELECT 1 AS x;" for v in victims)}"
          - name: attack
            tasks:
              - name: closing_paren
                dataflow:
                  name: closing_paren
                  sources: {{people: {{file: data/people.csv}}}}
                  steps:
                    - from: people
                    - filter: "1=1); DROP TABLE victim_filter; --"
                  sink: {{file: out/closing_paren.csv}}
              - name: smuggled_statement
                dataflow:
                  name: smuggled_statement
                  sources: {{people: {{file: data/people.csv}}}}
                  steps:
                    - from: people
                    - filter: "1=1)) SELECT 1; DROP TABLE victim_smuggled; WITH x AS ((SELECT 1"
                    - derive: {{z: "1"}}
                  sink: {{file: out/smuggled_statement.csv}}
              - name: run_variable
                dataflow:
                  name: run_variable
                  sources: {{people: {{file: data/people.csv}}}}
                  steps:
                    - from: people
                    - filter: "name = :who"
                  sink: {{file: out/run_variable.csv}}
              - name: task_variable
                variables: {{who: "{MATCH_ALL}"}}
                dataflow:
                  name: task_variable
                  sources: {{people: {{file: data/people.csv}}}}
                  steps:
                    - from: people
                    - filter: "name = :who OR id = :id"
                  sink: {{file: out/task_variable.csv}}
              - name: sql_step_variable
                dataflow:
                  name: sql_step_variable
                  variables: {{id: 3}}
                  sources: {{people: {{file: data/people.csv}}}}
                  steps:
                    - from: people
                    - sql: "SELECT id, name, :who AS echoed FROM input WHERE id = :id"
                  sink: {{file: out/sql_step_variable.csv}}
        """,
    )
    result = project.cli("run", "inject", "--var", f"who={HOSTILE}", "--var", "id=-1", "--json")
    assert result.code == 1, result  # the two hostile expressions fail their tasks
    tasks = tasks_of(record_of(result))

    assert tasks["tables"]["status"] == "succeeded", tasks["tables"]["error"]
    assert warehouse_tables(project) >= set(victims), "a table was dropped"

    for name in ("closing_paren", "smuggled_statement"):
        assert tasks[name]["status"] == "failed", tasks[name]
        assert not (project.root / "out" / f"{name}.csv").exists()
    assert "another statement" in tasks["smuggled_statement"]["error"]

    assert tasks["run_variable"]["status"] == "succeeded", tasks["run_variable"]["error"]
    assert csv_rows(project, "out/run_variable.csv") == [{"id": "2", "name": HOSTILE}]  # matched literally

    assert tasks["task_variable"]["status"] == "succeeded", tasks["task_variable"]["error"]
    assert csv_rows(project, "out/task_variable.csv") == []  # ' OR '1'='1 is a name nobody has

    assert tasks["sql_step_variable"]["status"] == "succeeded", tasks["sql_step_variable"]["error"]
    assert csv_rows(project, "out/sql_step_variable.csv") == [{"id": "3", "name": "bob", "echoed": HOSTILE}]


# ---------------------------------------------------------------------------------------------- validation
GOOD_HEAD = """
name: x
sources:
  orders: {file: data/orders.csv}
"""

# (package text, line and column of the problem, words the message must hold)
MALFORMED = [
    pytest.param(
        GOOD_HEAD
        + """
steps:
  - from: orders
  - pivot: {on: country}
sink: {file: out/x.csv}
""",
        (7, 5),
        ["unknown step 'pivot'", "filter"],
        id="unknown-step-kind",
    ),
    pytest.param(
        GOOD_HEAD
        + """
steps:
  - from: ordres
sink: {file: out/x.csv}
""",
        (6, 5),
        ["unknown source 'ordres'", "did you mean 'orders'"],
        id="from-a-missing-source",
    ),
    pytest.param(
        GOOD_HEAD
        + """
steps:
  - from: orders
  - join: {with: customers, using: [id]}
sink: {file: out/x.csv}
""",
        (7, 12),
        ["unknown source 'customers'"],
        id="join-with-a-missing-source",
    ),
    pytest.param(
        GOOD_HEAD
        + """
steps:
  - from: orders
sink:
  table: orders_copy
  mode: upsert
""",
        (7, 1),
        ["upsert", "keys"],
        id="upsert-without-keys",
    ),
    pytest.param(
        GOOD_HEAD
        + """
steps:
  - from: orders
sink:
  file: out/x.parquet
  mode: upsert
""",
        (7, 1),
        ["upsert", "keys"],
        id="file-sink-upsert-without-keys",
    ),
    pytest.param(
        GOOD_HEAD
        + """
steps:
  - from: orders
  - sql: SELECT * FROM input; DROP TABLE orders
""",
        (7, 5),
        ["one SELECT"],
        id="sql-step-with-two-statements",
    ),
    pytest.param(
        GOOD_HEAD
        + """
steps:
  - filter: "amount > 0"
""",
        (6, 5),
        ["first step must be `from"],
        id="no-from-first",
    ),
]


@pytest.mark.parametrize(("text", "where", "words"), MALFORMED)
def test_validate_points_at_the_problem_of_a_malformed_package(
    project: Project, text: str, where: tuple[int, int], words: list[str]
) -> None:
    project.write("packages/x.yaml", text)
    result = project.cli("validate", "packages/x.yaml")
    output = result.out + result.err
    assert result.code == 2, result
    assert "Traceback" not in output
    line, col = where
    found = re.search(rf"packages/x\.yaml:{line}:{col}: (.*)", output)
    assert found, f"no packages/x.yaml:{line}:{col}: in\n{output}"
    for word in words:
        assert word in found.group(1), found.group(0)


def test_validate_of_a_workflow_reports_the_problem_of_its_package_file(project: Project) -> None:
    project.write("packages/x.yaml", GOOD_HEAD + "steps:\n  - from: nowhere\n")
    project.write(
        "workflows/uses_x.yaml",
        """
        name: uses_x
        tasks:
          - name: t
            dataflow: packages/x.yaml
        """,
    )
    result = project.cli("validate", "workflows/uses_x.yaml")
    assert result.code == 2, result
    assert "Traceback" not in result.out + result.err
    assert re.search(r"packages/x\.yaml:5:5: .*unknown source 'nowhere'", result.out + result.err), result


# ---------------------------------------------------------------------------------------------- run-time errors
def test_a_missing_column_fails_the_task_with_one_clear_line(project: Project) -> None:
    project.write("data/orders.csv", "id,amount\n1,2.5\n2,NA\n")
    project.write(
        "workflows/bad_column.yaml",
        """
        name: bad_column
        tasks:
          - name: totals
            dataflow:
              name: totals
              sources: {orders: {file: data/orders.csv}}
              steps:
                - from: orders
                - aggregate: {by: [contry], metrics: {total: sum(amount)}}
              sink: {file: out/totals.csv}
        """,
    )
    result = project.cli("run", "bad_column")
    assert result.code == 1, result
    output = result.out + result.err
    assert "Traceback" not in output
    assert "contry" in output

    shown = project.cli("runs", "--json")
    run_id = record_of(shown)[0]["id"] if shown.code == 0 else None
    assert run_id, shown
    record = record_of(project.cli("show", run_id, "--json"))
    task = tasks_of(record)["totals"]
    assert task["status"] == "failed"
    error = task["error"]
    assert "contry" in error
    assert "\n" not in error.strip()
    assert "Traceback" not in error
    assert not (project.root / "out" / "totals.csv").exists()


# ---------------------------------------------------------------------------------------------- auto flush
def write_flush_project(project: Project, orders: list[tuple[int, str]]) -> None:
    project.write("data/orders.csv", "id,country\n" + "".join(f"{i},{c}\n" for i, c in orders))
    project.write("sql/orders_by_country.sql", "SELECT country, count(*) AS n FROM orders GROUP BY country\n")
    project.write(
        "workflows/load.yaml",
        """
        name: load
        variables: {fail: false}
        preferences:
          flush: [orders_by_country]
        tasks:
          - name: load
            dataflow:
              name: load
              sources: {orders: {file: data/orders.csv}}
              steps:
                - from: orders
              sink: {table: orders}
          - name: after_load
            after: [load]
            sql: "SELECT CASE WHEN :fail THEN error('asked to fail') ELSE 1 END"
            params: {fail: "{{ var.fail }}"}
        """,
    )


def summary(project: Project) -> Counter[str]:
    return Counter({c: n for c, n in warehouse_rows(project, "SELECT country, n FROM orders_by_country")})


def test_flush_rebuilds_its_table_after_a_successful_run_and_not_after_a_failed_one(project: Project) -> None:
    first = [(i, "DE" if i % 3 else "FR") for i in range(1, 61)]
    write_flush_project(project, first)
    result = project.cli("run", "load", "--json")
    assert result.code == 0, result
    assert record_of(result)["status"] == "succeeded"
    assert summary(project) == Counter(c for _, c in first)

    second = [(i, "US" if i % 2 else "DE") for i in range(1, 41)]
    write_flush_project(project, second)
    result = project.cli("run", "load", "--var", "fail=true", "--json")
    assert result.code == 1, result
    assert record_of(result)["status"] == "failed"
    assert warehouse_rows(project, "SELECT count(*) FROM orders") == [(len(second),)]  # the load itself ran
    assert summary(project) == Counter(c for _, c in first)  # but the failed run flushed nothing

    result = project.cli("run", "load", "--json")
    assert result.code == 0, result
    assert summary(project) == Counter(c for _, c in second)
    logs = project.cli("logs", record_of(result)["id"])
    assert "flush: rebuilt table orders_by_country" in logs.out, logs


def test_a_flush_whose_sql_fails_fails_the_run(project: Project) -> None:
    write_flush_project(project, [(1, "DE"), (2, "FR")])
    project.write("sql/orders_by_country.sql", "SELECT country, no_such_column FROM orders\n")
    result = project.cli("run", "load", "--json")
    assert result.code == 1, result
    record = record_of(result)
    assert record["status"] == "failed"
    assert all(t["status"] == "succeeded" for t in record["tasks"])  # every task did its part
    assert "orders_by_country" not in warehouse_tables(project)
    logs = project.cli("logs", record["id"])
    assert "no_such_column" in logs.out, logs
    assert "Traceback" not in logs.out + result.err
