"""The runner killed inside the two windows of a `workflow:` task, then the parent resumed.

(a) after the sub-run's row exists but before the parent recorded its id: the resume must take
up that sub-run, never start a second one and leave the first `interrupted` for ever;
(b) after the sub-run was recorded succeeded but before the parent recorded its task: the resume
must use the sub-run's result, never run the sub-workflow's tasks again.

Random kills rarely land in a window of a few milliseconds, so each test kills the runner at a
moment that is easy to reach and then puts the store in the state the window leaves: the
parent's record without the sub-run's id (a), or with its `workflow:` task still running (b).
Every task appends to a ledger, which tells what ran and how often.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from typing import Any

from tests.conftest import Project
from tests.records import record_of, shell_wait_for, tasks_of, wait_until


def show(project: Project, run_id: str) -> dict[str, Any]:
    result = project.cli("show", run_id, "--json")
    assert result.code == 0, result.err
    found: dict[str, Any] = json.loads(result.out)
    return found


def write_workflows(project: Project, child_second: str, parent_after: str = "") -> None:
    project.write(
        "workflows/child.yaml",
        f"""
        name: child
        stages:
          - name: first
            tasks:
              - {{name: mark, shell: echo child-first >> ledger.txt}}
          - name: second
            tasks:
              - {{name: last, shell: {json.dumps(child_second)}}}
        """,
    )
    project.write(
        "workflows/parent.yaml",
        f"""
        name: parent
        tasks:
          - {{name: call, workflow: child}}
          {parent_after}
        """,
    )


def start(project: Project) -> tuple[subprocess.Popen[str], str]:
    proc = project.popen("run", "parent")
    assert proc.stdout is not None
    first = proc.stdout.readline()
    m = re.match(r"^run (\S+) started$", first.strip())
    assert m, f"unexpected first line {first!r}"
    return proc, m.group(1)


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.communicate()


def children(project: Project, parent_id: str) -> list[tuple[str, str]]:
    listed = project.cli("runs", "--json")
    assert listed.code == 0, listed.err
    runs: list[dict[str, Any]] = json.loads(listed.out)
    return [
        (r["id"], r["status"]) for r in runs if r["workflow"] == "child" and show(project, r["id"])["parent_run_id"] == parent_id
    ]


def db(project: Project) -> sqlite3.Connection:
    return sqlite3.connect(project.root / ".flowstage" / "flowstage.db")


def test_a_sub_run_whose_id_the_parent_never_recorded_is_taken_up_by_the_resume(project: Project) -> None:
    write_workflows(project, shell_wait_for("go.ok") + " && echo child-last >> ledger.txt")
    proc, parent_id = start(project)
    try:
        sub = wait_until(lambda: (children(project, parent_id) or [None])[0], 60, "the sub-run to exist")
        child_id = sub[0]
        wait_until(lambda: tasks_of(show(project, child_id))["mark"]["status"] == "succeeded", 60, "the child's first stage")
    finally:
        kill(proc)
    # the window: the sub-run's row exists, the parent's record has no trace of its id
    with db(project) as conn:
        (attempts,) = conn.execute("SELECT attempts FROM task_runs WHERE run_id = ? AND name = 'call'", (parent_id,)).fetchone()
        stripped = [{k: v for k, v in a.items() if k != "sub_run_id"} for a in json.loads(attempts)]
        conn.execute("UPDATE task_runs SET attempts = ? WHERE run_id = ? AND name = 'call'", (json.dumps(stripped), parent_id))
        conn.execute("DELETE FROM events WHERE run_id = ? AND data LIKE '%sub_run_id%'", (parent_id,))
    conn.close()
    assert "sub_run_id" not in json.dumps(tasks_of(show(project, parent_id))["call"])
    (project.root / "go.ok").write_text("")

    record = record_of(project.cli("resume", parent_id, "--json"))

    assert record["status"] == "succeeded", record
    assert children(project, parent_id) == [(child_id, "succeeded")], "one sub-run, resumed, none left interrupted"
    assert tasks_of(record)["call"]["metrics"]["sub_run_id"] == child_id
    assert (project.root / "ledger.txt").read_text().splitlines() == ["child-first", "child-last"]


def test_a_sub_run_that_succeeded_before_the_parent_recorded_it_is_not_run_again(project: Project) -> None:
    write_workflows(
        project,
        "echo child-last >> ledger.txt",
        parent_after="- {name: hold, shell: " + json.dumps(shell_wait_for("go.ok")) + ", after: [call]}",
    )
    proc, parent_id = start(project)
    try:
        wait_until(lambda: tasks_of(show(project, parent_id))["hold"]["status"] == "running", 60, "the parent past its call")
    finally:
        kill(proc)
    ((child_id, status),) = children(project, parent_id)
    assert status == "succeeded"
    # the window: the sub-run is succeeded, the parent's `call` still running as far as its record goes
    with db(project) as conn:
        (attempts,) = conn.execute("SELECT attempts FROM task_runs WHERE run_id = ? AND name = 'call'", (parent_id,)).fetchone()
        found = json.loads(attempts)
        found[-1].update(status="running", ended_at=None, error=None)
        conn.execute(
            "UPDATE task_runs SET status = 'running', ended_at = NULL, saved = '{}', attempts = ? WHERE run_id = ? AND name = 'call'",
            (json.dumps(found), parent_id),
        )
        conn.execute(
            "UPDATE task_runs SET status = 'pending', started_at = NULL, attempts = '[]' WHERE run_id = ? AND name = 'hold'",
            (parent_id,),
        )
    conn.close()
    assert tasks_of(show(project, parent_id))["call"]["status"] == "running"
    (project.root / "go.ok").write_text("")

    record = record_of(project.cli("resume", parent_id, "--json"))

    assert record["status"] == "succeeded", record
    assert (project.root / "ledger.txt").read_text().splitlines() == ["child-first", "child-last"], "the child ran again"
    assert children(project, parent_id) == [(child_id, "succeeded")]
    assert tasks_of(record)["call"]["metrics"]["sub_run_id"] == child_id
    logs = project.cli("logs", parent_id, "call").out
    assert f"sub-run {child_id} of child had succeeded: its result is used" in logs
