"""Concurrent runs take turns on the embedded DuckDB warehouse instead of failing on its file lock.

DuckDB lets one process at a time open a database file. Twenty `flowstage run` processes that each
write the warehouse (a SQL task, a dataflow, an auto flush) must all succeed, every row in place; an attempt
that finds the warehouse held by another process says so (its note) and gives up at its deadline
or when killed; inside one process, tasks share the open warehouse and are not serialised.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flowstage.connections import Connections
from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import RunError
from flowstage.model.dataflow import Package
from flowstage.model.kinds import KindSpec
from flowstage.model.kinds.dataflow import DataflowSpec
from flowstage.model.kinds.sql import SqlSpec
from flowstage.model.kinds.wait_for import WaitForSpec
from flowstage.model.statuses import TaskStatus
from flowstage.tasks import RunResources, TaskContext, runner_for
from flowstage.tasks._process import ProcessHandle
from tests.conftest import Project
from tests.records import record_of, tasks_of, wait_until

RUNS = 20
ORDERS = "order_id,amount\n1,10.5\n2,20\n3,7.25\n"
WORKFLOW = """
name: busy
preferences: {flush: [orders_summary]}
stages:
  - name: write
    tasks:
      - name: record_run
        sql: |
          CREATE TABLE IF NOT EXISTS runs_seen (run_id VARCHAR, workflow VARCHAR);
          INSERT INTO runs_seen VALUES (:run_id, :workflow)
        params: {run_id: "{{ run.id }}", workflow: "{{ run.workflow }}"}
      - name: load
        dataflow:
          name: load_orders
          sources: {orders: {file: data/orders.csv}}
          steps:
            - from: orders
          sink: {table: orders_loaded, mode: append}
"""
WAITING = "waits for the warehouse lock (held by another process)"
HOLDERS = {
    # another flowstage process: it holds our lock
    "flowstage": """
import fcntl, os, sys
fd = os.open(sys.argv[1] + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
""",
    # a program that opens the database without our lock (the DuckDB CLI, a notebook)
    "duckdb": """
import duckdb, sys
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
""",
}


def wait_all(procs: list[subprocess.Popen[str]], timeout: float) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + timeout
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def warehouse_rows(project: Project, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(project.root / ".flowstage" / "warehouse.duckdb"), read_only=True)
    try:
        return [tuple(r) for r in con.execute(sql).fetchall()]
    finally:
        con.close()


@pytest.mark.slow
def test_twenty_runs_at_once_that_write_the_warehouse_all_succeed(project: Project) -> None:
    project.write("workflows/busy.yaml", WORKFLOW)
    project.write("data/orders.csv", ORDERS)
    project.write("sql/orders_summary.sql", "SELECT count(*) AS orders FROM orders_loaded")
    env = project.env()

    results = wait_all([project.popen("run", "busy", "--json", env=env) for _ in range(RUNS)], timeout=120)

    for code, out, err in results:
        assert "could not set lock" not in (out + err).lower(), err
        assert code == 0, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    records = [json.loads(out) for _, out, _ in results]
    assert {r["status"] for r in records} == {"succeeded"}
    run_ids = sorted(r["id"] for r in records)
    seen = warehouse_rows(project, "SELECT run_id, workflow FROM runs_seen ORDER BY run_id")
    assert seen == [(run_id, "busy") for run_id in run_ids]
    loaded = warehouse_rows(project, "SELECT order_id, count(*) FROM orders_loaded GROUP BY order_id ORDER BY order_id")
    assert loaded == [(1, RUNS), (2, RUNS), (3, RUNS)]
    # every run's auto flush rebuilt the summary after its own load (later runs' loads may follow)
    [(orders,)] = warehouse_rows(project, "SELECT orders FROM orders_summary")
    assert 3 <= orders <= 3 * RUNS


# ------------------------------------------------------------------ waiting for another process
@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "proj" / ".flowstage" / "warehouse.duckdb"


class Holder:
    """Another process holding the warehouse lock until `release`."""

    def __init__(self, database: Path, how: str = "flowstage") -> None:
        database.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDERS[how], str(database)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            assert self.proc.stdout is not None
            self.proc.stdout.close()


@pytest.fixture(params=list(HOLDERS))
def holder(warehouse: Path, request: pytest.FixtureRequest) -> Iterator[Holder]:
    held = Holder(warehouse, request.param)
    try:
        yield held
    finally:
        held.release()


class Attempt:
    """One attempt of a task kind run directly, its notes and logs recorded."""

    def __init__(self, root: Path, connections: Connections, spec: KindSpec, timeout: float | None = None) -> None:
        self.notes: list[str | None] = []
        self.logs: list[str] = []
        self.handle = ProcessHandle()
        self.job = AttemptSpec(
            run_id="r1",
            workflow="w",
            task="t",
            attempt=1,
            spec=spec,
            kwargs={},
            variables={},
            root=str(root),
            log_level=10,
            timeout=timeout,
            deadline=time.time() + timeout if timeout else None,
        )
        self.ctx = TaskContext(
            log=lambda _level, message: self.logs.append(message),
            handle=self.handle,
            resources=RunResources(root=root, connections=connections),
            note=self.notes.append,
        )
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    @property
    def status(self) -> TaskStatus | None:
        return self.outcome.status if self.outcome is not None else None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def run(self) -> Outcome:
        return runner_for(self.job.kind)(self.job, self.ctx)

    def start(self) -> Attempt:
        def work() -> None:
            try:
                self.outcome = self.run()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()
        return self

    def join(self, timeout: float = 60) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the attempt did not end"


def connections_to(warehouse: Path) -> Connections:
    return Connections({"warehouse": f"duckdb:///{warehouse}"})


def spec_of(kind: str) -> KindSpec:
    if kind == "sql":
        return SqlSpec(sql="CREATE TABLE t AS SELECT 1 AS x")
    if kind == "wait_for":
        return WaitForSpec.model_validate({"wait_for": {"sql": "SELECT 1"}})
    package = Package.model_validate(
        {"name": "p", "sources": {"n": {"file": "data/n.csv"}}, "steps": [{"from": "n"}], "sink": {"table": "n_out"}}
    )
    return DataflowSpec(dataflow=package)


@pytest.mark.parametrize("kind", ["sql", "dataflow", "wait_for"])
def test_attempt_waiting_for_the_warehouse_notes_it_and_times_out_at_its_deadline(
    kind: str, warehouse: Path, holder: Holder
) -> None:
    root = warehouse.parent.parent
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "n.csv").write_text("a\n1\n")
    connections = connections_to(warehouse)
    attempt = Attempt(root, connections, spec_of(kind), timeout=1.0)

    started = time.monotonic()
    outcome = attempt.run()
    took = time.monotonic() - started

    assert outcome.status is TaskStatus.TIMED_OUT
    assert outcome.error == "timed out after 1s waiting for the DuckDB warehouse lock"
    assert attempt.notes == [WAITING, None]
    assert 0.5 <= took < 5, f"gave up after {took:.2f}s for a 1s timeout"
    connections.close()


def test_waiting_attempt_runs_once_the_other_process_lets_go(warehouse: Path, holder: Holder) -> None:
    connections = connections_to(warehouse)
    attempt = Attempt(warehouse.parent.parent, connections, SqlSpec(sql="CREATE TABLE t AS SELECT 42 AS x")).start()
    wait_until(lambda: attempt.notes, 30, "the attempt to note its wait")
    assert attempt.outcome is None

    holder.release()
    attempt.join()

    assert attempt.error is None
    assert attempt.status is TaskStatus.SUCCEEDED
    assert attempt.notes == [WAITING, None]
    connections.close()
    # the database was closed when the session ended: another process can open it
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT x FROM t").fetchall() == [(42,)]
    con.close()


def test_killed_attempt_stops_waiting_for_the_warehouse(warehouse: Path, holder: Holder) -> None:
    connections = connections_to(warehouse)
    attempt = Attempt(warehouse.parent.parent, connections, SqlSpec(sql="SELECT 1")).start()
    wait_until(lambda: attempt.notes, 30, "the attempt to note its wait")

    attempt.handle.kill()
    attempt.join(timeout=10)

    assert isinstance(attempt.error, RunError)
    assert str(attempt.error) == "cancelled while waiting for the DuckDB warehouse lock"
    assert attempt.notes == [WAITING, None]
    connections.close()


def test_cli_attempt_times_out_waiting_for_the_warehouse_with_a_clear_error(project: Project, holder: Holder) -> None:
    project.write(
        "workflows/blocked.yaml",
        """
        name: blocked
        tasks:
          - name: write
            sql: CREATE TABLE t AS SELECT 1 AS x
            timeout: 2s
        """,
    )

    started = time.monotonic()
    result = project.cli("run", "blocked", "--json")
    took = time.monotonic() - started

    assert result.code == 1, result
    task = tasks_of(record_of(result))["write"]
    assert task["status"] == "timed_out"
    assert task["error"] == "timed out after 2s waiting for the DuckDB warehouse lock"
    assert took < 30


# ------------------------------------------------------------------ inside one process
@pytest.mark.parametrize("same_run", [True, False], ids=["one run", "two runs of one process"])
def test_sql_tasks_of_one_process_use_the_warehouse_at_the_same_time(warehouse: Path, same_run: bool) -> None:
    root = warehouse.parent.parent
    first = connections_to(warehouse)
    second = first if same_run else connections_to(warehouse)
    # a query that runs for minutes: it holds the warehouse until it is killed
    slow = Attempt(root, first, SqlSpec(sql="SELECT sum(i * i) FROM range(1000000000000) t(i)")).start()
    wait_until(lambda: slow.logs, 30, "the slow query to start")

    quick = Attempt(root, second, SqlSpec(sql="CREATE TABLE quick AS SELECT 7 AS x", connection="warehouse")).start()
    quick.join(timeout=30)

    assert slow.running, "the slow query ended on its own"
    assert quick.error is None
    assert quick.status is TaskStatus.SUCCEEDED
    assert quick.notes == []  # it never waited
    slow.handle.kill()
    slow.join(timeout=30)
    assert slow.error is not None  # interrupted
    for connections in {id(first): first, id(second): second}.values():
        connections.close()
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT x FROM quick").fetchall() == [(7,)]
    con.close()


def test_a_task_waiting_for_the_warehouse_shows_the_wait_as_its_reason(project: Project, warehouse: Path) -> None:
    project.write(
        "workflows/queued.yaml",
        """
        name: queued
        tasks:
          - name: write
            sql: CREATE TABLE queued AS SELECT 1 AS x
        """,
    )
    held = Holder(warehouse)
    proc = project.popen("run", "queued")
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().split()[1]

        def reason() -> str | None:
            shown = project.cli("show", run_id, "--json")
            value: str | None = tasks_of(record_of(shown))["write"]["reason"]
            return value

        assert wait_until(reason, 30, "the wait to be recorded") == "waits for the warehouse lock (held by another process)"
        held.release()
        assert proc.wait(timeout=60) == 0
    finally:
        held.release()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    task = tasks_of(record_of(project.cli("show", run_id, "--json")))["write"]
    assert task["status"] == "succeeded"
    assert task["reason"] is None
