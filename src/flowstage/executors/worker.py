"""Runs one attempt from its message, in a process of its own: what a remote worker does.

``python -m flowstage.executors.worker`` reads an attempt message (`AttemptSpec.to_message`, JSON)
on stdin, builds the task kind's resources from the project at the attempt's `root` (its
flowstage.yaml and environment: connections, the catalog), runs the attempt, and writes JSON
lines to stdout — ``{"log": [level, text]}``, ``{"process": pid}``, ``{"note": text}`` as they
happen, then ``{"outcome": {...}}`` (`Outcome.to_message`). Nothing crosses but JSON.

Started with ``FLOWSTAGE_PARENT_PID`` (as the Dask executor's worker side does), it dies with that
parent: a worker that is killed takes its attempts with it (the kernel's parent-death signal; a
task's own processes follow, their supervisor watching this process the same way).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any

from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import FlowstageError
from flowstage.logging import ERROR
from flowstage.model.statuses import TaskStatus


class _LineReports:
    """Reports written as JSON lines (one writer at a time)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def _write(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.out.write(json.dumps(data, default=str) + "\n")
            self.out.flush()

    def log(self, level: int, message: str) -> None:
        self._write({"log": [level, message]})

    def process(self, pid: int) -> None:
        self._write({"process": pid})

    def note(self, reason: str | None) -> None:
        self._write({"note": reason})

    def subrun(self, run_id: str) -> None:
        self._write({"subrun": run_id})

    def done(self, outcome: Outcome) -> None:
        self._write({"outcome": outcome.to_message()})


def run_message(message: dict[str, Any], reports: Any, *, handle: Any = None) -> Outcome:
    """Run the attempt `message` describes with resources built here; report through `reports`.

    Log lines and errors are masked like the local executor's; `reports.done` gets the outcome.
    `handle` (a `ProcessHandle`) lets the caller kill the attempt's child process.
    """
    from flowstage.executors.local import MaskedReports, attempt_secrets, run_secrets
    from flowstage.redact import Scrubber
    from flowstage.settings import load_project
    from flowstage.tasks import RunResources, TaskContext, runner_for
    from flowstage.tasks._process import ProcessHandle

    attempt = AttemptSpec.from_message(message)
    resources = RunResources.for_project(load_project(root=Path(attempt.root)))
    # the same masking as the local executor
    reports = MaskedReports(reports, Scrubber([*run_secrets(resources), *attempt_secrets(attempt)]))
    try:
        context = TaskContext.reporting_to(reports, handle if handle is not None else ProcessHandle(), resources)
        outcome = runner_for(attempt.kind)(attempt, context)
    except FlowstageError as exc:
        outcome = Outcome(TaskStatus.FAILED, error=str(exc))
    except Exception as exc:  # the error boundary of user code
        reports.log(ERROR, traceback.format_exc().rstrip())
        outcome = Outcome(TaskStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    finally:
        resources.close()
    reports.done(outcome)
    return outcome


def _die_with_parent() -> None:
    parent = int(os.environ.pop("FLOWSTAGE_PARENT_PID", "0") or 0)
    if not parent:
        return
    import ctypes

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the worker's side kills this process's group when it can
    if os.getppid() != parent:
        os._exit(137)  # the parent died before the signal was armed


def main() -> int:
    _die_with_parent()
    run_message(json.loads(sys.stdin.read()), _LineReports(sys.stdout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
