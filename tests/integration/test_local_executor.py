"""The local executor never lets an in-process python attempt hold the runner open.

A thread cannot be killed: an `in_process: true` attempt that is killed (its run timed out) keeps
running its callable. It runs on a daemon thread of its own, so `flowstage run` still returns at
once when the run has ended, and `max_parallel` still holds (the runner counts attempts itself).
"""

from __future__ import annotations

import time
from datetime import datetime

from tests.conftest import Project
from tests.records import record_of, tasks_of

STUCK_PY = """
import time


def stuck():
    time.sleep(120)  # far longer than the test waits


def short(seconds):
    time.sleep(seconds)
"""


def test_a_killed_in_process_attempt_does_not_keep_the_runner_alive(project: Project) -> None:
    project.write("tasks/stuck.py", STUCK_PY)
    project.write(
        "workflows/stuck.yaml",
        """
        name: stuck
        preferences: {run_timeout: 1s}
        tasks:
          - {name: s, python: "tasks/stuck.py:stuck", in_process: true}
        """,
    )

    started = time.monotonic()
    ran = project.cli("run", "stuck", "--json", timeout=60)
    took = time.monotonic() - started

    record = record_of(ran)
    assert record["status"] == "timed_out", record
    assert tasks_of(record)["s"]["status"] == "timed_out"
    assert took < 30, f"flowstage run took {took:.1f}s: the abandoned attempt held the process"


def test_in_process_attempts_respect_max_parallel(project: Project) -> None:
    project.write("tasks/stuck.py", STUCK_PY)
    project.write(
        "workflows/par.yaml",
        """
        name: par
        preferences: {max_parallel: 2}
        tasks:
          - {name: a, python: "tasks/stuck.py:short", in_process: true, with: {seconds: 0.3}}
          - {name: b, python: "tasks/stuck.py:short", in_process: true, with: {seconds: 0.3}}
          - {name: c, python: "tasks/stuck.py:short", in_process: true, with: {seconds: 0.3}}
          - {name: d, python: "tasks/stuck.py:short", in_process: true, with: {seconds: 0.3}}
        """,
    )

    ran = project.cli("run", "par", "--json")

    assert ran.code == 0, ran
    spans = [
        (datetime.fromisoformat(t["started_at"]).timestamp(), datetime.fromisoformat(t["ended_at"]).timestamp())
        for t in record_of(ran)["tasks"]
    ]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2
