"""Twenty `flowstage run` processes at once on one run store: all finish, none is locked out, nothing is lost.

SQLite in WAL mode with ``BEGIN IMMEDIATE`` must queue the writers on its busy timeout instead of
failing with "database is locked"; PostgreSQL must take the same load. The project's default store
(`.flowstage/flowstage.db`) is created by the first of the twenty processes, so they also race
to migrate a new database.

The workload is sized to make writers collide: the extract tasks of all twenty runs line up at a
gate (each marks itself ready, then holds until the test, having seen all forty ready, opens it),
then each task prints a thousand lines, so batches are large and land at the same moment. (With the
busy timeout at zero, this workload fails with "database is locked" in several of the twenty runs.)
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from flowstage.stores.sql.store import SqlRunStore
from tests.conftest import Project
from tests.records import shell_wait_for, wait_until

RUNS = 20
LINES = 1000
# every extract task leaves a file named by its shell's pid in ready/, then waits for go.ok
GATE = "mkdir -p ready && touch ready/$$ && " + shell_wait_for("go.ok")
TASKS = ["extract_a", "extract_b", "transform", "report", "load"]
WORKFLOW = f"""
name: five
stages:
  - name: extract
    tasks:
      - name: extract_a
        shell: {json.dumps(f"{GATE}; seq 1 {LINES}; echo out-extract_a")}
      - name: extract_b
        shell: {json.dumps(f"{GATE}; seq 1 {LINES}; echo out-extract_b")}
  - name: transform
    tasks:
      - name: transform
        python: tasks/steps.py:transform
      - name: report
        shell: seq 1 {LINES}; echo out-report
  - name: load
    tasks:
      - name: load
        shell: echo out-load
"""
STEPS = f"""
def transform():
    for i in range(1, {LINES} + 1):
        print(i)
    print("out-transform")
    return 3
"""


def start_all(project: Project, env: dict[str, str], *args: str) -> list[subprocess.Popen[str]]:
    return [project.popen(*args, env=env) for _ in range(RUNS)]


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


def run_twenty_at_once(project: Project, env: dict[str, str], store_url: str) -> None:
    project.write("workflows/five.yaml", WORKFLOW)
    project.write("tasks/steps.py", STEPS)

    procs = start_all(project, env, "run", "five")
    ready = project.root / "ready"
    try:
        wait_until(lambda: ready.is_dir() and len(list(ready.iterdir())) == 2 * RUNS, 240, "every extract task at the gate")
    finally:
        (project.root / "go.ok").write_text("")  # also lets the tasks end when the wait failed
    results = wait_all(procs, timeout=240)

    for code, out, err in results:
        assert "database is locked" not in (out + err).lower()
        assert code == 0, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"

    listed = project.cli("runs", "--json", "--limit", "100", env=env)
    assert listed.code == 0, listed.err
    runs = json.loads(listed.out)
    assert len(runs) == RUNS
    assert len({r["id"] for r in runs}) == RUNS
    assert {(r["workflow"], r["status"]) for r in runs} == {("five", "succeeded")}

    shows = wait_all([project.popen("show", r["id"], "--json", env=env) for r in runs], timeout=120)
    for (code, out, err), listed_run in zip(shows, runs, strict=True):
        assert code == 0, err
        record = json.loads(out)
        assert (record["id"], record["status"]) == (listed_run["id"], "succeeded")
        assert [t["name"] for t in record["tasks"]] == TASKS
        assert {t["status"] for t in record["tasks"]} == {"succeeded"}
        assert all(len(t["attempts"]) == 1 for t in record["tasks"])

    # nothing lost: every task's output line and every state change is in the record
    store = SqlRunStore(store_url)
    try:
        for listed_run in runs:
            for task in TASKS:
                messages = [s.line.message for s in store.logs(listed_run["id"], task=task)]
                assert f"out-{task}" in messages, f"{listed_run['id']}: no output of {task}"
                if task != "load":
                    counted = [m for m in messages if m.isdigit()]
                    assert counted == [str(i) for i in range(1, LINES + 1)], f"{listed_run['id']} {task}: lines lost"
            events = [e for _, e in store.events(listed_run["id"])]
            for task in TASKS:
                changes = [e.status for e in events if e.kind == "task_status" and e.task == task]
                assert (changes[0], changes[-1]) == ("running", "succeeded"), f"{listed_run['id']} {task}: {changes}"
            assert (events[0].kind, events[-1].kind, events[-1].status) == ("run_started", "run_finished", "succeeded")
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_twenty_runs_at_once_on_one_sqlite_store_all_succeed_without_locking(project: Project) -> None:
    db = Path(project.root, ".flowstage", "flowstage.db")
    assert not db.exists()

    run_twenty_at_once(project, project.env(), f"sqlite:///{db}")

    assert db.is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.postgres
def test_twenty_runs_at_once_on_one_postgres_store_all_succeed(project: Project, pg_schema_url: str) -> None:
    run_twenty_at_once(project, project.env(FLOWSTAGE_STORE=pg_schema_url), pg_schema_url)

    assert not Path(project.root, ".flowstage", "flowstage.db").exists()
