"""A runner killed with SIGKILL mid-run: the run shows `interrupted` at once, resumes to the end, and
no task recorded as succeeded before the kill runs again (SPEC §2.5, §4, §8).

Every task appends ``start NAME`` and, after a short sleep, ``done NAME`` to a ledger file, so the
ledger tells which tasks ran and how many times. The runner is killed at a few chosen moments,
found by watching the ledger. The last task holds until the test writes ``release.ok`` after the
kill, so the run can never end before the moment comes, however slow the machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Project

TASKS = ["a", "b", "c", "d", "e", "f"]

LEDGER_PY = """
import os
import time


def step(name, delay, gate=None):
    with open("ledger.txt", "a") as fh:
        fh.write(f"start {name}\\n")
    time.sleep(delay)
    deadline = time.monotonic() + 120
    while gate and not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{gate} never came")
        time.sleep(0.02)
    with open("ledger.txt", "a") as fh:
        fh.write(f"done {name}\\n")
"""
RELEASE = "release.ok"


def shell_step(name: str) -> str:
    return f'"echo start {name} >> ledger.txt; sleep 0.3; echo done {name} >> ledger.txt"'


# python and shell tasks in stages; one python task is in the runner's own process
WORKFLOW = f"""
name: ledger
stages:
  - name: one
    tasks:
      - {{name: a, python: tasks/ledger.py:step, with: {{name: a, delay: 0.3}}}}
      - {{name: b, shell: {shell_step("b")}}}
  - name: two
    tasks:
      - {{name: c, python: tasks/ledger.py:step, with: {{name: c, delay: 0.3}}}}
  - name: three
    tasks:
      - {{name: d, shell: {shell_step("d")}}}
      - {{name: e, python: tasks/ledger.py:step, with: {{name: e, delay: 0.3}}}}
  - name: four
    tasks:
      - {{name: f, python: tasks/ledger.py:step, with: {{name: f, delay: 0, gate: {RELEASE}}}, in_process: true}}
"""


@pytest.fixture
def ledger_project(project: Project) -> Project:
    project.write("tasks/ledger.py", LEDGER_PY)
    project.write("workflows/ledger.yaml", WORKFLOW)
    return project


def ledger(project: Project) -> list[str]:
    path = project.root / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


def show(project: Project, run_id: str) -> dict[str, Any]:
    result = project.cli("show", run_id, "--json")
    assert result.code == 0, result
    return json.loads(result.out)


def statuses(record: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["status"] for t in record["tasks"]}


def start_and_kill(project: Project, moment: Callable[[list[str]], bool]) -> str:
    """Start `flowstage run ledger`, SIGKILL it once `moment(ledger lines)` holds; the run id.

    The last task holds until the kill is done (then `release.ok` lets it, and the resume, end).
    """
    proc = project.popen("run", "ledger")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.match(r"^run (\S+) started$", first.strip())
        assert m, f"unexpected first line {first!r}"
        deadline = time.monotonic() + 120
        while not moment(ledger(project)):
            assert proc.poll() is None, "the run ended before the moment to kill it"
            assert time.monotonic() < deadline, f"the moment never came; ledger: {ledger(project)}"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        (project.root / RELEASE).write_text("")
    assert proc.returncode == -signal.SIGKILL
    return m.group(1)


MOMENTS = {
    "at-creation": lambda lines: True,
    "first-stage-running": lambda lines: "start a" in lines and "start b" in lines,
    "task-done-maybe-unrecorded": lambda lines: "done c" in lines,
    "in-process-task-running": lambda lines: "start f" in lines,
}


@pytest.mark.parametrize("moment", list(MOMENTS), ids=list(MOMENTS))
def test_killed_runner_is_interrupted_then_resumes_without_rerunning_succeeded_tasks(
    ledger_project: Project, moment: str
) -> None:
    project = ledger_project
    run_id = start_and_kill(project, MOMENTS[moment])

    killed = show(project, run_id)
    assert killed["status"] == "interrupted"
    assert killed["ended_at"] is None
    listed = json.loads(project.cli("runs", "--json").out)
    assert [(r["id"], r["status"]) for r in listed] == [(run_id, "interrupted")]
    assert json.loads(project.cli("runs", "--status", "interrupted", "--json").out)[0]["id"] == run_id
    succeeded_before = {name for name, status in statuses(killed).items() if status == "succeeded"}
    for name in succeeded_before:  # recorded succeeded: its work was done
        assert f"done {name}" in ledger(project)

    result = project.cli("resume", run_id, "--json")

    assert result.code == 0, result
    record = json.loads(result.out)
    assert record["id"] == run_id
    assert record["status"] == "succeeded"
    assert statuses(record) == dict.fromkeys(TASKS, "succeeded")
    assert len(record["resumes"]) == 1
    lines = ledger(project)
    starts = Counter(line.split()[1] for line in lines if line.startswith("start "))
    for name in succeeded_before:
        assert starts[name] == 1, f"{name} was recorded succeeded before the kill, yet started {starts[name]} times"
    for name in TASKS:
        assert f"done {name}" in lines, f"{name} never completed; ledger: {lines}"
        attempts = next(t for t in record["tasks"] if t["name"] == name)["attempts"]
        assert attempts[-1]["status"] == "succeeded"
        assert all(a["status"] != "running" for a in attempts), f"{name} keeps an attempt running: {attempts}"
    assert show(project, run_id)["status"] == "succeeded"


def test_cancel_of_an_interrupted_run_ends_it_cancelled_and_it_can_still_resume(ledger_project: Project) -> None:
    project = ledger_project
    run_id = start_and_kill(project, lambda lines: "start c" in lines)
    assert show(project, run_id)["status"] == "interrupted"

    result = project.cli("cancel", run_id)

    assert result.code == 0, result
    assert result.out.strip() == f"run {run_id} cancelled"
    record = show(project, run_id)
    assert record["status"] == "cancelled"
    assert record["ended_at"] is not None
    assert statuses(record) == {
        "a": "succeeded",
        "b": "succeeded",
        "c": "cancelled",
        "d": "cancelled",
        "e": "cancelled",
        "f": "cancelled",
    }

    resumed = project.cli("resume", run_id, "--json")

    assert resumed.code == 0, resumed
    assert json.loads(resumed.out)["status"] == "succeeded"
    starts = Counter(line.split()[1] for line in ledger(project) if line.startswith("start "))
    assert starts["a"] == 1
    assert starts["b"] == 1
    assert all(starts[name] >= 1 for name in TASKS)


LONG_TASKS = """
name: ledger
tasks:
  - {name: a, python: tasks/ledger.py:step, with: {name: a, delay: 30}}
  - {name: b, shell: "echo start b >> ledger.txt; sleep 30; echo done b >> ledger.txt"}
"""


def processes_in(root: Path) -> list[psutil.Process]:
    """Live processes working in `root`: the tasks' processes and whatever they started."""
    found = []
    for proc in psutil.process_iter(["cwd", "status"]):
        try:
            if proc.info["cwd"] == str(root) and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def is_task_process(proc: psutil.Process) -> bool:
    """The process an attempt starts itself: the python child or the shell."""
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "_python_worker" in cmd or "ledger.txt" in cmd


def wait_for_no(root: Path, keep: Callable[[psutil.Process], bool], timeout: float) -> list[psutil.Process]:
    """The processes in `root` that `keep` picks and that are still there after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in processes_in(root) if keep(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.fixture
def long_tasks(ledger_project: Project) -> Iterator[Project]:
    ledger_project.write("workflows/ledger.yaml", LONG_TASKS)
    yield ledger_project
    for proc in processes_in(ledger_project.root):
        try:
            proc.kill()
        except psutil.Error:
            pass


def test_task_processes_die_with_a_killed_runner(long_tasks: Project) -> None:
    run_id = start_and_kill(long_tasks, lambda lines: "start a" in lines and "start b" in lines)

    left = wait_for_no(long_tasks.root, is_task_process, timeout=30)

    assert not left, f"task processes outlived their runner: {[p.cmdline() for p in left]}"
    assert show(long_tasks, run_id)["status"] == "interrupted"


def test_processes_started_by_a_task_die_with_a_killed_runner(long_tasks: Project) -> None:
    start_and_kill(long_tasks, lambda lines: "start a" in lines and "start b" in lines)

    left = wait_for_no(long_tasks.root, lambda p: True, timeout=30)

    assert not left, f"processes outlived their runner: {[p.cmdline() for p in left]}"


def test_concurrent_resumes_of_one_run_one_drives_it_the_others_are_told_who_does(ledger_project: Project) -> None:
    run_id = start_and_kill(ledger_project, MOMENTS["first-stage-running"])
    (ledger_project.root / RELEASE).unlink()  # the winner holds at the last task until every loser answered
    procs = [ledger_project.popen("resume", run_id, "-q") for _ in range(4)]
    try:
        deadline = time.monotonic() + 120
        while sum(p.poll() is not None for p in procs) < 3:
            assert time.monotonic() < deadline, "the resumes that lost never answered"
            time.sleep(0.02)
        losers = [p for p in procs if p.poll() is not None]
        (ledger_project.root / RELEASE).write_text("")
        outputs = {id(p): p.communicate(timeout=120) for p in procs}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    (winner,) = [p for p in procs if p not in losers]
    assert winner.returncode == 0, outputs[id(winner)]
    for p in losers:
        _out, err = outputs[id(p)]
        assert p.returncode == 2, err
        assert re.search(rf"run {run_id} is (being resumed by |still running \()pid {winner.pid} on \S+", err), err
        assert "Traceback" not in err
    assert statuses(show(ledger_project, run_id)) == dict.fromkeys(TASKS, "succeeded")


def test_a_resumed_fan_out_never_runs_a_copy_that_succeeded_again(project: Project) -> None:
    project.write(
        "workflows/fan.yaml",
        """
        name: fan
        preferences: {max_parallel: 1}
        tasks:
          - name: copies
            for_each: "{{ ['ok', 'bad', 'also'] }}"
            shell: "echo {{ task.item }} >> ledger.txt; [ {{ task.item }} != bad ] || [ -e fixed ]"
        """,
    )
    first = project.cli("run", "fan", "--json")
    assert first.code == 1, first.err
    run_id = json.loads(first.out)["id"]
    (project.root / "fixed").write_text("")
    resumed = project.cli("resume", run_id, "--json")
    assert resumed.code == 0, resumed.err
    assert Counter(ledger(project)) == {"ok": 1, "bad": 2, "also": 1}
    logs = project.cli("logs", run_id, "copies").out
    assert "copies 0 succeeded before and are not run again" in logs


COPY_PY = """
import os


def copy(item):
    with open("ledger.txt", "a") as fh:
        fh.write(f"{item}\\n")
    if item == "bad" and not os.path.exists("fixed"):
        raise RuntimeError("not yet")
    return item.upper()
"""


def test_a_resumed_fan_out_that_saves_reuses_the_kept_results_of_its_succeeded_copies(project: Project) -> None:
    import sqlite3

    project.write("tasks/copy.py", COPY_PY)
    project.write(
        "workflows/fan.yaml",
        """
        name: fan
        preferences: {max_parallel: 1}
        tasks:
          - name: copies
            for_each: "{{ ['one', 'two', 'bad', 'four'] }}"
            python: tasks/copy.py:copy
            with: {item: "{{ task.item }}"}
            save: results
          - name: rows
            for_each: "{{ ['one', 'bad'] }}"
            connection: local
            # abs() of the smallest integer is an error: the copy for 'bad' fails until its knob changes
            sql: |
              INSERT INTO ledger VALUES (:item);
              SELECT :item AS item, (SELECT abs(v) FROM knobs WHERE k = :item) AS n
            params: {item: "{{ task.item }}"}
            save_rows: last_rows
          - name: after
            after: {copies: success, rows: success}
            shell: "echo {{ var.results | join(',') }} > results.txt"
        """,
    )
    project.write("flowstage.yaml", "connections:\n  local: sqlite:///local.db\n")
    db = project.root / "local.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "CREATE TABLE ledger (item TEXT); CREATE TABLE knobs (k TEXT, v INTEGER);"
            "INSERT INTO knobs VALUES ('one', 1), ('bad', -9223372036854775808);"
        )
    conn.close()
    first = project.cli("run", "fan", "--json")
    assert first.code == 1, first.err
    run_id = json.loads(first.out)["id"]
    assert Counter(ledger(project)) == {"one": 1, "two": 1, "bad": 1}
    (project.root / "fixed").write_text("")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT item FROM ledger").fetchall() == [("one",)]
        conn.execute("UPDATE knobs SET v = 2 WHERE k = 'bad'")
    conn.close()

    resumed = project.cli("resume", run_id, "--json")

    assert resumed.code == 0, resumed.err
    assert Counter(ledger(project)) == {"one": 1, "two": 1, "bad": 2, "four": 1}
    with sqlite3.connect(db) as conn:
        assert sorted(conn.execute("SELECT item FROM ledger").fetchall()) == [("bad",), ("one",)]
    conn.close()
    record = show(project, run_id)
    assert record["variables"]["results"] == ["ONE", "TWO", "BAD", "FOUR"]
    assert record["variables"]["last_rows"] == [{"item": "bad", "n": 2}]
    assert (project.root / "results.txt").read_text().strip() == "ONE,TWO,BAD,FOUR"
    logs = project.cli("logs", run_id).out
    assert "copies 0, 1 succeeded before and are not run again" in logs
    assert "task rows: copies 0 succeeded before and are not run again" in logs
