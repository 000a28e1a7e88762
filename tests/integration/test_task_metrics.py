"""`memory_mb` and `cpu_seconds` of python and shell tasks are their own process tree's (SPEC §6).

The runner never forks a copy of itself that gets measured: a task process runs under the small
supervisor, which samples its descendants and reads their rusage. So a no-op task shows a few MB
(the supervisor's pages its child copies before exec: about 6 MB), a task's allocations show at
their size, two children holding memory at the same time add up, and a runner that itself holds
300 MB does not show in the tasks it runs.

Each workflow runs once per module through the real CLI (`flowstage run`, then `show --json`).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.conftest import Project
from tests.records import record_of, tasks_of

MB = 2**20

TASKS_PY = """
import resource
import time

HELD = []


def noop():
    return None


def allocate(mb):
    buf = bytearray(mb * 2**20)
    buf[:: 4096] = b"\\x01" * len(range(0, len(buf), 4096))  # every page resident
    time.sleep(0.5)  # held across many samples of the supervisor
    return len(buf)


def spin(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def hold_in_runner(mb):
    buf = bytearray(mb * 2**20)
    buf[:: 4096] = b"\\x01" * len(range(0, len(buf), 4096))
    HELD.append(buf)  # kept by the runner's process until it exits
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
"""

# Allocates `mb`, says so with a file, waits (bounded) until every sibling did, then holds it.
HOLDER_PY = """
import os, sys, time
mb, me, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
buf = bytearray(mb * 2**20)
buf[:: 4096] = b"\\x01" * len(range(0, len(buf), 4096))
open("ready-" + me, "w").close()
deadline = time.monotonic() + 30
while sum(os.path.exists("ready-%d" % i) for i in range(count)) < count and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.5)
"""

SPIN_PY = """
import time
start = time.process_time()
while time.process_time() - start < 0.7:
    pass
"""


def workflow(python: str) -> str:
    return f"""
name: metrics
preferences: {{max_parallel: 1}}
tasks:
  - {{name: shell_true, shell: "true"}}
  - {{name: python_noop, python: "tasks/work.py:noop", after: [shell_true]}}
  - {{name: python_300, python: "tasks/work.py:allocate", with: {{mb: 300}}, after: [python_noop]}}
  - name: shell_two_children
    after: [python_300]
    shell: |
      {python} holder.py 150 0 2 &
      {python} holder.py 150 1 2 &
      wait
  - {{name: python_spin, python: "tasks/work.py:spin", with: {{seconds: 0.7}}, after: [shell_two_children]}}
  - {{name: shell_spin, shell: "{python} spin.py", after: [python_spin]}}
"""


HELD_WORKFLOW = """
name: held
tasks:
  - {name: hold, python: "tasks/work.py:hold_in_runner", in_process: true, with: {mb: 300}, save: runner_peak_mb}
  - {name: shell_true, shell: "true", after: [hold]}
  - {name: python_noop, python: "tasks/work.py:noop", after: [hold]}
"""


def metrics_of(project: Project, workflow_name: str) -> dict[str, dict[str, Any]]:
    """Each task's metrics, as `flowstage show RUN --json` reports them after `flowstage run`."""
    ran = project.cli("run", workflow_name, "--json")
    assert ran.code == 0, ran
    shown = project.cli("show", record_of(ran)["id"], "--json")
    assert shown.code == 0, shown
    record = record_of(shown)
    tasks = tasks_of(record)
    assert all(t["status"] == "succeeded" for t in tasks.values()), tasks
    return {name: {**t["metrics"], "saved": t["saved"], "attempt": t["attempts"][-1]["metrics"]} for name, t in tasks.items()}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("metrics") / "proj"
    root.mkdir()
    (root / "flowstage.yaml").write_text("{}\n")
    project = Project(root)
    project.write("tasks/work.py", TASKS_PY)
    project.write("holder.py", HOLDER_PY)
    project.write("spin.py", SPIN_PY)
    project.write("workflows/metrics.yaml", workflow(sys.executable))
    project.write("workflows/held.yaml", HELD_WORKFLOW)
    return project


@pytest.fixture(scope="module")
def measured(project: Project) -> dict[str, dict[str, Any]]:
    return metrics_of(project, "metrics")


@pytest.fixture(scope="module")
def measured_under_a_big_runner(project: Project) -> dict[str, dict[str, Any]]:
    return metrics_of(project, "held")


def test_a_no_op_shell_task_shows_a_few_megabytes_and_no_cpu(measured: dict[str, dict[str, Any]]) -> None:
    true = measured["shell_true"]
    assert 0 < true["memory_mb"] < 10, true
    assert 0 <= true["cpu_seconds"] < 0.2, true


def test_a_python_task_shows_what_it_allocates_plus_the_interpreter(measured: dict[str, dict[str, Any]]) -> None:
    # What is asserted: memory_mb of a child interpreter that allocates and touches 300 MB equals
    # 300 MB plus the baseline of the same interpreter running a no-op callable (its own code,
    # about 10 MB), within 10 % of 300 MB. Before, the runner's memory was counted in as well.
    baseline = measured["python_noop"]["memory_mb"]
    peak = measured["python_300"]["memory_mb"]
    assert baseline < 30, measured["python_noop"]
    assert abs(peak - (300 + baseline)) <= 30, (peak, baseline)


def test_children_holding_memory_at_the_same_time_add_up(measured: dict[str, dict[str, Any]]) -> None:
    # two processes of 150 MB each, alive together: the tree's peak is their sum, not the larger one
    assert measured["shell_two_children"]["memory_mb"] >= 270, measured["shell_two_children"]


def test_cpu_seconds_count_the_task_and_the_processes_it_starts(measured: dict[str, dict[str, Any]]) -> None:
    assert measured["python_spin"]["cpu_seconds"] >= 0.5, measured["python_spin"]
    assert measured["shell_spin"]["cpu_seconds"] >= 0.5, measured["shell_spin"]  # a child of the shell
    assert measured["python_noop"]["cpu_seconds"] < 0.5, measured["python_noop"]


def test_a_runner_holding_300_mb_does_not_inflate_its_tasks_memory(
    measured_under_a_big_runner: dict[str, dict[str, Any]],
) -> None:
    tasks = measured_under_a_big_runner
    assert tasks["hold"]["saved"]["runner_peak_mb"] >= 300  # the runner did hold it
    assert tasks["shell_true"]["memory_mb"] < 10, tasks["shell_true"]
    assert tasks["python_noop"]["memory_mb"] < 30, tasks["python_noop"]


def test_memory_and_cpu_are_in_the_attempt_and_the_task_metrics(measured: dict[str, dict[str, Any]]) -> None:
    for name in ("shell_true", "python_noop", "python_300", "shell_two_children"):
        attempt = measured[name]["attempt"]
        assert attempt["memory_mb"] == measured[name]["memory_mb"], (name, measured[name])
        assert attempt["cpu_seconds"] == measured[name]["cpu_seconds"], (name, measured[name])
