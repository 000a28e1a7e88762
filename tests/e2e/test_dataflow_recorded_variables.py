"""The run record of a dataflow task shows the variables its package ran with (SPEC §2.4): the
task's `variables:` over the package's own `variables:` over the run scope — failed attempts too."""

from __future__ import annotations

from typing import Any

from tests.conftest import Project
from tests.records import record_of, tasks_of

ORDERS = "order_id,amount,status\n1,5,paid\n2,12,paid\n3,25,paid\n4,40,open\n"


def _package(name: str, *, variables: str = "", filter_: str = "amount >= :min_amount AND status = :status") -> str:
    return f"""
    name: {name}
    {variables}
    sources: {{orders: {{file: data/orders.csv}}}}
    steps:
      - from: orders
      - filter: "{filter_}"
      - select: [order_id]
    sink: {{file: out/{name}.csv}}
    """


def _show(project: Project, run_id: str) -> dict[str, dict[str, Any]]:
    result = project.cli("show", run_id, "--json")
    assert result.code == 0, result
    return tasks_of(record_of(result))


def test_a_dataflow_tasks_recorded_variables_are_the_ones_its_package_bound(project: Project) -> None:
    project.write("data/orders.csv", ORDERS)
    project.write("packages/package_wins.yaml", _package("package_wins", variables="variables: {min_amount: 10}"))
    project.write("packages/task_wins.yaml", _package("task_wins", variables="variables: {min_amount: 10}"))
    project.write(
        "workflows/bound.yaml",
        """
        name: bound
        variables: {min_amount: 0, status: paid}
        tasks:
          - name: package_wins
            dataflow: packages/package_wins.yaml
          - name: task_wins
            dataflow: packages/task_wins.yaml
            variables: {min_amount: 20}
          - name: inline
            dataflow:
              name: inline
              variables: {min_amount: 30, status: open}
              sources: {orders: {file: data/orders.csv}}
              steps:
                - from: orders
                - filter: "amount >= :min_amount AND status = :status"
              sink: {file: out/inline.csv}
          - name: run_scope
            dataflow: packages/run_scope.yaml
        """,
    )
    project.write("packages/run_scope.yaml", _package("run_scope"))

    result = project.cli("run", "bound", "--json")

    assert result.code == 0, result
    record = record_of(result)
    tasks = _show(project, record["id"])
    assert tasks["package_wins"]["variables"] == {"min_amount": 10, "status": "paid"}
    assert tasks["task_wins"]["variables"] == {"min_amount": 20, "status": "paid"}
    assert tasks["inline"]["variables"] == {"min_amount": 30, "status": "open"}
    assert tasks["run_scope"]["variables"] == {"min_amount": 0, "status": "paid"}
    # and those are the values the rows were filtered with
    written = {name: t["metrics"]["rows_written"] for name, t in tasks.items()}
    assert written == {"package_wins": 2, "task_wins": 1, "inline": 1, "run_scope": 3}
    assert tasks_of(record)["package_wins"]["variables"] == {"min_amount": 10, "status": "paid"}


def test_a_failed_dataflow_attempt_records_the_package_values_it_ran_with(project: Project) -> None:
    project.write("data/orders.csv", ORDERS)
    project.write(
        "packages/broken.yaml",
        _package("broken", variables="variables: {min_amount: 10}", filter_="no_such_column >= :min_amount"),
    )
    project.write(
        "workflows/broken.yaml",
        """
        name: broken
        variables: {min_amount: 0}
        tasks:
          - name: broken
            dataflow: packages/broken.yaml
            retries: 1
            retry_delay: 0s
        """,
    )

    result = project.cli("run", "broken", "--json")

    assert result.code == 1, result
    broken = _show(project, record_of(result)["id"])["broken"]
    assert broken["status"] == "failed"
    assert [a["status"] for a in broken["attempts"]] == ["failed", "failed"]
    assert "no_such_column" in broken["error"]
    assert broken["variables"] == {"min_amount": 10}
