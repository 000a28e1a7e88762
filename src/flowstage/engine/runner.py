"""The driver: one owner of a run's state, driving a plan to its end through the state machine.

The loop decides what may start (pure `decisions`), changes state only by events (folded into
the task records by the pure `projection.apply`, each status change checked by the
`transitions` table), records them in one batch, then acts on the effects (submit attempts,
kill, schedule retries); it waits for reports from attempts, timeouts, retries and cancel
requests, and beats. Nothing is acted on before it is recorded, so a killed runner loses
nothing it had recorded, and a resume knows exactly where it stood. Hooks watch each recorded
change and can never change the run.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import queue
import random
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from msgspec import Struct, field

from flowstage.engine import attempts, collector, retries
from flowstage.engine.attempts import RunInfo, jsonable
from flowstage.engine.decisions import Action, run_status
from flowstage.engine.hooks import Hooks
from flowstage.engine.plan import Plan
from flowstage.engine.ports import (
    WORKER_LOST,
    AttemptSpec,
    Clock,
    Event,
    ExecutorPort,
    Handle,
    Outcome,
    RunStorePort,
    SystemClock,
    TaskRun,
)
from flowstage.engine.projection import (
    ATTEMPT_STARTED,
    RUN_FINISHED,
    RUN_VARIABLES,
    TASK_NOTE,
    task_event,
)
from flowstage.engine.readiness import Readiness
from flowstage.engine.recorder import Recorder
from flowstage.engine.transitions import FINISH, Effect, RunInput, TaskInput, Transition, run_transition
from flowstage.errors import FlowstageError, RunInterrupted
from flowstage.logging import ERROR, INFO, LEVELS, NOTICE, WARNING
from flowstage.model import templates
from flowstage.model.statuses import TASK_FINAL, RunStatus, TaskStatus
from flowstage.model.workflow import Task
from flowstage.redact import masked_paths

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
#: tries per copy after its worker was lost, besides the task's own `retries:`
WORKER_LOST_RETRIES = 3
_RESET: dict[str, Any] = {
    "reason": None,
    "error": None,
    "started_at": None,
    "ended_at": None,
    "metrics": {},
    "saved": {},
    "variables": {},
}
_LEVEL = {TaskStatus.SUCCEEDED: INFO, TaskStatus.SKIPPED: NOTICE, TaskStatus.CANCELLED: WARNING}


class _Running(Struct):
    """An attempt in flight."""

    attempt: int
    handle: Handle | None
    deadline: float | None
    started: float
    copy: int = 0


class _Launch(Struct):
    """A started task: its copies (one for a plain task; N for `instances` / `for_each`)."""

    items: list[Any]
    fan: bool
    todo: deque[int]
    started: float  # monotonic
    tries: dict[int, int] = field(default_factory=dict)
    #: attempts per copy that ended because their worker was lost (a budget apart from `retries:`)
    lost: dict[int, int] = field(default_factory=dict)
    values: dict[int, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    #: the record's `variables` as an attempt said it bound them (`Outcome.resolved`), as a change
    #: for the move that ends the attempt (empty: the scope recorded at its start stands)
    bound: dict[str, Any] = field(default_factory=dict)
    #: bytes (as JSON) of the copies' results kept with their attempts, for a resume (`_kept_result`)
    kept: int = 0


class _Due(Struct, order=True):
    at: float
    name: str
    copy: int = 0


class _InboxReports:
    """An attempt's reports, queued for the driver's loop."""

    def __init__(self, inbox: queue.SimpleQueue[tuple[str, Any]], name: str, attempt: int) -> None:
        self.inbox, self.name, self.attempt = inbox, name, attempt

    def log(self, level: int, message: str) -> None:
        self.inbox.put(("log", (self.name, self.attempt, level, message)))

    def process(self, pid: int) -> None:
        self.inbox.put(("process", (self.name, self.attempt, pid)))

    def note(self, reason: str | None) -> None:
        self.inbox.put(("note", (self.name, self.attempt, reason)))

    def subrun(self, run_id: str) -> None:
        self.inbox.put(("subrun", (self.name, self.attempt, run_id)))

    def done(self, outcome: Outcome) -> None:
        self.inbox.put(("done", (self.name, self.attempt, outcome)))


class Runner:
    """Drives one run of a plan to its end."""

    def __init__(
        self,
        *,
        plan: Plan,
        info: RunInfo,
        store: RunStorePort,
        executor: ExecutorPort,
        variables: Mapping[str, Any],
        prior: Mapping[str, TaskRun] | None = None,
        clock: Clock | None = None,
        hooks: Hooks | None = None,
        observer: Callable[[Event, TaskRun | None], None] | None = None,
        on_success: Callable[[Callable[[int, str], None]], str | None] | None = None,
        subruns: ExecutorPort | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`rng` draws the jitter of retry delays (`engine.retries`); a seeded one makes them repeatable."""
        self.plan = plan
        self.info = info
        self.store = store
        self.executor = executor
        #: where `workflow:` attempts go: sub-runs are started by the driver's side, never in a task slot
        self.subruns = subruns
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.hooks = hooks or Hooks()
        if observer is not None:
            self.hooks.after_event.append(observer)
        if self.hooks.on_error is None:
            self.hooks.on_error = lambda message: self._log(WARNING, message)
        #: runs after every task ended well (auto flush); an answer is an error that fails the run
        self.on_success = on_success
        self.prefs = plan.workflow.preferences
        #: the interpreter of python tasks without `interpreter:` (None: the one running the task)
        self.python = plan.workflow.default_python()
        self.variables: dict[str, Any] = dict(variables)
        with collector.paused():
            self._build(plan, info, store, prior)

    def _build(self, plan: Plan, info: RunInfo, store: RunStorePort, prior: Mapping[str, TaskRun] | None) -> None:
        """The run's records and scheduling structures (one entry per task)."""
        run_level = LEVELS[self.prefs.log_level]
        level_of = {name: LEVELS[node.task.log_level] if node.task.log_level else run_level for name, node in plan.nodes.items()}
        records = {
            name: TaskRun(name=name, stage=plan.stage_names[node.stage])
            if prior is None or name not in prior
            else _copy(prior[name])
            for name, node in plan.nodes.items()
        }
        self.rec = Recorder(
            run_id=info.id,
            store=store,
            clock=self.clock,
            hooks=self.hooks,
            records=records,
            level_of=level_of,
            run_level=run_level,
        )
        for name in prior or ():
            if name in records:
                self._resume_task(name)
        self.readiness = Readiness(plan, self._status)
        self.ready: deque[str] = deque()
        self.queued: set[str] = set()
        self.running: dict[tuple[str, int], _Running] = {}  # (task, attempt) -> the attempt in flight
        self.launch: dict[str, _Launch] = {}
        self.waiting_copies: deque[str] = deque()  # started tasks with copies waiting for a slot
        self.retry_heap: list[_Due] = []
        self.inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.to_submit: list[AttemptSpec] = []
        self.cancelled = False
        self.timed_out = False
        self.needs_render = {name: attempts.needs_render(node.task) for name, node in plan.nodes.items()}

    @property
    def records(self) -> dict[str, TaskRun]:
        """The one record of each task run."""
        return self.rec.records

    def _status(self, name: str) -> TaskStatus:
        return self.rec.records[name].status

    def _log(self, level: int, message: str, task: str | None = None, attempt: int | None = None) -> None:
        self.rec.log(level, message, task, attempt)

    def _resume_task(self, name: str) -> None:
        """A task of a resumed run that did not succeed starts over; attempts its runner left open end."""
        record = self.records[name]
        if record.status is TaskStatus.SUCCEEDED:
            return
        for number, entry in enumerate(record.attempts, start=1):
            if entry.get("status") in ("running", "pending", "retrying"):
                self.rec.attempt(
                    name,
                    number,
                    {"status": "interrupted", "error": entry.get("error") or "the runner stopped during this attempt"},
                )
        if record.status is not TaskStatus.PENDING or any(getattr(record, k) != v for k, v in _RESET.items()):
            if record.status is TaskStatus.PENDING:
                self.rec.emit(task_event(self.info.id, self.clock.time(), name, TaskStatus.PENDING, dict(_RESET)))
            else:
                self.rec.move(name, TaskInput.RESUME, dict(_RESET))

    # ------------------------------------------------------------------ decisions
    def _evaluate_all(self) -> None:
        for name in self.readiness.candidates():
            if self._status(name) is not TaskStatus.PENDING or name in self.queued or name in self.launch:
                continue
            d = self.readiness.decide(name)
            if d.action is Action.RUN:
                self.queued.add(name)
                self.ready.append(name)
            elif d.action is Action.SKIP:
                self._finish(name, TaskInput.SKIP, reason=d.reason)

    def _finish(
        self,
        name: str,
        move: TaskInput,
        *,
        reason: str | None = None,
        error: str | None = None,
        changes: dict[str, Any] | None = None,
        why: str = "",
    ) -> None:
        """Move `name` to a final status and carry the effects out."""
        record = self.records[name]
        now = self.clock.time()
        data: dict[str, Any] = {"reason": reason, **(changes or {})}
        if error is not None:
            data["error"] = error
        if record.ended_at is None or move is not TaskInput.SKIP:
            data["ended_at"] = now
        step = self.rec.move(name, move, data)
        self._carry(name, step, why=why or reason or error or "")

    def _carry(self, name: str, step: Transition, *, why: str) -> None:
        """The effects of a transition that ended a task: stop its attempts, re-decide what depends on it."""
        if Effect.KILL in step.effects:
            for key, running in list(self.running.items()):
                if key[0] == name:
                    if running.handle is not None:
                        running.handle.kill()
                    del self.running[key]
                    self.rec.attempt(name, key[1], {"status": "cancelled", "ended_at": self.clock.time(), "error": why})
            launch = self.launch.get(name)
            if launch is not None:
                launch.todo.clear()
        if Effect.DECIDE not in step.effects:
            return
        # the task is final: what its copies needed goes (a run of 100,000 tasks would keep 100,000)
        self.launch.pop(name, None)
        self.queued.discard(name)
        record = self.records[name]
        status = record.status
        text = f"task {name} {status}"
        if record.reason:
            text += f": {record.reason}"
        if record.error and status is not TaskStatus.SUCCEEDED and record.error != record.reason:
            text += f": {record.error}"
        self._log(_LEVEL.get(status, ERROR), text, name, len(record.attempts) or None)
        self.readiness.ended(name)

    # ------------------------------------------------------------------ starting
    def _begin(self, name: str) -> None:
        """A task's condition holds: check `if:`, work out its copies, queue them for slots."""
        task = self.plan.nodes[name].task
        record = self.records[name]
        stage = self.plan.stage_names[self.plan.nodes[name].stage]
        try:
            ctx: dict[str, Any] | None = None
            if task.if_ is not None or (task.for_each is not None and templates.contains_template(task.for_each)):
                ctx, _, _ = attempts.context(self.info, task, stage, self.variables, len(record.attempts) + 1)
            if task.if_ is not None and not templates.evaluate(task.if_, ctx or {}):
                self._finish(name, TaskInput.SKIP, reason=f"if: {task.if_} is false")
                return
            items = attempts.fan_items(task, ctx)
        except FlowstageError as exc:
            now = self.clock.time()
            entry = {
                "number": len(record.attempts) + 1,
                "status": "failed",
                "started_at": now,
                "ended_at": now,
                "error": str(exc),
            }
            self.rec.emit(Event(self.info.id, now, ATTEMPT_STARTED, name, None, {"attempt": entry}))
            self._finish(name, TaskInput.FAIL, error=str(exc), changes={"started_at": record.started_at or now})
            return
        fan = task.instances is not None or task.for_each is not None
        done = _copies_done(task, record, items) if fan else {}
        todo = deque(i for i in range(len(items)) if i not in done)
        self.launch[name] = _Launch(items=items, fan=fan, todo=todo, started=self.clock.monotonic())
        if not items:
            self._log(INFO, f"task {name}: for_each gave no items", name)
            self._succeed(name, {"started_at": self.clock.time()})
            return
        if done:
            launch = self.launch[name]
            for copy in sorted(done):  # what each copy returned and saved, as its attempt kept it
                launch.values[copy] = done[copy].get("value")
                launch.variables.update(done[copy].get("saved") or {})
                if "value" in done[copy]:
                    launch.kept += len(json.dumps({k: done[copy].get(k) for k in _RESULT_KEYS}, default=str))
            shown = ", ".join(str(i) for i in sorted(done))
            self._log(INFO, f"task {name}: copies {shown} succeeded before and are not run again", name)
            if not todo:
                self._succeed(name, {"started_at": record.started_at or self.clock.time()})
                return
        self.waiting_copies.append(name)

    def _launch_copy(self, name: str, copy: int) -> None:
        """Start one attempt of one copy of `name` (a plain task has one copy)."""
        node = self.plan.nodes[name]
        task = node.task
        record = self.records[name]
        launch = self.launch[name]
        number = len(record.attempts) + 1
        item = launch.items[copy] if launch.fan else None
        now = self.clock.time()
        entry: dict[str, Any] = {"number": number, "status": "running", "started_at": now, "ended_at": None, "error": None}
        if launch.fan:
            entry.update({"instance": copy, "item": jsonable(item)})
        try:
            if self.needs_render[name] or launch.fan:
                fan = (copy, len(launch.items), item) if launch.fan else None
                ctx, scope, own = attempts.context(self.info, task, record.stage, self.variables, number, fan)
                kwargs, spec = attempts.render(task, ctx)
            else:
                scope, kwargs, spec, own = self.variables, dict(task.with_), task.spec, {}
        except FlowstageError as exc:
            # a template that cannot render fails the same way on every try: no retry
            entry.update({"status": "failed", "ended_at": now, "error": str(exc)})
            self.rec.emit(Event(self.info.id, now, ATTEMPT_STARTED, name, None, {"attempt": entry}))
            self._task_failed(name, TaskStatus.FAILED, str(exc) if not launch.fan else f"copy {copy}: {exc}")
            return
        changes: dict[str, Any] = {"variables": jsonable(scope) if scope else {}, "reason": None}
        if record.status is TaskStatus.PENDING:
            changes.update({"started_at": now, "ended_at": None, "error": None})
        elif record.status is TaskStatus.RETRYING:
            changes["error"] = None
        self.rec.emit(Event(self.info.id, now, ATTEMPT_STARTED, name, None, {"attempt": entry}))
        step = self.rec.move(name, TaskInput.START, changes, attempt=number, instance=copy if launch.fan else None)
        assert Effect.SUBMIT in step.effects
        launch.tries[copy] = launch.tries.get(copy, 0) + 1
        where = f", copy {copy}" if launch.fan else ""
        self._log(INFO, f"task {name} started (attempt {number}{where})", name, number)
        timeout = task.timeout if task.timeout is not None else self.prefs.timeout
        mono = self.clock.monotonic()
        self.running[(name, number)] = _Running(number, None, mono + timeout if timeout else None, mono, copy)
        self.to_submit.append(
            AttemptSpec(
                run_id=self.info.id,
                workflow=self.info.workflow,
                task=name,
                attempt=number,
                spec=spec,
                kwargs=kwargs,
                variables=scope,
                root=self.info.root,
                log_level=self.rec.level_of[name],
                interpreter=self.python,
                task_variables=own,
                previous=[_without_result(a) for a in record.attempts[:-1]],
                instance=copy if launch.fan else None,
                item=jsonable(item) if launch.fan else None,
                timeout=timeout or None,
                deadline=now + timeout if timeout else None,
                save=task.save,
            )
        )

    def _stopped(self) -> bool:
        return self.cancelled or self.timed_out

    def _start_ready(self) -> None:
        limit = self.prefs.max_parallel
        while len(self.running) < limit and not self._stopped():
            if self.waiting_copies:
                name = self.waiting_copies[0]
                launch = self.launch.get(name)
                if launch is None or not launch.todo or self._status(name) in TASK_FINAL:
                    self.waiting_copies.popleft()
                    continue
                copy = launch.todo.popleft()
                if not launch.todo:
                    self.waiting_copies.popleft()
                self._launch_copy(name, copy)
                self._evaluate_all()
                continue
            if not self.ready:
                break
            name = self.ready.popleft()
            self.queued.discard(name)
            if self._status(name) is TaskStatus.PENDING and name not in self.launch:
                self._begin(name)
            self._evaluate_all()

    def _submit_all(self) -> None:
        jobs, self.to_submit = self.to_submit, []
        for job in jobs:
            running = self.running.get((job.task, job.attempt))
            if running is None:
                continue
            target = self.subruns if job.kind == "workflow" and self.subruns is not None else self.executor
            running.handle = target.submit(job, _InboxReports(self.inbox, job.task, job.attempt))

    # ------------------------------------------------------------------ outcomes
    def _on_outcome(self, name: str, number: int, outcome: Outcome) -> None:
        running = self.running.pop((name, number), None)
        if running is None:
            return  # a late answer from an attempt already timed out or cancelled
        launch = self.launch[name]
        record = self.records[name]
        metrics = {"runtime_seconds": round(self.clock.monotonic() - running.started, 6), **outcome.metrics}
        kept = (
            _kept_result(self.plan.nodes[name].task, launch, outcome)
            if launch.fan and outcome.status is TaskStatus.SUCCEEDED
            else {}
        )
        self.rec.attempt(
            name,
            number,
            {
                "status": outcome.attempt_status or str(outcome.status),
                "ended_at": self.clock.time(),
                "error": outcome.error,
                "metrics": metrics,
                **kept,
            },
        )
        task_metrics = None if launch.fan else {**record.metrics, **metrics, "attempts": len(record.attempts)}
        launch.bound = {}  # what an earlier attempt bound says nothing of this one
        if outcome.resolved is not None:
            with contextlib.suppress(FlowstageError):  # a value no JSON holds: the scope recorded at the start stands
                launch.bound = {"variables": jsonable(outcome.resolved)}
        if outcome.status is TaskStatus.SUCCEEDED:
            launch.values[running.copy] = outcome.value
            launch.variables.update(outcome.variables)
            launch.metrics.append(outcome.metrics)
            if len(launch.values) == len(launch.items):
                self._succeed(name, {"metrics": task_metrics} if task_metrics is not None else {})
            return
        lost = outcome.attempt_status == WORKER_LOST and launch.lost.get(running.copy, 0) < WORKER_LOST_RETRIES
        if lost:
            # not the task's fault: another try that does not count against its `retries:`
            launch.lost[running.copy] = launch.lost.get(running.copy, 0) + 1
            launch.tries[running.copy] -= 1
        self._copy_failed(name, running.copy, outcome.status, outcome.error or str(outcome.status), task_metrics, lost=lost)

    def _succeed(self, name: str, changes: dict[str, Any]) -> None:
        launch = self.launch[name]
        record = self.records[name]
        data = {**launch.bound, **changes}
        if launch.fan:
            value: Any = [launch.values[i] for i in range(len(launch.items))]
            data["metrics"] = {
                **attempts.aggregate(launch.metrics),
                "copies": len(launch.items),
                "attempts": len(record.attempts),
                "runtime_seconds": round(self.clock.monotonic() - launch.started, 6),
            }
        else:
            value = launch.values.get(0)
        try:
            saved = {**attempts.saved_values(self.plan.nodes[name].task, value, fan=launch.fan), **jsonable(launch.variables)}
        except FlowstageError as exc:
            self._task_failed(name, TaskStatus.FAILED, str(exc), data.get("metrics"))
            return
        if saved:
            data["saved"] = saved
            self.variables.update(saved)
            self.rec.batch.run_variables = jsonable(self.variables)
            self.rec.emit(
                Event(self.info.id, self.clock.time(), RUN_VARIABLES, None, None, {"variables": self.rec.batch.run_variables})
            )
        self._finish(name, TaskInput.SUCCEED, changes=data)

    def _copy_failed(
        self, name: str, copy: int, status: TaskStatus, error: str, metrics: dict[str, Any] | None, *, lost: bool = False
    ) -> None:
        """One copy's attempt failed or timed out: retry that copy, or fail the task.

        `lost`: the attempt's worker went away and the copy has lost-worker tries left: retried at
        once, whatever its `retries:`.
        """
        task = self.plan.nodes[name].task
        launch = self.launch[name]
        retries = task.retries if task.retries is not None else self.prefs.retries
        record = self.records[name]
        label = f"copy {copy} ({jsonable(launch.items[copy])!r}): " if launch.fan else ""
        if (lost or launch.tries.get(copy, 0) <= retries) and not self._stopped():
            delay = 0.0 if lost else self._retry_delay(task, launch.tries.get(copy, 1))
            if launch.fan:
                step = self.rec.move(name, TaskInput.RETRY_COPY)
            else:
                changes = {"error": error, **launch.bound, **({"metrics": metrics} if metrics is not None else {})}
                step = self.rec.move(name, TaskInput.RETRY, changes, error=error, retry_in=delay)
            assert Effect.SCHEDULE_RETRY in step.effects
            heapq.heappush(self.retry_heap, _Due(self.clock.monotonic() + delay, name, copy))
            self._log(WARNING, f"task {name} {label}{status} ({error}); retrying in {delay:g}s", name, len(record.attempts))
            return
        self._task_failed(name, status, label + error, metrics)

    def _retry_delay(self, task: Task, retry: int) -> float:
        """The wait before retry number `retry` of `task`: its own keys over the preferences."""
        prefs = self.prefs
        backoff = task.retry_backoff if task.retry_backoff is not None else prefs.retry_backoff
        return retries.retry_delay(
            retry=retry,
            delay=task.retry_delay if task.retry_delay is not None else prefs.retry_delay,
            backoff=backoff,
            cap=task.retry_delay_max if task.retry_delay_max is not None else prefs.retry_delay_max,
            draw=self.rng.random() if backoff is not None else 1.0,
        )

    def _task_failed(self, name: str, status: TaskStatus, error: str, metrics: dict[str, Any] | None = None) -> None:
        """The task failed for good: its other copies are stopped (the transition's kill)."""
        record = self.records[name]
        launch = self.launch.get(name)
        data = {
            **(launch.bound if launch is not None else {}),
            "metrics": {**(metrics if metrics is not None else record.metrics), "attempts": len(record.attempts)},
        }
        move = TaskInput.TIME_OUT if status is TaskStatus.TIMED_OUT and record.status is TaskStatus.RUNNING else TaskInput.FAIL
        self._finish(name, move, error=error, changes=data, why="another copy failed")

    def _on_process(self, name: str, number: int, pid: int) -> None:
        if (name, number) in self.running:
            self.rec.attempt(name, number, {"pid": pid, "host": self.info.host or os.uname().nodename})

    def _on_subrun(self, name: str, number: int, run_id: str) -> None:
        if number <= len(self.records[name].attempts):
            self.rec.attempt(name, number, {"sub_run_id": run_id})

    def _on_note(self, name: str, number: int, reason: str | None) -> None:
        if (name, number) in self.running and self.records[name].reason != reason:
            self.rec.emit(Event(self.info.id, self.clock.time(), TASK_NOTE, name, None, {"reason": reason}))

    def _on_log(self, name: str, number: int, level: int, message: str) -> None:
        self._log(level, message, name, number)

    # ------------------------------------------------------------------ timers
    def _check_timers(self) -> None:
        mono = self.clock.monotonic()
        for key, running in list(self.running.items()):
            if running.deadline is not None and mono >= running.deadline and key in self.running:
                name, number = key
                if running.handle is not None:
                    running.handle.kill()
                del self.running[key]
                error = f"timed out after {running.deadline - running.started:g}s"
                elapsed = round(mono - running.started, 6)
                self.rec.attempt(
                    name,
                    number,
                    {
                        "status": "timed_out",
                        "ended_at": self.clock.time(),
                        "error": error,
                        "metrics": {"runtime_seconds": elapsed},
                    },
                )
                record = self.records[name]
                metrics = (
                    None
                    if self.launch[name].fan
                    else {**record.metrics, "runtime_seconds": elapsed, "attempts": len(record.attempts)}
                )
                self._copy_failed(name, running.copy, TaskStatus.TIMED_OUT, error, metrics)
        while self.retry_heap and self.retry_heap[0].at <= mono:
            due = heapq.heappop(self.retry_heap)
            launch = self.launch.get(due.name)
            if launch is not None and self._status(due.name) not in TASK_FINAL:
                launch.todo.append(due.copy)
                self.waiting_copies.append(due.name)

    def _next_wakeup(self, run_deadline: float | None, next_beat: float) -> float:
        times = [next_beat]
        times.extend(r.deadline for r in self.running.values() if r.deadline is not None)
        if self.retry_heap:
            times.append(self.retry_heap[0].at)
        if run_deadline is not None:
            times.append(run_deadline)
        return max(0.0, min(times) - self.clock.monotonic())

    def _stop_all(self, *, timed_out: bool) -> None:
        """Kill what runs and cancel what waits: for cancel and the run timeout."""
        if timed_out:
            self.timed_out = True
            why = "run timed out"
        else:
            self.cancelled = True
            why = "run cancelled"
        self._log(WARNING, why)
        status = "timed_out" if timed_out else "cancelled"
        hit: list[str] = []
        for (name, number), running in list(self.running.items()):
            if running.handle is not None:
                running.handle.kill()
            elapsed = round(self.clock.monotonic() - running.started, 6)
            self.rec.attempt(
                name,
                number,
                {"status": status, "ended_at": self.clock.time(), "error": why, "metrics": {"runtime_seconds": elapsed}},
            )
            if name not in hit:
                hit.append(name)
        self.running.clear()
        move = TaskInput.STOP_TIMED_OUT if timed_out else TaskInput.CANCEL
        for name in hit:
            if self._status(name) not in TASK_FINAL:
                self._finish(name, move, reason=why, error=why if timed_out else None, why=why)
        self.ready.clear()
        self.queued.clear()
        self.retry_heap.clear()
        self.waiting_copies.clear()
        for name, record in self.records.items():
            if record.status not in TASK_FINAL:
                self._finish(name, TaskInput.CANCEL, reason=why, why=why)
        self.readiness.clear()

    # ------------------------------------------------------------------ the loop
    def run(self) -> RunStatus:
        """Drive the run to a final status, recording as it goes.

        What exists when the run starts (the workflow, the plan, the task records) lives until it
        ends: it is out of the garbage collector's sight for the run (see `engine.collector`).
        """
        try:
            with collector.frozen():
                return self._loop()
        except BaseException:
            # the loop died (the store went away, a second signal): stop what still runs, so the
            # run shows as interrupted and can be resumed instead of holding on to children
            for running in self.running.values():
                if running.handle is not None:
                    running.handle.kill()
            raise
        finally:
            self.executor.shutdown()
            if self.subruns is not None:
                self.subruns.shutdown()

    def _handle(self, message: tuple[str, Any]) -> None:
        kind, payload = message
        if kind == "done":
            self._on_outcome(*payload)
        elif kind == "process":
            self._on_process(*payload)
        elif kind == "subrun":
            self._on_subrun(*payload)
        elif kind == "note":
            self._on_note(*payload)
        else:
            self._on_log(*payload)

    def _loop(self) -> RunStatus:
        run_timeout = self.prefs.run_timeout
        started = self.clock.monotonic()
        run_deadline = started + run_timeout if run_timeout else None
        next_beat = started + HEARTBEAT_SECONDS
        resumed = any(tr.attempts for tr in self.records.values())
        self._log(
            NOTICE, f"run {'resumed' if resumed else 'started'}: workflow {self.info.workflow}, {len(self.plan.nodes)} tasks"
        )
        self.readiness.open_stages()
        self._evaluate_all()
        while True:
            try:
                self._start_ready()
                self.rec.flush()  # recorded before it is acted on
                self._submit_all()
                if not self.running and not self.ready and not self.retry_heap and not self.waiting_copies:
                    break
                try:
                    message: tuple[str, Any] | None = self.inbox.get(timeout=self._next_wakeup(run_deadline, next_beat))
                except queue.Empty:
                    message = None
                while message is not None:
                    self._handle(message)
                    try:
                        message = self.inbox.get_nowait()
                    except queue.Empty:
                        message = None
                self._check_timers()
                self._evaluate_all()
                mono = self.clock.monotonic()
                if run_deadline is not None and mono >= run_deadline:
                    self._stop_all(timed_out=True)
                if mono >= next_beat:
                    next_beat = mono + HEARTBEAT_SECONDS
                    self.rec.flush()
                    if self.store.heartbeat(self.info.id, self.clock.time()):
                        self._stop_all(timed_out=False)
            except (KeyboardInterrupt, RunInterrupted):
                self._stop_all(timed_out=False)
        # drain log lines still queued from finished attempts
        while True:
            try:
                kind, payload = self.inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "log":
                self._on_log(*payload)
        # anything not final here was never reachable (should not happen): make it explicit
        for name, record in self.records.items():
            if record.status not in TASK_FINAL:
                self._finish(name, TaskInput.CANCEL, reason="never became ready")
        statuses = {n: r.status for n, r in self.records.items()}
        final = run_status(statuses, self.plan.catchers, cancelled=self.cancelled, timed_out=self.timed_out)
        if final is RunStatus.SUCCEEDED and self.on_success is not None:
            self.rec.flush()
            problem = self.on_success(lambda level, message: self._log(level, message))
            if problem:
                self._log(ERROR, problem)
                final = RunStatus.FAILED
        final = run_transition(RunStatus.RUNNING, FINISH[final])
        now = self.clock.time()
        self.rec.batch.run_status = str(final)
        self.rec.batch.run_ended_at = now
        self.rec.emit(Event(self.info.id, now, RUN_FINISHED, None, str(final)))
        self._log(NOTICE if final is RunStatus.SUCCEEDED else ERROR, f"run {final}")
        self.rec.flush()
        self.hooks.run(final, self.records)
        self.rec.flush()  # what a failing hook logged
        return final

    def __repr__(self) -> str:
        return f"Runner({self.info.id!r}, {self.info.workflow!r}, {len(self.records)} tasks)"


def _saves(task: Any) -> bool:
    return task.save is not None or bool(getattr(task.spec, "save_rows", None))


_RESULT_KEYS = ("value", "saved")  # what a copy's attempt keeps of its result (`_kept_result`)


def _kept_result(task: Any, launch: _Launch, outcome: Outcome) -> dict[str, Any]:
    """What a succeeded copy's attempt keeps so that a resume need not run it again: the value it
    returned (for `save:`) and the variables it saved itself (`save_rows:`). Kept while all of them
    fit in what the saved list may hold (`SAVED_VALUE_LIMIT`); a copy past it runs again on resume."""
    if not _saves(task):
        return {}
    kept: dict[str, Any] = {"value": jsonable(outcome.value) if task.save is not None else None}
    if outcome.variables:
        kept["saved"] = jsonable(outcome.variables)
    try:
        size = len(json.dumps(kept, default=str))
    except ValueError:  # a number past 4,300 digits: the task fails when it saves the list
        return {}
    if launch.kept + size > attempts.SAVED_VALUE_LIMIT:
        return {}
    launch.kept += size
    return kept


def _without_result(entry: dict[str, Any]) -> dict[str, Any]:
    """An earlier attempt as the next one is told of it: without the result a copy kept for a resume."""
    return {k: v for k, v in entry.items() if k not in _RESULT_KEYS}


def _copies_done(task: Any, record: TaskRun, items: list[Any]) -> dict[int, dict[str, Any]]:
    """The copies of a resumed fan-out task whose attempt succeeded (for the same item), with that
    attempt: never run again. For a task that saves, only those whose attempt kept the result."""
    saves = _saves(task)
    done: dict[int, dict[str, Any]] = {}
    for entry in record.attempts:
        copy = entry.get("instance")
        if not isinstance(copy, int) or not 0 <= copy < len(items) or entry.get("status") != "succeeded":
            continue
        if saves and ("value" not in entry or masked_paths([entry.get("value"), entry.get("saved")])):
            continue  # not kept, or kept with a password the store masked: only running it again gives it
        if entry.get("item") == jsonable(items[copy]):
            done[copy] = entry
    return done


def _copy(record: TaskRun) -> TaskRun:
    import copy

    return copy.deepcopy(record)


def utc(ts: float | None) -> str | None:
    """ISO 8601 with a UTC offset."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()


__all__ = ["HEARTBEAT_SECONDS", "RunInfo", "RunInput", "Runner", "utc"]
