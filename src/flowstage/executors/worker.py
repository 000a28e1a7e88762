"""Runs one attempt from its message, in a process of its own: what a remote worker does.

``python -m flowstage.executors.worker`` reads an attempt message (`AttemptSpec.to_message`, JSON)
on stdin, builds the task kind's resources from the project at the attempt's `root` (its
flowstage.yaml and environment: connections, the catalog), runs the attempt, and writes JSON
lines to stdout — ``{"log": [level, text]}``, ``{"process": pid}``, ``{"note": text}`` as they
happen, then ``{"outcome": {...}}`` (`Outcome.to_message`). Nothing crosses but JSON.
"""

from __future__ import annotations

import json
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


def run_message(message: dict[str, Any], reports: Any) -> Outcome:
    """Run the attempt `message` describes with resources built here; report through `reports`.

    Log lines and errors are masked like the local executor's; `reports.done` gets the outcome.
    """
    from flowstage.executors.local import MaskedReports, run_secrets
    from flowstage.redact import Scrubber
    from flowstage.settings import load_project
    from flowstage.tasks import RunResources, TaskContext, runner_for
    from flowstage.tasks._process import ProcessHandle

    attempt = AttemptSpec.from_message(message)
    resources = RunResources.for_project(load_project(root=Path(attempt.root)))
    reports = MaskedReports(reports, Scrubber(run_secrets(resources)))  # the same masking as the local executor
    try:
        outcome = runner_for(attempt.kind)(attempt, TaskContext.reporting_to(reports, ProcessHandle(), resources))
    except FlowstageError as exc:
        outcome = Outcome(TaskStatus.FAILED, error=str(exc))
    except Exception as exc:  # the error boundary of user code
        reports.log(ERROR, traceback.format_exc().rstrip())
        outcome = Outcome(TaskStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    finally:
        resources.close()
    reports.done(outcome)
    return outcome


def main() -> int:
    run_message(json.loads(sys.stdin.read()), _LineReports(sys.stdout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
