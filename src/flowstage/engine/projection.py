"""The event log as the record: typed events, and the pure projection that folds them into task runs.

Every change of a run is an `Event`; the task-run rows the store keeps are what `apply` makes of
the events, in order. The runner changes its own state only through `apply`, and the stores write
each event in the same transaction as the projection row it produced, so replaying a run's
events from its first gives its stored projection back exactly.

Event kinds and their `data`:

=================  ======  =================================================================
kind               task?   data
=================  ======  =================================================================
run_started        no      {} (status ``running``)
run_resumed        no      {"by": who}                     (status ``running``)
run_variables      no      {"variables": {...}}            the run scope after a `save:`
run_code           no      {"version", "files", "folder"}  the deployed version's files it runs
cancel_requested   no      {}
run_finished       no      {"reason"?: text}               (status = the run's final status)
task_status        yes     {"set": {field: value}, ...}    status = the task's new status; `set`
                                                            holds every other field that changed
                                                            (reason, error, started_at, ended_at,
                                                            metrics, saved, variables); the
                                                            attempt change that caused it, when
                                                            there is one, rides along as
                                                            "attempt_started": {...entry} or
                                                            "attempt_update": {"number", "set"}
                                                            (folded first); other keys are for
                                                            display (attempt, instance, retry_in)
task_note          yes     {"reason": text | None}         a running task waits (for a lock, a
                                                            slot): shown as its reason
attempt_started    yes     {"attempt": {...entry}}         a new attempt entry, appended
attempt_updated    yes     {"number": n, "set": {...}}     fields of attempt n (status, ended_at,
                                                            error, metrics, pid, host, sub_run_id)
=================  ======  =================================================================
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from flowstage.engine.ports import Event, TaskRun
from flowstage.model.statuses import TaskStatus

RUN_STARTED = "run_started"
RUN_RESUMED = "run_resumed"
RUN_VARIABLES = "run_variables"
RUN_CODE = "run_code"
CANCEL_REQUESTED = "cancel_requested"
RUN_FINISHED = "run_finished"
TASK_STATUS = "task_status"
TASK_NOTE = "task_note"
ATTEMPT_STARTED = "attempt_started"
ATTEMPT_UPDATED = "attempt_updated"

RUN_KINDS = frozenset({RUN_STARTED, RUN_RESUMED, RUN_VARIABLES, RUN_CODE, CANCEL_REQUESTED, RUN_FINISHED})
TASK_KINDS = frozenset({TASK_STATUS, TASK_NOTE, ATTEMPT_STARTED, ATTEMPT_UPDATED})
KINDS = RUN_KINDS | TASK_KINDS

#: the fields of a task run a `task_status` event may set
TASK_FIELDS = ("reason", "error", "started_at", "ended_at", "metrics", "saved", "variables")
OPEN_ATTEMPT = frozenset({"running", "pending", "retrying", "interrupted"})


def apply(task: TaskRun, event: Event) -> None:
    """Fold one task event into `task` (in place). Run events leave it as it is.

    Events are never changed once made: their values are shared with the record, not copied
    (attempt entries, which the record changes in place, are copied).
    """
    data = event.data
    if event.kind == TASK_STATUS:
        if "attempt_started" in data:
            task.attempts.append(dict(data["attempt_started"]))
        if "attempt_update" in data:
            _update_attempt(task, data["attempt_update"])
        if event.status is not None:
            task.status = TaskStatus(event.status)
        for key, value in data.get("set", {}).items():
            if key not in TASK_FIELDS:
                raise ValueError(f"task_status sets an unknown field {key!r}")
            setattr(task, key, value)
    elif event.kind == TASK_NOTE:
        task.reason = data.get("reason")
    elif event.kind == ATTEMPT_STARTED:
        task.attempts.append(dict(data["attempt"]))
    elif event.kind == ATTEMPT_UPDATED:
        _update_attempt(task, data)


def _update_attempt(task: TaskRun, data: dict[str, Any]) -> None:
    number = int(data["number"])
    if not 1 <= number <= len(task.attempts):
        raise ValueError(f"attempt {number} of {task.name} does not exist")
    task.attempts[number - 1].update(data.get("set", {}))


def merged(attempt: Event, status: Event) -> Event | None:
    """One `task_status` event carrying the attempt change just before it, when both are of one task."""
    if status.kind != TASK_STATUS or status.task is None or attempt.task != status.task:
        return None
    if attempt.kind == ATTEMPT_STARTED and "attempt_started" not in status.data:
        extra = {"attempt_started": attempt.data["attempt"]}
    elif attempt.kind == ATTEMPT_UPDATED and "attempt_update" not in status.data:
        extra = {"attempt_update": attempt.data}
    else:
        return None
    return Event(status.run_id, status.at, TASK_STATUS, status.task, status.status, {**extra, **status.data})


def replay(tasks: Iterable[TaskRun], events: Iterable[Event]) -> dict[str, TaskRun]:
    """The projection of `events` over the initial `tasks` (copied, not changed)."""
    out = {t.name: copy.deepcopy(t) for t in tasks}
    for event in events:
        if event.task is not None and event.kind in TASK_KINDS:
            apply(out[event.task], event)
    return out


def fresh(tasks: Iterable[TaskRun]) -> list[TaskRun]:
    """The tasks of a new run as `create_run` records them: pending, nothing else."""
    return [TaskRun(name=t.name, stage=t.stage) for t in tasks]


def task_event(run_id: str, at: float, name: str, status: TaskStatus | str, changes: dict[str, Any], **display: Any) -> Event:
    """A `task_status` event setting `changes` (display-only keys beside them; None values dropped)."""
    data: dict[str, Any] = {k: v for k, v in display.items() if v is not None}
    if changes:
        data["set"] = dict(changes)
    return Event(run_id, at, TASK_STATUS, name, str(status), data)


def attempt_event(run_id: str, at: float, name: str, number: int, changes: dict[str, Any]) -> Event:
    return Event(run_id, at, ATTEMPT_UPDATED, name, None, {"number": number, "set": dict(changes)})


def orphan_events(tasks: Sequence[TaskRun], *, run_id: str, status: str, at: float, reason: str) -> list[Event]:
    """The events that end a run whose runner is gone: every task still open is cancelled,
    every attempt still open ends, then the run ends with `status`."""
    events: list[Event] = []
    for task in tasks:
        if task.status not in (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.RETRYING):
            continue
        for number, attempt in enumerate(task.attempts, start=1):
            if attempt.get("status") in OPEN_ATTEMPT:
                events.append(
                    attempt_event(
                        run_id,
                        at,
                        task.name,
                        number,
                        {
                            "status": "cancelled",
                            "ended_at": attempt.get("ended_at") or at,
                            "error": attempt.get("error") or reason,
                        },
                    )
                )
        events.append(task_event(run_id, at, task.name, TaskStatus.CANCELLED, {"reason": reason, "ended_at": at}))
    events.append(Event(run_id, at, RUN_FINISHED, None, status, {"reason": reason}))
    return events


__all__ = [
    "ATTEMPT_STARTED",
    "ATTEMPT_UPDATED",
    "CANCEL_REQUESTED",
    "KINDS",
    "RUN_CODE",
    "RUN_FINISHED",
    "RUN_RESUMED",
    "RUN_STARTED",
    "RUN_VARIABLES",
    "TASK_NOTE",
    "TASK_STATUS",
    "apply",
    "attempt_event",
    "fresh",
    "merged",
    "orphan_events",
    "replay",
    "task_event",
]
