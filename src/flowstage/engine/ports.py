"""What the engine needs from the world: a run store, an executor and a clock.

The engine owns the run state; executors only report outcomes and log lines, and the store
only records what the engine tells it, in batches that are written before they are acted on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowstage.model.kinds import KindSpec
from flowstage.model.statuses import TaskStatus
from flowstage.model.workflow import Task


@dataclass
class LogLine:
    run_id: str
    task: str | None
    attempt: int | None
    at: float  # seconds since the epoch
    level: int
    message: str


@dataclass
class TaskRun:
    """The projection of one task in one run, as the store keeps it."""

    name: str
    stage: str
    status: TaskStatus = TaskStatus.PENDING
    reason: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    saved: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Event:
    """One recorded fact: a task or run changed state, a run was resumed or cancel was asked."""

    run_id: str
    at: float
    kind: str  # run_started | run_resumed | task_status | run_finished | cancel_requested
    task: str | None = None
    status: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """Everything the runner learned since its last write, recorded in one transaction."""

    run_id: str
    tasks: list[TaskRun] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    run_status: str | None = None
    run_ended_at: float | None = None
    run_variables: dict[str, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.tasks or self.events or self.logs or self.run_status or self.run_variables is not None)


class RunStorePort(Protocol):
    def record(self, batch: Batch) -> None:
        """Write a batch in one transaction."""

    def heartbeat(self, run_id: str, at: float) -> bool:
        """Mark the runner alive; answers whether a cancel was requested."""


@dataclass
class AttemptJob:
    """One attempt of one task, with its templates rendered."""

    run_id: str
    workflow: str
    task: Task
    spec: KindSpec
    kwargs: dict[str, Any]
    variables: dict[str, Any]
    attempt: int
    root: str
    log_level: int
    context: dict[str, Any] = field(default_factory=dict)
    interpreter: str | None = None
    #: the task's own `variables:`, rendered (a sub-workflow's overrides)
    task_variables: dict[str, Any] = field(default_factory=dict)
    #: the task's earlier attempts (of this run, before a resume too)
    previous: list[dict[str, Any]] = field(default_factory=list)
    #: told the process group of a child process the attempt starts (recorded, so that the
    #: group can be killed if this runner dies)
    on_process: Callable[[int], None] | None = None
    #: told the id of a sub-run the attempt starts (recorded at once: a resume must find it)
    on_subrun: Callable[[str], None] | None = None
    #: which copy of a fanned-out task this attempt is (None for a plain task)
    instance: int | None = None
    #: the attempt's timeout in seconds (the runner enforces it; executors may plan with it)
    timeout: float | None = None


@dataclass
class Outcome:
    status: TaskStatus  # SUCCEEDED, FAILED or TIMED_OUT
    value: Any = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: variables the task saves itself beyond `save:` (e.g. `save_rows:`)
    variables: dict[str, Any] = field(default_factory=dict)


class Handle(Protocol):
    def kill(self) -> None:
        """Stop the attempt and everything it started."""


class ExecutorPort(Protocol):
    def submit(
        self,
        job: AttemptJob,
        done: Callable[[Outcome], None],
        log: Callable[[int, str], None],
    ) -> Handle:
        """Start `job`; call `done` once with its outcome and `log` for each output line."""

    def shutdown(self) -> None:
        """Release workers (running attempts have been killed or finished)."""


class Clock(Protocol):
    def time(self) -> float:
        """Wall time, seconds since the epoch."""

    def monotonic(self) -> float:
        """A clock for timeouts and delays."""


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
