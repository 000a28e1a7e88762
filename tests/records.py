"""What tests read back from the CLI: the JSON it printed, tasks by name, waiting for a state.

Tests never sleep to let something happen: they wait for a recorded fact (a row in the store, a
line on stdout, a file) with a deadline, and tasks that must hold still wait for a file the test
writes (`shell_wait_for`).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from tests.conftest import Result


def record_of(result: Result) -> Any:
    """The JSON document `--json` printed (stdout holds nothing else)."""
    try:
        return json.loads(result.out)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON document:\n{result.out}\nstderr:\n{result.err}")


def tasks_of(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A run record's tasks by name."""
    return {t["name"]: t for t in record["tasks"]}


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll `check` until it answers something true-ish; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g}s for {what}")
        time.sleep(every)


def processes_with(token: str) -> list[psutil.Process]:
    """Live (not zombie) processes with `token` as a whole argument, e.g. `sleep <token>`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if token in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def shell_wait_for(*paths: str, timeout: float = 120) -> str:
    """A POSIX shell snippet that waits until every path exists; it exits 1 after `timeout` seconds.

    A task that runs it holds still until the test (or another task) writes the files, so a test
    can act while the task is surely running, instead of racing a `sleep`.
    """
    exists = " && ".join(f"[ -e {shlex.quote(p)} ]" for p in paths)
    return f"end=$(( $(date +%s) + {int(timeout)} )); until {exists}; do [ $(date +%s) -lt $end ] || exit 1; sleep 0.05; done"


def shell_wait_for_log(task: str, text: str, timeout: float = 120) -> str:
    """A shell snippet for a task's command: wait until `task` of the same run has logged `text`.

    It reads the run's log lines (every level) through `flowstage logs`, so the task waits on what
    the other task recorded; it exits 1 after `timeout` seconds. The run's tasks must keep the
    lines the snippet looks for (`log_level: debug` for debug lines).
    """
    logs = f"{shlex.quote(sys.executable)} -m flowstage logs {{{{ run.id }}}} {shlex.quote(task)} --level debug"
    return (
        f"end=$(( $(date +%s) + {int(timeout)} )); "
        f"until {logs} | grep -qF {shlex.quote(text)}; do [ $(date +%s) -lt $end ] || exit 1; sleep 0.1; done"
    )
