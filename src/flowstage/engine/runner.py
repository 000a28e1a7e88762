"""The run state machine: one owner of a run's state, driving a plan to its end.

The loop: decide what may start (pure `decisions`), record the changes in one batch, then act
(submit attempts to the executor); wait for outcomes, timeouts, retries and cancel requests;
record; repeat. Nothing is acted on before it is recorded, so a killed runner loses nothing it
had recorded, and a resume knows exactly where it stood.
"""

from __future__ import annotations

import heapq
import json
import logging
import queue
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from flowstage.engine.decisions import Action, Decision, Requirement, decide, decide_stage_default, run_status
from flowstage.engine.plan import Plan
from flowstage.engine.ports import (
    AttemptSpec,
    Batch,
    Clock,
    Event,
    ExecutorPort,
    Handle,
    LogLine,
    Outcome,
    RunStorePort,
    SystemClock,
    TaskRun,
)
from flowstage.errors import FlowstageError, RunError, RunInterrupted, VariableError
from flowstage.logging import ERROR, INFO, LEVELS, NOTICE, WARNING
from flowstage.model import templates
from flowstage.model.conditions import SATISFIED_BY, When
from flowstage.model.kinds import KindSpec
from flowstage.model.statuses import TASK_FINAL, RunStatus, TaskStatus

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0


@dataclass
class RunInfo:
    """What templates know of the run (`run.*`)."""

    id: str
    workflow: str
    version: int | None
    logical_time: datetime
    root: str
    host: str = ""

    def context(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workflow": self.workflow,
            "version": self.version,
            "date": self.logical_time.date().isoformat(),
            "logical_time": self.logical_time.isoformat(),
        }


@dataclass
class _Running:
    attempt: int
    handle: Handle | None
    deadline: float | None
    started: float
    copy: int = 0


@dataclass
class _Launch:
    """A started task: its copies (one for a plain task; N for `instances` / `for_each`)."""

    items: list[Any]
    fan: bool
    todo: deque[int]
    first: int  # attempts recorded before this start
    tries: dict[int, int] = field(default_factory=dict)
    running: set[int] = field(default_factory=set)
    values: dict[int, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)


@dataclass(order=True)
class _Due:
    at: float
    name: str = field(compare=False)
    copy: int = field(compare=False, default=0)


_SUMMED = ("rows_read", "rows_written", "bytes_read", "bytes_written")


def _aggregate(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of a task's copies: counts summed, memory the peak."""
    out: dict[str, Any] = {}
    for m in metrics:
        for key in _SUMMED:
            if isinstance(m.get(key), int | float):
                out[key] = out.get(key, 0) + m[key]
        if isinstance(m.get("memory_mb"), int | float):
            out["memory_mb"] = max(out.get("memory_mb", 0), m["memory_mb"])
    return out


def _field(spec: KindSpec, name: str) -> Any:
    value = getattr(spec, name)
    return value.model_dump(by_alias=True) if isinstance(value, BaseModel) else value


def _revalidate(spec: KindSpec, data: dict[str, Any]) -> KindSpec:
    """The spec with rendered values, validated again (a rendered URL must still be a URL)."""
    try:
        return type(spec).model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise VariableError(f"after rendering templates, {where}: {first['msg']}") from None


def _interrupted(attempt: dict[str, Any]) -> dict[str, Any]:
    """A prior attempt as a resume keeps it: one its runner died during ends as `interrupted`."""
    if attempt.get("status") not in ("running", "pending", "retrying"):
        return attempt
    return {**attempt, "status": "interrupted", "error": attempt.get("error") or "the runner stopped during this attempt"}


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON data (unknown objects become their text)."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


class _InboxReports:
    """An attempt's reports, queued for the runner's loop."""

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
        observer: Callable[[Event, TaskRun | None], None] | None = None,
        on_success: Callable[[Callable[[int, str], None]], str | None] | None = None,
    ) -> None:
        self.plan = plan
        self.info = info
        self.store = store
        self.executor = executor
        self.clock = clock or SystemClock()
        self.observer = observer
        #: runs after every task ended well (auto flush); an answer is an error that fails the run
        self.on_success = on_success
        self.prefs = plan.workflow.preferences
        self.variables: dict[str, Any] = dict(variables)
        self.runs: dict[str, TaskRun] = {}
        self.status: dict[str, TaskStatus] = {}
        stage_names = plan.stage_names
        for name, node in plan.nodes.items():
            before = prior.get(name) if prior else None
            if before is not None and before.status is TaskStatus.SUCCEEDED:
                self.runs[name] = before
            else:
                tr = TaskRun(name=name, stage=stage_names[node.stage])
                if before is not None:
                    tr.attempts = [_interrupted(a) for a in before.attempts]
                    tr.saved = {}
                self.runs[name] = tr
            self.status[name] = self.runs[name].status
        # explicit predecessors not final yet: a task is re-decided only when its answer may change
        self.unresolved: dict[str, int] = {
            name: sum(1 for p, _ in node.requires if self.status[p] not in TASK_FINAL)
            for name, node in plan.nodes.items()
            if node.requires
        }
        self.remaining = [sum(1 for n in names if self.status[n] not in TASK_FINAL) for names in plan.stages]
        self.stage_open = [False] * len(plan.stages)
        self.stage_default: dict[int, Decision] = {}
        self.ready: deque[str] = deque()
        self.queued: set[str] = set()
        self.running: dict[tuple[str, int], _Running] = {}  # (task, attempt) -> the attempt in flight
        self.launch: dict[str, _Launch] = {}
        self.launch_started: dict[str, float] = {}
        self.waiting_copies: deque[str] = deque()  # started tasks with copies waiting for a slot
        self.retry_heap: list[_Due] = []
        self.inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.batch = Batch(run_id=info.id)
        self.to_submit: list[tuple[str, AttemptSpec]] = []
        self.to_evaluate: deque[str] = deque()
        self.cancelled = False
        self.timed_out = False
        self.run_level = LEVELS[self.prefs.log_level]
        self.level_of = {
            name: LEVELS[node.task.log_level] if node.task.log_level else self.run_level for name, node in plan.nodes.items()
        }
        self.needs_render = {
            name: (
                node.task.if_ is not None
                or templates.contains_template(node.task.with_)
                or templates.contains_template(node.task.variables)
                or any(templates.contains_template(_field(node.task.spec, f)) for f in node.task.spec.template_fields)
                or bool(node.task.variables)
            )
            for name, node in plan.nodes.items()
        }
        self._final_status: RunStatus | None = None

    # ------------------------------------------------------------------ recording
    def _log(self, level: int, message: str, task: str | None = None, attempt: int | None = None) -> None:
        threshold = self.level_of[task] if task else self.run_level
        if level >= threshold:
            self.batch.logs.append(LogLine(self.info.id, task, attempt, self.clock.time(), level, message))

    def _change(self, name: str, **data: Any) -> None:
        tr = self.runs[name]
        self.batch.tasks.append(tr)
        self.batch.events.append(
            Event(
                self.info.id,
                self.clock.time(),
                "task_status",
                name,
                str(tr.status),
                {k: v for k, v in data.items() if v is not None},
            )
        )

    def _flush(self) -> None:
        if not self.batch:
            return
        batch = self.batch
        # one projection row per task per batch: the latest
        seen: dict[str, TaskRun] = {}
        for tr in batch.tasks:
            seen[tr.name] = tr
        batch.tasks = list(seen.values())
        self.store.record(batch)  # if this raises, the batch stays to be written by the next flush
        self.batch = Batch(run_id=self.info.id)
        if self.observer is not None:
            for ev in batch.events:
                self.observer(ev, self.runs.get(ev.task) if ev.task else None)

    # ------------------------------------------------------------------ decisions
    def _decision(self, name: str) -> Decision:
        node = self.plan.nodes[name]
        if node.requires is None:
            if node.stage == 0:
                return Decision(Action.RUN)
            if node.stage not in self.stage_default:
                prev = node.stage - 1
                self.stage_default[node.stage] = decide_stage_default(
                    self.plan.stage_names[prev], ((n, self.status[n]) for n in self.plan.stages[prev])
                )
            return self.stage_default[node.stage]
        return decide([Requirement(p, c, self.status[p]) for p, c in node.requires], node.when)

    def _open_stages(self) -> None:
        for k in range(len(self.plan.stages)):
            if not self.stage_open[k]:
                self.stage_open[k] = True
                self.to_evaluate.extend(self.plan.stages[k])
            if self.remaining[k] > 0:
                break

    def _evaluate_all(self) -> None:
        while self.to_evaluate:
            name = self.to_evaluate.popleft()
            if self.status[name] is not TaskStatus.PENDING or name in self.queued:
                continue
            if not self.stage_open[self.plan.nodes[name].stage]:
                continue
            d = self._decision(name)
            if d.action is Action.RUN:
                self.queued.add(name)
                self.ready.append(name)
            elif d.action is Action.SKIP:
                self._final(name, TaskStatus.SKIPPED, reason=d.reason)

    def _final(self, name: str, status: TaskStatus, *, reason: str | None = None, error: str | None = None) -> None:
        """Record that `name` reached a final status and re-decide what depends on it."""
        tr = self.runs[name]
        tr.status = status
        tr.reason = reason
        if error is not None:
            tr.error = error
        if tr.ended_at is None or status is not TaskStatus.SKIPPED:
            tr.ended_at = self.clock.time()
        self.status[name] = status
        self.queued.discard(name)
        stage = self.plan.nodes[name].stage
        self.remaining[stage] -= 1
        self._change(name, reason=reason, error=error)
        level = {
            TaskStatus.SUCCEEDED: INFO,
            TaskStatus.SKIPPED: NOTICE,
            TaskStatus.CANCELLED: WARNING,
        }.get(status, ERROR)
        text = f"task {name} {status}"
        if reason:
            text += f": {reason}"
        if error:
            text += f": {error}"
        self._log(level, text, name, len(tr.attempts) or None)
        for succ, cond in self.plan.successors.get(name, ()):
            left = self.unresolved[succ] = self.unresolved[succ] - 1
            satisfied = status in SATISFIED_BY[cond]
            if left == 0 or satisfied is (self.plan.nodes[succ].when is When.ANY):
                self.to_evaluate.append(succ)
        if self.remaining[stage] == 0:
            self._open_stages()

    # ------------------------------------------------------------------ starting
    def _template_context(
        self, name: str, attempt: int, copy: int | None, item: Any
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(template context, resolved variables, the task's own rendered variables)."""
        node = self.plan.nodes[name]
        launch = self.launch.get(name)
        task_ctx: dict[str, Any] = {"name": name, "attempt": attempt, "stage": self.plan.stage_names[node.stage]}
        if launch is not None and launch.fan:
            task_ctx.update({"instance": copy, "instances": len(launch.items), "item": item})
        scope = dict(self.variables)
        ctx = {"var": scope, "run": self.info.context(), "task": task_ctx}
        own: dict[str, Any] = {}
        if node.task.variables:
            own = templates.render(node.task.variables, ctx)
            scope.update(own)
        return ctx, scope, own

    def _begin(self, name: str) -> None:
        """A task's condition holds: check `if:`, work out its copies, queue them for slots."""
        task = self.plan.nodes[name].task
        tr = self.runs[name]
        now = self.clock.time()
        fan = task.instances is not None or task.for_each is not None
        try:
            ctx: dict[str, Any] | None = None
            if task.if_ is not None or (task.for_each is not None and templates.contains_template(task.for_each)):
                ctx, _, _ = self._template_context(name, len(tr.attempts) + 1, None, None)
            if task.if_ is not None and not templates.evaluate(task.if_, ctx or {}):
                self._final(name, TaskStatus.SKIPPED, reason=f"if: {task.if_} is false")
                return
            items: list[Any]
            if task.for_each is not None:
                rendered = templates.render(task.for_each, ctx or {})
                if not isinstance(rendered, list | tuple):
                    raise RunError(f"for_each: expected a list, got {type(rendered).__name__} {rendered!r}"[:300])
                items = list(rendered)
            elif task.instances is not None:
                items = list(range(task.instances))
            else:
                items = [None]
        except FlowstageError as exc:
            tr.attempts.append(
                {"number": len(tr.attempts) + 1, "status": "failed", "started_at": now, "ended_at": now, "error": str(exc)}
            )
            tr.started_at = tr.started_at or now
            self._final(name, TaskStatus.FAILED, error=str(exc))
            return
        self.launch[name] = _Launch(items=items, fan=fan, todo=deque(range(len(items))), first=len(tr.attempts))
        tr.status = TaskStatus.RUNNING
        tr.started_at = now
        tr.ended_at = None
        tr.error = None
        tr.reason = None
        self.status[name] = TaskStatus.RUNNING
        self.launch_started[name] = self.clock.monotonic()
        if not items:
            self._log(INFO, f"task {name}: for_each gave no items", name)
            self._succeed(name)
            return
        self.waiting_copies.append(name)

    def _launch_copy(self, name: str, copy: int) -> None:
        """Start one attempt of one copy of `name` (a plain task has one copy)."""
        node = self.plan.nodes[name]
        task = node.task
        tr = self.runs[name]
        launch = self.launch[name]
        attempt = len(tr.attempts) + 1
        item = launch.items[copy] if launch.fan else None
        now = self.clock.time()
        entry: dict[str, Any] = {"number": attempt, "status": "running", "started_at": now, "ended_at": None, "error": None}
        if launch.fan:
            entry.update({"instance": copy, "item": _jsonable(item)})
        try:
            if self.needs_render[name] or launch.fan:
                ctx, scope, own = self._template_context(name, attempt, copy, item)
                kwargs = templates.render(task.with_, ctx)
                spec = task.spec
                if spec.template_fields:
                    data = spec.model_dump(by_alias=True)
                    for fname in spec.template_fields:
                        data[fname] = templates.render(data[fname], ctx, shell=(fname == spec.kind == "shell"))
                    spec = _revalidate(spec, data)
            else:
                ctx = {"var": self.variables, "run": self.info.context(), "task": {"name": name, "attempt": attempt}}
                scope, kwargs, spec, own = self.variables, dict(task.with_), task.spec, {}
        except FlowstageError as exc:
            # a template that cannot render fails the same way on every try: no retry
            entry.update({"status": "failed", "ended_at": now, "error": str(exc)})
            tr.attempts.append(entry)
            self._task_failed(name, TaskStatus.FAILED, str(exc) if not launch.fan else f"copy {copy}: {exc}")
            return
        tr.variables = _jsonable(scope) if scope else {}
        tr.attempts.append(entry)
        launch.tries[copy] = launch.tries.get(copy, 0) + 1
        launch.running.add(copy)
        if tr.status is not TaskStatus.RUNNING:
            tr.status = TaskStatus.RUNNING
            self.status[name] = TaskStatus.RUNNING
        self._change(name, attempt=attempt, instance=copy if launch.fan else None)
        where = f", copy {copy}" if launch.fan else ""
        self._log(INFO, f"task {name} started (attempt {attempt}{where})", name, attempt)
        timeout = task.timeout if task.timeout is not None else self.prefs.timeout
        mono = self.clock.monotonic()
        self.running[(name, attempt)] = _Running(attempt, None, mono + timeout if timeout else None, mono, copy)
        job = AttemptSpec(
            run_id=self.info.id,
            workflow=self.info.workflow,
            task=name,
            spec=spec,
            kwargs=kwargs,
            variables=scope,
            attempt=attempt,
            root=self.info.root,
            log_level=self.level_of[name],
            interpreter=self.prefs.python,
            task_variables=own,
            previous=[dict(a) for a in tr.attempts[:-1]],
            instance=copy if launch.fan else None,
            item=_jsonable(item) if launch.fan else None,
            timeout=timeout or None,
            deadline=now + timeout if timeout else None,
            save=task.save,
        )
        self.to_submit.append((name, job))

    def _stopped(self) -> bool:
        return self.cancelled or self.timed_out

    def _start_ready(self) -> None:
        limit = self.prefs.max_parallel
        while len(self.running) < limit and not self._stopped():
            if self.waiting_copies:
                name = self.waiting_copies[0]
                launch = self.launch.get(name)
                if launch is None or not launch.todo or self.status[name] in TASK_FINAL:
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
            if self.status[name] is TaskStatus.PENDING:
                self._begin(name)
            self._evaluate_all()

    def _submit_all(self) -> None:
        jobs, self.to_submit = self.to_submit, []
        for name, job in jobs:
            running = self.running.get((name, job.attempt))
            if running is None:
                continue
            running.handle = self.executor.submit(job, _InboxReports(self.inbox, name, job.attempt))

    # ------------------------------------------------------------------ outcomes
    def _attempt_end(self, name: str, attempt: int, status: TaskStatus, error: str | None, metrics: dict[str, Any]) -> None:
        entry = self.runs[name].attempts[attempt - 1]
        entry.update({"status": str(status), "ended_at": self.clock.time(), "error": error})
        if metrics:
            entry["metrics"] = metrics

    def _on_outcome(self, name: str, attempt: int, outcome: Outcome) -> None:
        running = self.running.pop((name, attempt), None)
        if running is None:
            return  # a late answer from an attempt already timed out or cancelled
        launch = self.launch[name]
        launch.running.discard(running.copy)
        tr = self.runs[name]
        metrics = {"runtime_seconds": round(self.clock.monotonic() - running.started, 6), **outcome.metrics}
        self._attempt_end(name, attempt, outcome.status, outcome.error, metrics)
        if not launch.fan:
            tr.metrics = {**tr.metrics, **metrics, "attempts": len(tr.attempts)}
        if outcome.status is TaskStatus.SUCCEEDED:
            launch.values[running.copy] = outcome.value
            launch.variables.update(outcome.variables)
            launch.metrics.append(outcome.metrics)
            if len(launch.values) == len(launch.items):
                self._succeed(name)
            return
        error = outcome.error or str(outcome.status)
        self._copy_failed(name, running.copy, outcome.status, error)

    def _succeed(self, name: str) -> None:
        launch = self.launch[name]
        tr = self.runs[name]
        if launch.fan:
            value: Any = [launch.values[i] for i in range(len(launch.items))]
            tr.metrics = {**_aggregate(launch.metrics), "copies": len(launch.items), "attempts": len(tr.attempts)}
            tr.metrics["runtime_seconds"] = round(self.clock.monotonic() - self.launch_started[name], 6)
        else:
            value = launch.values.get(0)
        try:
            saved = {**self._saved(name, value), **_jsonable(launch.variables)}
        except FlowstageError as exc:
            self._task_failed(name, TaskStatus.FAILED, str(exc))
            return
        if saved:
            tr.saved = saved
            self.variables.update(saved)
            self.batch.run_variables = _jsonable(self.variables)
        self._final(name, TaskStatus.SUCCEEDED)

    def _saved(self, name: str, value: Any) -> dict[str, Any]:
        save = self.plan.nodes[name].task.save
        if save is None:
            return {}
        value = _jsonable(value)
        if isinstance(save, str):
            return {save: value}
        if self.launch[name].fan:
            raise RunError("save: of a fanned-out task keeps the list of results: use `save: name`")
        if not isinstance(value, dict):
            raise RunError(f"save: needs a mapping result to pick {sorted(save.values())}, got {type(value).__name__}")
        missing = [k for k in save.values() if k not in value]
        if missing:
            raise RunError(f"save: the result has no key {missing[0]!r} (keys: {', '.join(map(str, value))})")
        return {var: value[key] for var, key in save.items()}

    def _copy_failed(self, name: str, copy: int, status: TaskStatus, error: str) -> None:
        """One copy's attempt failed: retry that copy, or fail the task."""
        task = self.plan.nodes[name].task
        launch = self.launch[name]
        retries = task.retries if task.retries is not None else self.prefs.retries
        tr = self.runs[name]
        label = f"copy {copy} ({_jsonable(launch.items[copy])!r}): " if launch.fan else ""
        if launch.tries.get(copy, 0) <= retries and not self._stopped():
            delay = task.retry_delay if task.retry_delay is not None else self.prefs.retry_delay
            heapq.heappush(self.retry_heap, _Due(self.clock.monotonic() + delay, name, copy))
            if not launch.fan:
                tr.status = TaskStatus.RETRYING
                tr.error = error
                self.status[name] = TaskStatus.RETRYING
                self._change(name, error=error, retry_in=delay)
            self._log(WARNING, f"task {name} {label}{status} ({error}); retrying in {delay:g}s", name, len(tr.attempts))
            return
        self._task_failed(name, status, label + error)

    def _task_failed(self, name: str, status: TaskStatus, error: str) -> None:
        """The task failed for good: stop its other copies."""
        for key, running in list(self.running.items()):
            if key[0] == name:
                if running.handle is not None:
                    running.handle.kill()
                del self.running[key]
                self._attempt_end(name, key[1], TaskStatus.CANCELLED, "another copy failed", {})
        launch = self.launch.get(name)
        if launch is not None:
            launch.todo.clear()
            launch.running.clear()
        self.runs[name].metrics["attempts"] = len(self.runs[name].attempts)
        self._final(name, status, error=error)

    def _on_process(self, name: str, attempt: int, pid: int) -> None:
        if (name, attempt) in self.running:
            self.runs[name].attempts[attempt - 1]["pid"] = pid
            self.runs[name].attempts[attempt - 1]["host"] = self.info.host
            self.batch.tasks.append(self.runs[name])

    def _on_subrun(self, name: str, attempt: int, run_id: str) -> None:
        self.runs[name].attempts[attempt - 1]["sub_run_id"] = run_id
        self.batch.tasks.append(self.runs[name])

    def _on_log(self, name: str, attempt: int, level: int, message: str) -> None:
        self._log(level, message, name, attempt)

    # ------------------------------------------------------------------ timers
    def _check_timers(self) -> None:
        mono = self.clock.monotonic()
        for key, running in list(self.running.items()):
            if running.deadline is not None and mono >= running.deadline and key in self.running:
                name, attempt = key
                if running.handle is not None:
                    running.handle.kill()
                del self.running[key]
                self.launch[name].running.discard(running.copy)
                error = f"timed out after {running.deadline - running.started:g}s"
                elapsed = round(mono - running.started, 6)
                self._attempt_end(name, attempt, TaskStatus.TIMED_OUT, error, {"runtime_seconds": elapsed})
                if not self.launch[name].fan:
                    tr = self.runs[name]
                    tr.metrics = {**tr.metrics, "runtime_seconds": elapsed, "attempts": len(tr.attempts)}
                self._copy_failed(name, running.copy, TaskStatus.TIMED_OUT, error)
        while self.retry_heap and self.retry_heap[0].at <= mono:
            due = heapq.heappop(self.retry_heap)
            launch = self.launch.get(due.name)
            if launch is not None and self.status[due.name] not in TASK_FINAL:
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
        status = TaskStatus.TIMED_OUT if timed_out else TaskStatus.CANCELLED
        hit: list[str] = []
        for (name, attempt), running in list(self.running.items()):
            if running.handle is not None:
                running.handle.kill()
            elapsed = round(self.clock.monotonic() - running.started, 6)
            self._attempt_end(name, attempt, status, why, {"runtime_seconds": elapsed})
            if name not in hit:
                hit.append(name)
        self.running.clear()
        for name in hit:
            if self.status[name] not in TASK_FINAL:
                self._final(name, status, reason=why, error=why if timed_out else None)
        self.ready.clear()
        self.queued.clear()
        self.retry_heap.clear()
        self.waiting_copies.clear()
        for name, current in list(self.status.items()):
            if current not in TASK_FINAL:
                self._final(name, TaskStatus.CANCELLED, reason=why)
        self.to_evaluate.clear()

    # ------------------------------------------------------------------ the loop
    def run(self) -> RunStatus:
        """Drive the run to a final status, recording as it goes."""
        try:
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

    def _loop(self) -> RunStatus:
        run_timeout = self.prefs.run_timeout
        started = self.clock.monotonic()
        run_deadline = started + run_timeout if run_timeout else None
        next_beat = started + HEARTBEAT_SECONDS
        resumed = any(tr.attempts for tr in self.runs.values())
        self._log(
            NOTICE, f"run {'resumed' if resumed else 'started'}: workflow {self.info.workflow}, {len(self.plan.nodes)} tasks"
        )
        self._open_stages()
        self._evaluate_all()
        while True:
            try:
                self._start_ready()
                self._flush()  # recorded before it is acted on
                self._submit_all()
                if not self.running and not self.ready and not self.retry_heap and not self.waiting_copies:
                    break
                try:
                    message = self.inbox.get(timeout=self._next_wakeup(run_deadline, next_beat))
                except queue.Empty:
                    message = None
                while message is not None:
                    kind, payload = message
                    if kind == "done":
                        self._on_outcome(*payload)
                    elif kind == "process":
                        self._on_process(*payload)
                    elif kind == "subrun":
                        self._on_subrun(*payload)
                    elif kind == "note":
                        pass
                    else:
                        self._on_log(*payload)
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
                    self._flush()
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
        for name, status in list(self.status.items()):
            if status not in TASK_FINAL:
                self._final(name, TaskStatus.CANCELLED, reason="never became ready")
        final = run_status(self.status, self.plan.catchers, cancelled=self.cancelled, timed_out=self.timed_out)
        if final is RunStatus.SUCCEEDED and self.on_success is not None:
            self._flush()
            problem = self.on_success(lambda level, message: self._log(level, message))
            if problem:
                self._log(ERROR, problem)
                final = RunStatus.FAILED
        now = self.clock.time()
        self.batch.run_status = str(final)
        self.batch.run_ended_at = now
        self.batch.events.append(Event(self.info.id, now, "run_finished", None, str(final)))
        self._log(NOTICE if final is RunStatus.SUCCEEDED else ERROR, f"run {final}")
        self._flush()
        self._final_status = final
        return final


def utc(ts: float | None) -> str | None:
    """ISO 8601 with a UTC offset."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()
