"""What the engine needs from the world: a run store, an executor and a clock.

The engine owns the run state; executors only report outcomes and log lines, and the store
only records what the engine tells it, in batches that are written before they are acted on.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from msgspec import Struct, field

from flowstage.model.kinds import KindSpec
from flowstage.model.statuses import TaskStatus


class LogLine(Struct):
    run_id: str
    task: str | None
    attempt: int | None
    at: float  # seconds since the epoch
    level: int
    message: str


class TaskRun(Struct):
    """The projection of one task in one run, as the store keeps it (slots: a run may hold 100,000)."""

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


class Event(Struct):
    """One recorded fact: a task or run changed state, a run was resumed or cancel was asked."""

    run_id: str
    at: float
    kind: str  # run_started | run_resumed | task_status | run_finished | cancel_requested
    task: str | None = None
    status: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Batch(Struct):
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


class AttemptSpec(Struct):
    """One attempt of one task as a message: JSON data, runnable by any process that has the task kinds.

    Everything live (connections, the catalog, kill handles) is built by the side that runs it, from
    `root` (the project) and this message; `to_message` / `from_message` carry it across processes.
    """

    run_id: str
    workflow: str
    task: str  # the task's name
    attempt: int
    spec: KindSpec  # rendered and validated again
    kwargs: dict[str, Any]
    variables: dict[str, Any]
    root: str
    log_level: int
    interpreter: str | None = None
    #: the task's own `variables:`, rendered (a sub-workflow's overrides, a package's task scope)
    task_variables: dict[str, Any] = field(default_factory=dict)
    #: the task's earlier attempts (of this run, before a resume too)
    previous: list[dict[str, Any]] = field(default_factory=list)
    #: which copy of a fanned-out task this attempt is (None for a plain task)
    instance: int | None = None
    #: that copy's item (`for_each`) or index (`instances`)
    item: Any = None
    #: the attempt's timeout in seconds (the runner enforces it; executors may plan with it)
    timeout: float | None = None
    #: when the attempt must have ended (seconds since the epoch), None without a timeout
    deadline: float | None = None
    #: the task's `save:` (what its result must carry)
    save: str | dict[str, str] | None = None
    #: environment variables the task's process gets beyond the attempt's identity
    env: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def to_message(self) -> dict[str, Any]:
        """The attempt as plain JSON data."""
        data = {k: getattr(self, k) for k in self.__struct_fields__ if k != "spec"}
        data["kind"] = self.spec.kind
        data["spec"] = self.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return data

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> AttemptSpec:
        """The attempt `to_message` gave (its spec validated again by its kind's model)."""
        from flowstage.model.kinds import kind_spec

        body = dict(data)
        kind = body.pop("kind")
        model = kind_spec(kind)
        if model is None:
            raise LookupError(f"no task kind {kind!r} here")
        body["spec"] = model.model_validate(body["spec"])
        return cls(**body)


class Outcome(Struct):
    status: TaskStatus  # SUCCEEDED, FAILED or TIMED_OUT
    value: Any = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: variables the task saves itself beyond `save:` (e.g. `save_rows:`)
    variables: dict[str, Any] = field(default_factory=dict)
    #: the attempt's own status when it says more than `status`: ``worker_lost`` (the machine that
    #: ran it went away: retried on a budget of its own, not the task's `retries:`)
    attempt_status: str | None = None
    #: the variables the attempt bound, when its kind layers its own between the task's and the run
    #: scope it was given (a dataflow package's `variables:`): recorded as the task's `variables`
    resolved: dict[str, Any] | None = None

    def to_message(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "value": self.value,
            "error": self.error,
            "metrics": self.metrics,
            "variables": self.variables,
            "attempt_status": self.attempt_status,
            "resolved": self.resolved,
        }

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            TaskStatus(data["status"]),
            value=data.get("value"),
            error=data.get("error"),
            metrics=dict(data.get("metrics") or {}),
            variables=dict(data.get("variables") or {}),
            attempt_status=data.get("attempt_status"),
            resolved=dict(data["resolved"]) if isinstance(data.get("resolved"), dict) else None,
        )


#: an attempt whose worker went away (`Outcome.attempt_status`)
WORKER_LOST = "worker_lost"


class Reports(Protocol):
    """What the side running an attempt tells the runner (thread-safe; each call is queued)."""

    def log(self, level: int, message: str) -> None:
        """One line of the attempt's output or of its kind's progress."""

    def process(self, pid: int) -> None:
        """The attempt started a child process leading its own group (recorded: a resume kills leftovers)."""

    def note(self, reason: str | None) -> None:
        """The attempt waits for something (a lock, a slot): shown as the task's reason; None clears it."""

    def subrun(self, run_id: str) -> None:
        """The attempt started (or took over) sub-run `run_id` (recorded at once: a resume must find it)."""

    def done(self, outcome: Outcome) -> None:
        """The attempt ended (called once)."""


class Handle(Protocol):
    def kill(self) -> None:
        """Stop the attempt and everything it started."""


class ExecutorPort(Protocol):
    def submit(self, attempt: AttemptSpec, reports: Reports) -> Handle:
        """Start `attempt`; report its output, processes and outcome through `reports`."""

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
