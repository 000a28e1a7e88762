"""What tests read back from the CLI: the JSON it printed, tasks by name, waiting for a state."""

from __future__ import annotations

import json
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
