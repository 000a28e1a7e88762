"""The run state machine, driven with the in-memory store and a scripted executor (SPEC §2.1, §2.2, §2.5, §4).

The executor here is a fake on purpose: it answers each attempt from a script (by task name), at
once, from a timer thread, or only when released, so every ordering the runner must handle can be
set up without child processes.
"""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowstage.engine.decisions import run_status
from flowstage.engine.plan import compile_plan
from flowstage.engine.ports import AttemptSpec, Event, Outcome, Reports, TaskRun
from flowstage.engine.runner import RunInfo, Runner
from flowstage.logging import INFO, WARNING
from flowstage.model import Condition, RunStatus, TaskStatus, Workflow
from flowstage.model.kinds.shell import ShellSpec
from flowstage.model.loader import load_text
from flowstage.model.statuses import TASK_FINAL
from flowstage.stores.base import NewRun, StoredRun
from flowstage.stores.memory import MemoryRunStore

S = TaskStatus
SAFETY_SECONDS = 5.0  # a held attempt is answered after this anyway, so a wrong runner fails instead of hanging


# --------------------------------------------------------------------------- the fake executor


class FakeHandle:
    def __init__(self, executor: FakeExecutor, name: str, finish: Callable[[], None]) -> None:
        self.executor = executor
        self.name = name
        self.finish = finish

    def kill(self) -> None:
        with self.executor.lock:
            self.executor.killed.append(self.name)
        # a killed attempt may still answer late; the runner must ignore it
        self.finish()


class FakeExecutor:
    """Answers attempts from a script.

    outcomes: task name -> status (or Outcome), or a list of them, one per attempt (the last repeats);
        a task not named succeeds.
    values: task name -> the value a succeeded attempt returns (what `save:` stores), or a function of the job.
    hold: task name -> seconds after which its attempt is answered (answered at once when another
        task named in `release_when` starts).
    release_when: task name -> held tasks released when it is submitted.
    delay: answer every other attempt from a timer thread after this many seconds (None: at once).
    on_submit: called with each job once it is submitted.
    """

    def __init__(
        self,
        outcomes: Mapping[str, str | Outcome | list[str | Outcome]] | None = None,
        *,
        values: Mapping[str, Any] | None = None,
        hold: Mapping[str, float] | None = None,
        release_when: Mapping[str, Iterable[str]] | None = None,
        delay: float | None = None,
        on_submit: Callable[[AttemptSpec], None] | None = None,
    ) -> None:
        self.outcomes = dict(outcomes or {})
        self.values = dict(values or {})
        self.hold = dict(hold or {})
        self.release_when = {k: list(v) for k, v in (release_when or {}).items()}
        self.delay = delay
        self.on_submit = on_submit
        self.lock = threading.Lock()
        self.jobs: list[AttemptSpec] = []
        self.order: list[tuple[str, str]] = []  # ("start" | "end", task), as the executor saw it
        self.killed: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.shut_down = False
        self._held: dict[str, Callable[[], None]] = {}
        self._timers: list[threading.Timer] = []

    def _outcome(self, job: AttemptSpec) -> Outcome:
        name, attempt = job.task, job.attempt
        script = self.outcomes.get(name, "succeeded")
        if isinstance(script, list):
            script = script[min(attempt, len(script)) - 1]
        if isinstance(script, Outcome):
            return script
        status = TaskStatus(script)
        value = self.values.get(name) if status is S.SUCCEEDED else None
        if callable(value):
            value = value(job)
        error = None if status is S.SUCCEEDED else f"{name} {status} on attempt {attempt}"
        return Outcome(status, value=value, error=error)

    def _timer(self, seconds: float, fn: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, fn)
        timer.daemon = True
        with self.lock:
            self._timers.append(timer)
        timer.start()

    def submit(self, job: AttemptSpec, reports: Reports) -> FakeHandle:
        name = job.task
        done, log = reports.done, reports.log
        with self.lock:
            self.jobs.append(job)
            self.order.append(("start", name))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        outcome = self._outcome(job)
        finished = threading.Event()

        def finish() -> None:
            with self.lock:
                if finished.is_set():
                    return
                finished.set()
                self.order.append(("end", name))
                self.in_flight -= 1
            done(outcome)

        log(INFO, f"{name} says hello")
        if name in self.hold:
            with self.lock:
                self._held[name] = finish
            self._timer(self.hold[name], finish)
        elif self.delay is not None:
            self._timer(self.delay, finish)
        else:
            finish()
        for held in self.release_when.get(name, ()):
            self.release(held)
        if self.on_submit is not None:
            self.on_submit(job)
        return FakeHandle(self, name, finish)

    def release(self, name: str) -> None:
        with self.lock:
            finish = self._held.pop(name, None)
        if finish is not None:
            finish()

    def shutdown(self) -> None:
        self.shut_down = True
        with self.lock:
            timers, self._timers = self._timers, []
        for t in timers:
            t.cancel()

    def started(self) -> list[str]:
        return [name for kind, name in self.order if kind == "start"]

    def index(self, kind: str, name: str) -> int:
        return self.order.index((kind, name))


# --------------------------------------------------------------------------- running a workflow


@dataclass
class Result:
    status: RunStatus
    run: StoredRun
    store: MemoryRunStore
    executor: FakeExecutor
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def status_of(self, name: str) -> TaskStatus:
        return self.tasks[name].status

    def statuses(self) -> dict[str, TaskStatus]:
        return {n: t.status for n, t in self.tasks.items()}

    def task_events(self, name: str) -> list[str]:
        return [str(e.status) for e in self.events if e.kind == "task_status" and e.task == name]


def wf(text: str) -> Workflow:
    return load_text(textwrap.dedent(text), "test.yaml")


def execute(
    workflow: Workflow | str,
    executor: FakeExecutor | None = None,
    *,
    variables: Mapping[str, Any] | None = None,
    prior: Mapping[str, TaskRun] | None = None,
    store: MemoryRunStore | None = None,
    run_id: str = "run-1",
) -> Result:
    if isinstance(workflow, str):
        workflow = wf(workflow)
    executor = executor or FakeExecutor()
    store = store or MemoryRunStore()
    plan = compile_plan(workflow)
    scope = {**workflow.variables, **dict(variables or {})}
    now = 1_700_000_000.0
    if store.get_run(run_id) is None:
        store.create_run(
            NewRun(
                id=run_id,
                workflow=workflow.name,
                version=None,
                definition=workflow.to_dict(),
                variables=scope,
                overrides=dict(variables or {}),
                root="/nonexistent",
                logical_time=now,
                started_at=now,
                runner_pid=0,
                runner_host="test",
                runner_started=now,
                tasks=[
                    (prior or {}).get(n.name) or TaskRun(name=n.name, stage=plan.stage_names[n.stage])
                    for n in plan.nodes.values()
                ],
            )
        )
    info = RunInfo(run_id, workflow.name, None, datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "/nonexistent")
    runner = Runner(plan=plan, info=info, store=store, executor=executor, variables=scope, prior=prior)
    status = runner.run()
    run = store.get_run(run_id)
    assert run is not None
    return Result(
        status=status,
        run=run,
        store=store,
        executor=executor,
        tasks={t.name: t for t in run.tasks},
        events=[e for _, e in store.events(run_id)],
    )


# --------------------------------------------------------------------------- stages


def test_stage_two_task_never_starts_before_every_stage_one_task_is_final() -> None:
    ex = FakeExecutor(hold={"slow": 0.05})
    result = execute(
        """
        name: w
        stages:
          - name: one
            tasks:
              - {name: fast, shell: "true"}
              - {name: slow, shell: "true"}
          - name: two
            tasks:
              - {name: after_fast, shell: "true", after: {fast: success}}
              - {name: default, shell: "true"}
        """,
        ex,
    )
    assert result.status is RunStatus.SUCCEEDED
    for later in ("after_fast", "default"):
        assert ex.index("start", later) > ex.index("end", "slow")
        assert ex.index("start", later) > ex.index("end", "fast")


def test_stage_default_skips_later_stages_and_records_why() -> None:
    result = execute(
        """
        name: w
        stages:
          - name: one
            tasks:
              - {name: a, shell: "true"}
              - {name: b, shell: "false"}
          - name: two
            tasks: [{name: c, shell: "true"}]
          - name: three
            tasks: [{name: d, shell: "true"}]
        """,
        FakeExecutor({"b": "failed"}),
    )
    assert result.status is RunStatus.FAILED
    assert result.statuses() == {"a": S.SUCCEEDED, "b": S.FAILED, "c": S.SKIPPED, "d": S.SKIPPED}
    assert result.tasks["c"].reason == "needs every task of stage 'one' to succeed; b failed"
    assert result.tasks["d"].reason == "needs every task of stage 'two' to succeed; c was skipped"
    assert result.executor.started() == ["a", "b"]


def test_after_replaces_the_stage_default_but_keeps_the_barrier() -> None:
    result = execute(
        """
        name: w
        stages:
          - name: load
            tasks: [{name: load, shell: "false"}]
          - name: report
            tasks: [{name: report, shell: "true"}]
          - name: recover
            tasks: [{name: alert, shell: "true", after: {load: failure}}]
        """,
        FakeExecutor({"load": "failed"}),
    )
    assert result.statuses() == {"load": S.FAILED, "report": S.SKIPPED, "alert": S.SUCCEEDED}
    assert result.status is RunStatus.SUCCEEDED  # the failure was caught by `alert`
    assert result.executor.started() == ["load", "alert"]


# --------------------------------------------------------------------------- conditions

# parent outcome, condition of the child, child status, child reason, run status
AFTER_TABLE: list[tuple[str, Condition, TaskStatus, str | None, RunStatus]] = [
    ("succeeded", Condition.SUCCESS, S.SUCCEEDED, None, RunStatus.SUCCEEDED),
    ("failed", Condition.SUCCESS, S.SKIPPED, "needs parent=success; parent failed", RunStatus.FAILED),
    ("timed_out", Condition.SUCCESS, S.SKIPPED, "needs parent=success; parent timed out", RunStatus.FAILED),
    ("succeeded", Condition.FAILURE, S.SKIPPED, "needs parent=failure; parent succeeded", RunStatus.SUCCEEDED),
    ("failed", Condition.FAILURE, S.SUCCEEDED, None, RunStatus.SUCCEEDED),
    ("timed_out", Condition.FAILURE, S.SUCCEEDED, None, RunStatus.SUCCEEDED),
    ("succeeded", Condition.COMPLETION, S.SUCCEEDED, None, RunStatus.SUCCEEDED),
    ("failed", Condition.COMPLETION, S.SUCCEEDED, None, RunStatus.FAILED),  # a finally catches nothing
    ("timed_out", Condition.COMPLETION, S.SUCCEEDED, None, RunStatus.FAILED),
    ("succeeded", Condition.SKIPPED, S.SKIPPED, "needs parent=skipped; parent succeeded", RunStatus.SUCCEEDED),
    ("failed", Condition.SKIPPED, S.SKIPPED, "needs parent=skipped; parent failed", RunStatus.FAILED),
]


@pytest.mark.parametrize(("parent", "condition", "child", "reason", "run"), AFTER_TABLE)
def test_after_condition_runs_or_skips_the_child(
    parent: str, condition: Condition, child: TaskStatus, reason: str | None, run: RunStatus
) -> None:
    result = execute(
        f"""
        name: w
        tasks:
          - {{name: parent, shell: "true"}}
          - {{name: child, shell: "true", after: {{parent: {condition}}}}}
        """,
        FakeExecutor({"parent": parent}),
    )
    assert result.status_of("parent") is S(parent)
    assert result.status_of("child") is child
    assert result.tasks["child"].reason == reason
    assert result.status is run


def test_skipped_condition_runs_after_a_skipped_predecessor() -> None:
    result = execute(
        """
        name: w
        tasks:
          - {name: root, shell: "false"}
          - {name: middle, shell: "true", after: root}
          - {name: fallback, shell: "true", after: {middle: skipped}}
        """,
        FakeExecutor({"root": "failed"}),
    )
    assert result.statuses() == {"root": S.FAILED, "middle": S.SKIPPED, "fallback": S.SUCCEEDED}
    assert result.status is RunStatus.FAILED  # a skipped-edge catches nothing


@pytest.mark.parametrize("condition", [Condition.SUCCESS, Condition.FAILURE, Condition.COMPLETION])
def test_skipping_propagates_along_success_failure_and_completion_edges(condition: Condition) -> None:
    result = execute(
        f"""
        name: w
        tasks:
          - {{name: root, shell: "false"}}
          - {{name: x, shell: "true", after: root}}
          - {{name: y, shell: "true", after: {{x: {condition}}}}}
          - {{name: z, shell: "true", after: {{y: {condition}}}}}
        """,
        FakeExecutor({"root": "failed"}),
    )
    assert result.statuses() == {"root": S.FAILED, "x": S.SKIPPED, "y": S.SKIPPED, "z": S.SKIPPED}
    assert result.tasks["x"].reason == "needs root=success; root failed"
    assert result.tasks["y"].reason == f"needs x={condition}; x was skipped"
    assert result.tasks["z"].reason == f"needs y={condition}; y was skipped"
    assert result.executor.started() == ["root"]


def test_any_condition_starts_task_before_all_predecessors_end() -> None:
    # `slow` is answered only once `either` was submitted: a runner that waits for it never gets there
    ex = FakeExecutor(hold={"slow": SAFETY_SECONDS}, release_when={"either": ["slow"]})
    result = execute(
        """
        name: w
        tasks:
          - {name: slow, shell: "true"}
          - {name: fast, shell: "true"}
          - {name: either, shell: "true", after: [slow, fast], when: any}
        """,
        ex,
    )
    assert result.status is RunStatus.SUCCEEDED
    assert ex.index("start", "either") < ex.index("end", "slow")
    events = [(e.task, e.status) for e in result.events if e.kind == "task_status"]
    assert events.index(("either", "running")) < events.index(("slow", "succeeded"))


def test_all_condition_is_skipped_as_soon_as_one_predecessor_fails() -> None:
    ex = FakeExecutor({"bad": "failed"}, hold={"slow": SAFETY_SECONDS}, release_when={"after_slow": ["slow"]})
    result = execute(
        """
        name: w
        tasks:
          - {name: slow, shell: "true"}
          - {name: bad, shell: "false"}
          - {name: both, shell: "true", after: [slow, bad]}
          - {name: after_slow, shell: "true", after: {both: skipped}}
        """,
        ex,
    )
    # `both` was skipped while `slow` still ran, which let `after_slow` start and release `slow`
    assert result.status_of("both") is S.SKIPPED
    assert result.tasks["both"].reason == "needs bad=success; bad failed"
    assert ex.index("start", "after_slow") < ex.index("end", "slow")


def test_any_condition_is_skipped_when_no_predecessor_can_satisfy_it() -> None:
    result = execute(
        """
        name: w
        tasks:
          - {name: a, shell: "false"}
          - {name: b, shell: "false"}
          - {name: c, shell: "true", after: [a, b], when: any}
        """,
        FakeExecutor({"a": "failed", "b": "timed_out"}),
    )
    assert result.status_of("c") is S.SKIPPED
    assert result.tasks["c"].reason == "needs any of a=success, b=success; a failed, b timed out"


def test_a_failure_caught_by_a_handler_that_fails_fails_the_run() -> None:
    result = execute(
        """
        name: w
        tasks:
          - {name: load, shell: "false"}
          - {name: handler, shell: "false", after: {load: failure}}
        """,
        FakeExecutor({"load": "failed", "handler": "failed"}),
    )
    assert result.statuses() == {"load": S.FAILED, "handler": S.FAILED}
    assert result.status is RunStatus.FAILED


# --------------------------------------------------------------------------- if:


@pytest.mark.parametrize(
    ("expression", "variables", "status", "reason"),
    [
        ("var.go", {"go": False}, S.SKIPPED, "if: var.go is false"),
        ("var.go", {"go": True}, S.SUCCEEDED, None),
        ("var.rows > 0", {"rows": 0}, S.SKIPPED, "if: var.rows > 0 is false"),
        ("var.rows > 0", {"rows": 3}, S.SUCCEEDED, None),
        ("var.id is not none", {"id": None}, S.SKIPPED, "if: var.id is not none is false"),
    ],
)
def test_if_expression_false_skips_the_task_with_its_reason(
    expression: str, variables: dict[str, Any], status: TaskStatus, reason: str | None
) -> None:
    result = execute(
        f"""
        name: w
        tasks:
          - {{name: guarded, shell: "true", if: "{expression}"}}
          - {{name: next, shell: "true", after: guarded}}
        """,
        variables=variables,
    )
    assert result.status_of("guarded") is status
    assert result.tasks["guarded"].reason == reason
    assert result.status_of("next") is status
    assert result.status is RunStatus.SUCCEEDED
    assert ("guarded" in result.executor.started()) is (status is S.SUCCEEDED)


def test_if_on_an_undefined_variable_fails_the_task_and_names_the_variable() -> None:
    result = execute(
        """
        name: w
        tasks:
          - {name: guarded, shell: "true", if: "var.missing > 0"}
        """
    )
    assert result.status_of("guarded") is S.FAILED
    assert "missing" in (result.tasks["guarded"].error or "")
    assert result.executor.started() == []
    assert result.status is RunStatus.FAILED


# --------------------------------------------------------------------------- retries and timeouts


def test_retry_records_every_attempt_and_passes_through_retrying() -> None:
    ex = FakeExecutor({"flaky": ["failed", "timed_out", "succeeded"]})
    result = execute(
        """
        name: w
        tasks:
          - {name: flaky, shell: "true", retries: 2, retry_delay: 0s}
          - {name: next, shell: "true", after: flaky}
        """,
        ex,
    )
    flaky = result.tasks["flaky"]
    assert flaky.status is S.SUCCEEDED
    assert [a["status"] for a in flaky.attempts] == ["failed", "timed_out", "succeeded"]
    assert [a["number"] for a in flaky.attempts] == [1, 2, 3]
    assert flaky.attempts[0]["error"] == "flaky failed on attempt 1"
    assert flaky.metrics["attempts"] == 3
    assert result.task_events("flaky") == ["running", "retrying", "running", "retrying", "running", "succeeded"]
    assert [j.attempt for j in ex.jobs if j.task == "flaky"] == [1, 2, 3]
    assert result.status_of("next") is S.SUCCEEDED
    assert result.status is RunStatus.SUCCEEDED


def test_retries_exhausted_end_in_the_last_attempts_status() -> None:
    result = execute(
        """
        name: w
        preferences: {retries: 1, retry_delay: 0s}
        tasks:
          - {name: broken, shell: "false"}
        """,
        FakeExecutor({"broken": ["failed", "timed_out"]}),
    )
    broken = result.tasks["broken"]
    assert broken.status is S.TIMED_OUT
    assert [a["status"] for a in broken.attempts] == ["failed", "timed_out"]
    assert broken.error == "broken timed_out on attempt 2"
    assert result.status is RunStatus.FAILED


def test_task_retries_override_the_workflow_default() -> None:
    result = execute(
        """
        name: w
        preferences: {retries: 5, retry_delay: 0s}
        tasks:
          - {name: once, shell: "false", retries: 0}
        """,
        FakeExecutor({"once": "failed"}),
    )
    assert len(result.tasks["once"].attempts) == 1
    assert result.task_events("once") == ["running", "failed"]


def test_attempt_past_its_timeout_is_killed_and_its_late_answer_ignored() -> None:
    ex = FakeExecutor(hold={"slow": SAFETY_SECONDS})
    result = execute(
        """
        name: w
        tasks:
          - {name: slow, shell: "sleep 10", timeout: 50ms}
          - {name: cleanup, shell: "true", after: {slow: completion}}
        """,
        ex,
    )
    slow = result.tasks["slow"]
    assert slow.status is S.TIMED_OUT
    assert slow.error == "timed out after 0.05s"
    assert ex.killed == ["slow"]
    assert [a["status"] for a in slow.attempts] == ["timed_out"]
    assert result.status_of("cleanup") is S.SUCCEEDED
    assert result.status is RunStatus.FAILED


def test_run_timeout_stops_running_tasks_and_cancels_waiting_ones() -> None:
    ex = FakeExecutor(hold={"slow": SAFETY_SECONDS})
    result = execute(
        """
        name: w
        preferences: {run_timeout: 100ms}
        tasks:
          - {name: slow, shell: "sleep 10"}
          - {name: next, shell: "true", after: slow}
        """,
        ex,
    )
    assert result.status is RunStatus.TIMED_OUT
    assert result.run.status == "timed_out"
    assert result.status_of("slow") is S.TIMED_OUT
    assert result.status_of("next") is S.CANCELLED
    assert result.tasks["next"].reason == "run timed out"
    assert ex.killed == ["slow"]


def test_cancel_request_kills_running_tasks_and_cancels_pending_ones() -> None:
    store = MemoryRunStore()
    ex = FakeExecutor(hold={"slow": SAFETY_SECONDS}, on_submit=lambda job: store.request_cancel(job.run_id, 0.0))
    result = execute(
        """
        name: w
        tasks:
          - {name: slow, shell: "sleep 10"}
          - {name: next, shell: "true", after: slow}
        """,
        ex,
        store=store,
    )
    assert result.status is RunStatus.CANCELLED
    assert result.statuses() == {"slow": S.CANCELLED, "next": S.CANCELLED}
    assert result.tasks["next"].reason == "run cancelled"
    assert ex.killed == ["slow"]


# --------------------------------------------------------------------------- parallelism


def test_max_parallel_is_never_exceeded() -> None:
    ex = FakeExecutor(delay=0.02)
    tasks = "\n".join(f'  - {{name: t{i}, shell: "true"}}' for i in range(12))
    result = execute(f"name: w\npreferences: {{max_parallel: 3}}\ntasks:\n{tasks}\n", ex)
    assert result.status is RunStatus.SUCCEEDED
    assert ex.peak == 3
    running: set[str] = set()
    peak = 0
    for e in result.events:
        if e.kind != "task_status" or e.task is None:
            continue
        if e.status == "running":
            running.add(e.task)
        else:
            running.discard(e.task)
        peak = max(peak, len(running))
    assert peak == 3


def test_tasks_of_a_stage_run_in_parallel() -> None:
    # each of a, b, c releases the one before it only once it started itself: all three must run at once
    ex = FakeExecutor(
        hold={"a": SAFETY_SECONDS, "b": SAFETY_SECONDS, "c": SAFETY_SECONDS},
        release_when={"c": ["a", "b", "c"]},
    )
    result = execute(
        """
        name: w
        stages:
          - name: one
            tasks:
              - {name: a, shell: "true"}
              - {name: b, shell: "true"}
              - {name: c, shell: "true"}
        """,
        ex,
    )
    assert result.status is RunStatus.SUCCEEDED
    assert ex.peak == 3


# --------------------------------------------------------------------------- variables and save:


def test_saved_result_is_visible_to_later_tasks_as_a_native_value() -> None:
    ex = FakeExecutor(values={"count_rows": 42, "pick": {"region": "EU", "n": 7, "other": 1}})
    result = execute(
        """
        name: w
        variables: {label: rows}
        stages:
          - name: detect
            tasks:
              - {name: count_rows, python: "m:f", save: rows}
              - {name: pick, python: "m:f", save: {area: region, size: n}}
          - name: use
            tasks:
              - name: use_python
                python: "m:f"
                with: {n: "{{ var.rows }}", text: "{{ var.label }}={{ var.rows }}", area: "{{ var.area }}"}
              - name: use_if
                python: "m:f"
                if: var.rows > 40 and var.size == 7
        """,
        ex,
    )
    assert result.status is RunStatus.SUCCEEDED
    job = next(j for j in ex.jobs if j.task == "use_python")
    assert job.kwargs == {"n": 42, "text": "rows=42", "area": "EU"}
    assert result.tasks["count_rows"].saved == {"rows": 42}
    assert result.tasks["pick"].saved == {"area": "EU", "size": 7}
    assert result.run.variables == {"label": "rows", "rows": 42, "area": "EU", "size": 7}
    assert result.status_of("use_if") is S.SUCCEEDED


def test_saved_variable_overrides_the_run_scope_for_later_tasks_only() -> None:
    ex = FakeExecutor(values={"first": "new"}, hold={"first": SAFETY_SECONDS}, release_when={"early": ["first"]})
    execute(
        """
        name: w
        variables: {v: old}
        tasks:
          - {name: first, python: "m:f", save: v}
          - {name: early, python: "m:f", with: {v: "{{ var.v }}"}}
          - {name: late, python: "m:f", with: {v: "{{ var.v }}"}, after: first}
        """,
        ex,
    )
    kwargs = {j.task: j.kwargs for j in ex.jobs}
    assert kwargs["early"] == {"v": "old"}
    assert kwargs["late"] == {"v": "new"}


def test_shell_command_quotes_rendered_values_and_env_keeps_them_verbatim() -> None:
    ex = FakeExecutor()
    execute(
        """
        name: w
        tasks:
          - {name: echo, shell: "echo {{ var.text }} {{ run.date }}", env: {T: "{{ var.text }}"}}
        """,
        ex,
        variables={"text": "x; rm -rf / $(id)"},
    )
    spec = ex.jobs[0].spec
    assert isinstance(spec, ShellSpec)
    assert spec.shell == "echo 'x; rm -rf / $(id)' 2026-03-01"
    assert spec.env == {"T": "x; rm -rf / $(id)"}  # no shell parses env values


def test_task_variables_are_rendered_over_the_run_scope_and_recorded() -> None:
    ex = FakeExecutor()
    result = execute(
        """
        name: w
        variables: {region: EU, n: 1}
        tasks:
          - name: t
            python: "m:f"
            variables: {region: "{{ var.region }}-west", task_name: "{{ task.name }}"}
            with: {r: "{{ var.region }}", a: "{{ task.attempt }}"}
        """,
        ex,
    )
    assert ex.jobs[0].kwargs == {"r": "EU-west", "a": 1}
    assert result.tasks["t"].variables == {"region": "EU-west", "n": 1, "task_name": "t"}


@pytest.mark.parametrize(
    ("save", "value", "error"),
    [
        ("{a: col}", 5, "save: needs a mapping result to pick ['col'], got int"),
        ("{a: col}", {"other": 1}, "save: the result has no key 'col' (keys: other)"),
    ],
)
def test_save_that_cannot_pick_its_keys_fails_the_task(save: str, value: Any, error: str) -> None:
    result = execute(
        f"""
        name: w
        tasks:
          - {{name: t, python: "m:f", save: {save}}}
        """,
        FakeExecutor(values={"t": value}),
    )
    assert result.status_of("t") is S.FAILED
    assert result.tasks["t"].error == error


def test_undefined_variable_in_with_fails_the_task_naming_it() -> None:
    result = execute(
        """
        name: w
        tasks:
          - {name: t, python: "m:f", with: {x: "{{ var.nope }}"}}
        """
    )
    assert result.status_of("t") is S.FAILED
    assert "nope" in (result.tasks["t"].error or "")
    assert result.executor.started() == []


def test_executor_log_lines_are_recorded_with_task_and_attempt() -> None:
    result = execute("name: w\ntasks:\n  - {name: t, shell: 'true'}\n")
    lines = [s.line for s in result.store.logs("run-1", task="t")]
    hello = [ln for ln in lines if ln.message == "t says hello"]
    assert len(hello) == 1
    assert hello[0].attempt == 1
    assert hello[0].level == INFO


def test_task_log_level_filters_what_is_kept() -> None:
    result = execute("name: w\ntasks:\n  - {name: t, shell: 'true', log_level: warning}\n")
    assert all(s.line.level >= WARNING for s in result.store.logs("run-1", task="t"))


# --------------------------------------------------------------------------- fan-out


def test_for_each_runs_one_copy_per_item_and_saves_the_results_in_order() -> None:
    ex = FakeExecutor(values={"per_region": lambda job: f"done {job.item}"})
    result = execute(
        """
        name: w
        variables: {regions: [EU, US, APAC]}
        tasks:
          - name: per_region
            python: "m:f"
            for_each: "{{ var.regions }}"
            with: {region: "{{ task.item }}", index: "{{ task.instance }}", of: "{{ task.instances }}"}
            save: results
          - {name: after, python: "m:f", after: per_region, with: {r: "{{ var.results }}"}}
        """,
        ex,
    )
    assert result.status is RunStatus.SUCCEEDED
    copies = [j.kwargs for j in ex.jobs if j.task == "per_region"]
    assert copies == [
        {"region": "EU", "index": 0, "of": 3},
        {"region": "US", "index": 1, "of": 3},
        {"region": "APAC", "index": 2, "of": 3},
    ]
    assert result.tasks["per_region"].saved == {"results": ["done EU", "done US", "done APAC"]}
    assert [a["item"] for a in result.tasks["per_region"].attempts] == ["EU", "US", "APAC"]
    assert next(j for j in ex.jobs if j.task == "after").kwargs == {"r": ["done EU", "done US", "done APAC"]}


def test_instances_share_the_parallel_slots() -> None:
    ex = FakeExecutor(delay=0.02)
    result = execute(
        """
        name: w
        preferences: {max_parallel: 2}
        tasks:
          - {name: copies, shell: "echo {{ task.instance }}", instances: 5}
        """,
        ex,
    )
    assert result.status_of("copies") is S.SUCCEEDED
    assert sorted(getattr(j.spec, "shell", None) for j in ex.jobs) == [f"echo {i}" for i in range(5)]
    assert ex.peak == 2


def test_one_failed_copy_fails_the_task() -> None:
    result = execute(
        """
        name: w
        tasks:
          - {name: copies, shell: "true", instances: 3}
          - {name: next, shell: "true", after: copies}
        """,
        FakeExecutor({"copies": ["succeeded", "failed", "succeeded"]}),
    )
    assert result.status_of("copies") is S.FAILED
    assert "copy 1" in (result.tasks["copies"].error or "")
    assert result.status_of("next") is S.SKIPPED
    assert result.status is RunStatus.FAILED


@pytest.mark.parametrize(
    ("for_each", "status", "jobs"),
    [
        ("[]", S.SUCCEEDED, 0),
        ('"{{ var.none }}"', S.FAILED, 0),
        ('"{{ var.missing }}"', S.FAILED, 0),
    ],
)
def test_for_each_without_a_list_of_items(for_each: str, status: TaskStatus, jobs: int) -> None:
    ex = FakeExecutor()
    result = execute(
        f"""
        name: w
        variables: {{none: null}}
        tasks:
          - {{name: t, shell: "true", for_each: {for_each}}}
        """,
        ex,
    )
    assert result.status_of("t") is status
    assert len(ex.jobs) == jobs


# --------------------------------------------------------------------------- resume


def test_resume_never_runs_a_succeeded_task_again_and_keeps_its_saved_variables() -> None:
    text = """
        name: w
        tasks:
          - {name: extract, python: "m:f", save: rows}
          - {name: load, python: "m:f", after: extract, with: {n: "{{ var.rows }}"}}
          - {name: report, python: "m:f", after: load}
          - {name: on_error, python: "m:f", after: {load: failure}}
        """
    store = MemoryRunStore()
    first = execute(text, FakeExecutor({"load": "failed", "on_error": "failed"}, values={"extract": 10}), store=store)
    assert first.status is RunStatus.FAILED
    assert first.statuses() == {"extract": S.SUCCEEDED, "load": S.FAILED, "report": S.SKIPPED, "on_error": S.FAILED}

    ex = FakeExecutor()
    second = execute(
        text,
        ex,
        store=store,
        variables=first.run.variables,
        prior=first.tasks,
    )
    assert "extract" not in ex.started()
    assert sorted(ex.started()) == ["load", "report"]
    assert second.status is RunStatus.SUCCEEDED
    assert second.statuses() == {"extract": S.SUCCEEDED, "load": S.SUCCEEDED, "report": S.SUCCEEDED, "on_error": S.SKIPPED}
    assert second.tasks["extract"].saved == {"rows": 10}
    assert next(j for j in ex.jobs if j.task == "load").kwargs == {"n": 10}
    # a resumed task keeps its earlier attempts and appends new ones
    assert [a["status"] for a in second.tasks["load"].attempts] == ["failed", "succeeded"]
    assert next(j for j in ex.jobs if j.task == "load").attempt == 2


def test_resume_of_a_staged_run_opens_stages_whose_tasks_all_succeeded() -> None:
    text = """
        name: w
        stages:
          - {name: one, tasks: [{name: a, shell: "true"}]}
          - {name: two, tasks: [{name: b, shell: "true"}]}
        """
    prior = {
        "a": TaskRun(name="a", stage="one", status=S.SUCCEEDED),
        "b": TaskRun(name="b", stage="two", status=S.CANCELLED, reason="run cancelled"),
    }
    ex = FakeExecutor()
    result = execute(text, ex, prior=prior)
    assert ex.started() == ["b"]
    assert result.statuses() == {"a": S.SUCCEEDED, "b": S.SUCCEEDED}
    assert result.status is RunStatus.SUCCEEDED


# --------------------------------------------------------------------------- property: random graphs

SATISFIED = {
    "success": {S.SUCCEEDED},
    "failure": {S.FAILED, S.TIMED_OUT},
    "completion": {S.SUCCEEDED, S.FAILED, S.TIMED_OUT},
    "skipped": {S.SKIPPED},
}
OUTCOMES = ["succeeded", "failed", "timed_out"]


@dataclass
class Scenario:
    workflow: Workflow
    stages: list[list[str]]
    outcomes: dict[str, list[str]]
    hold: dict[str, float]  # tasks answered from a timer thread, so predecessors end in varied orders


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    staged = draw(st.booleans())
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4)) if staged else [draw(st.integers(1, 8))]
    stages: list[list[str]] = []
    n = 0
    for size in sizes:
        stages.append([f"t{n + i}" for i in range(size)])
        n += size
    tasks_by_stage: list[list[dict[str, Any]]] = []
    outcomes: dict[str, list[str]] = {}
    hold: dict[str, float] = {}
    for si, names in enumerate(stages):
        stage_tasks: list[dict[str, Any]] = []
        for name in names:
            if staged:
                candidates = [p for s in stages[:si] for p in s]
            else:
                candidates = [f"t{i}" for i in range(int(name[1:]))]
            task: dict[str, Any] = {"name": name, "shell": "true"}
            if candidates and (not staged or draw(st.booleans())):
                preds = draw(st.lists(st.sampled_from(candidates), unique=True, max_size=3))
                if preds or staged:
                    task["after"] = {p: draw(st.sampled_from(list(SATISFIED))) for p in preds}
                    task["when"] = draw(st.sampled_from(["all", "any"]))
            guard = draw(st.sampled_from([None, None, None, "true", "false"]))
            if guard is not None:
                task["if"] = guard
            retries = draw(st.integers(0, 1))
            if retries:
                task["retries"] = retries
            outcomes[name] = draw(st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=2))
            delay = draw(st.sampled_from([None, None, 0.001, 0.004]))
            if delay is not None:
                hold[name] = delay
            stage_tasks.append(task)
        tasks_by_stage.append(stage_tasks)
    prefs = {"retry_delay": "0s", "max_parallel": draw(st.integers(1, 4))}
    if staged:
        workflow = Workflow.model_validate(
            {"name": "w", "preferences": prefs, "stages": [{"name": f"s{i}", "tasks": ts} for i, ts in enumerate(tasks_by_stage)]}
        )
    else:
        workflow = Workflow.model_validate({"name": "w", "preferences": prefs, "tasks": tasks_by_stage[0]})
    return Scenario(workflow, stages, outcomes, hold)


def expected_statuses(
    sc: Scenario, outcomes: Mapping[str, list[str]] | None = None, succeeded: Iterable[str] = ()
) -> dict[str, TaskStatus]:
    """A model of SPEC §2.1-§2.2, independent of the engine's decisions: tasks in stage and list order.

    `succeeded`: tasks that succeeded before a resume, which keep their status.
    """
    outcomes = sc.outcomes if outcomes is None else outcomes
    done = set(succeeded)
    staged = sc.workflow.stages is not None
    status: dict[str, TaskStatus] = {}
    for si, task in sc.workflow.all_tasks():
        if task.name in done:
            status[task.name] = S.SUCCEEDED
            continue
        if task.after is None:
            go = not staged or si == 0 or stage_passes(sc, status, si)
        elif not task.after:
            go = True
        else:
            answers = [status[p] in SATISFIED[str(c)] for p, c in task.after.items()]
            go = all(answers) if str(task.when) == "all" else any(answers)
        if not go or task.if_ == "false":
            status[task.name] = S.SKIPPED
            continue
        attempts = outcomes[task.name]
        tries = [attempts[min(i, len(attempts) - 1)] for i in range((task.retries or 0) + 1)]
        status[task.name] = S.SUCCEEDED if "succeeded" in tries else S(tries[-1])
    return status


def is_handler(task: Any) -> bool:
    return bool(task.after) and all(str(c) in ("failure", "completion") for c in task.after.values())


def stage_passes(sc: Scenario, status: Mapping[str, TaskStatus], si: int) -> bool:
    """The default of stage `si`: the nearest earlier stage with main-line tasks passed (SPEC §2.1).

    A main-line task passes when it succeeded, or failed and a catcher of an earlier stage than `si`
    succeeded; a stage of handlers only hands on the verdict of the stage before it.
    """
    tasks = {t.name: (k, t) for k, t in sc.workflow.all_tasks()}
    for k in range(si - 1, -1, -1):
        main = [n for n in sc.stages[k] if not is_handler(tasks[n][1])]
        if not main:
            continue
        for name in main:
            if status[name] is S.SUCCEEDED:
                continue
            caught = status[name] in (S.FAILED, S.TIMED_OUT) and any(
                kk < si and t.after and str(t.after.get(name, "")) == "failure" and status.get(t.name) is S.SUCCEEDED
                for t_name, (kk, t) in tasks.items()
            )
            if not caught:
                return False
        return True
    return True


def expected_run_status(sc: Scenario, status: dict[str, TaskStatus]) -> RunStatus:
    for _, task in sc.workflow.all_tasks():
        if status[task.name] in (S.FAILED, S.TIMED_OUT):
            catchers = [
                t.name
                for _, t in sc.workflow.all_tasks()
                if t.after and str(t.after.get(task.name, "")) == "failure" and status[t.name] is S.SUCCEEDED
            ]
            if not catchers:
                return RunStatus.FAILED
    return RunStatus.SUCCEEDED


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_random_graphs_end_with_every_task_final_and_a_consistent_run_status(sc: Scenario) -> None:
    result = execute(sc.workflow, FakeExecutor(sc.outcomes, hold=sc.hold))
    statuses = result.statuses()

    assert set(statuses) == {name for names in sc.stages for name in names}
    assert all(s in TASK_FINAL for s in statuses.values())
    assert statuses == expected_statuses(sc)

    plan = compile_plan(sc.workflow)
    assert result.status is run_status(statuses, plan.catchers)
    assert result.status is expected_run_status(sc, statuses)
    assert result.run.status == str(result.status)

    for name, tr in result.tasks.items():
        if tr.status is S.SKIPPED:
            assert tr.reason, f"{name} was skipped without a reason"
        assert len(tr.attempts) == sum(1 for j in result.executor.jobs if j.task == name)

    # replay the record: a task starts only once its stage is open and its condition holds
    stage_of = {name: si for si, names in enumerate(sc.stages) for name in names}
    seen: dict[str, TaskStatus] = dict.fromkeys(statuses, S.PENDING)
    limit = sc.workflow.preferences.max_parallel
    for event in result.events:
        if event.kind != "task_status" or event.task is None:
            continue
        name = event.task
        if event.status == "running" and event.data.get("attempt") == 1:
            earlier = [p for si in range(stage_of[name]) for p in sc.stages[si]]
            assert all(seen[p] in TASK_FINAL for p in earlier), f"{name} started before its stage opened"
            task = plan.nodes[name].task
            if task.after:
                answers = [seen[p] in SATISFIED[str(c)] for p, c in task.after.items()]
                assert all(answers) if str(task.when) == "all" else any(answers), f"{name} started too early"
        seen[name] = TaskStatus(event.status)
        assert seen[name] in TASK_FINAL or seen[name] in (S.RUNNING, S.RETRYING)
        assert sum(1 for s in seen.values() if s is S.RUNNING) <= limit
    assert seen == statuses


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_resume_of_a_random_run_never_reruns_a_succeeded_task(sc: Scenario) -> None:
    store = MemoryRunStore()
    first = execute(sc.workflow, FakeExecutor(sc.outcomes, hold=sc.hold), store=store)
    succeeded = {n for n, s in first.statuses().items() if s is S.SUCCEEDED}

    ex = FakeExecutor(hold=sc.hold)  # everything succeeds this time
    second = execute(sc.workflow, ex, store=store, variables=first.run.variables, prior=first.tasks)

    assert not succeeded & {j.task for j in ex.jobs}
    every_success = {name: ["succeeded"] for name in sc.outcomes}
    assert second.statuses() == expected_statuses(sc, every_success, succeeded)
    assert second.status is RunStatus.SUCCEEDED
    for name in succeeded:
        assert second.tasks[name].attempts == first.tasks[name].attempts


# --------------------------------------------------------------------------- the event log is the record


def replayed(result: Result) -> dict[str, TaskRun]:
    from flowstage.engine.projection import fresh, replay

    return replay(fresh(result.run.tasks), result.events)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_replaying_the_events_of_a_random_run_gives_its_stored_projection_back(sc: Scenario) -> None:
    result = execute(sc.workflow, FakeExecutor(sc.outcomes, hold=sc.hold))
    assert replayed(result) == result.tasks
    finished = [e for e in result.events if e.kind == "run_finished"]
    assert [e.status for e in finished] == [str(result.status)]


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_replaying_a_resumed_run_from_its_first_event_gives_its_projection_back(sc: Scenario) -> None:
    store = MemoryRunStore()
    first = execute(sc.workflow, FakeExecutor(sc.outcomes, hold=sc.hold), store=store)
    if first.status is RunStatus.SUCCEEDED:
        return
    prior = {t.name: t for t in first.run.tasks}
    again = execute(sc.workflow, FakeExecutor(), prior=prior, store=store)
    assert replayed(again) == again.tasks


def test_every_status_change_of_a_task_is_an_event_with_its_fields() -> None:
    result = execute(
        """
        name: w
        preferences: {retry_delay: 0s}
        tasks:
          - {name: flaky, shell: "true", retries: 1}
        """,
        FakeExecutor({"flaky": ["failed", "succeeded"]}),
    )
    # each status change carries the attempt change that caused it
    kinds = [
        (e.kind, e.status, sorted(k for k in e.data if k.startswith("attempt_"))) for e in result.events if e.task == "flaky"
    ]
    assert kinds == [
        ("task_status", "running", ["attempt_started"]),
        ("task_status", "retrying", ["attempt_update"]),
        ("task_status", "running", ["attempt_started"]),
        ("task_status", "succeeded", ["attempt_update"]),
    ]
    assert [e.data["attempt_update"]["set"]["status"] for e in result.events if "attempt_update" in e.data] == [
        "failed",
        "succeeded",
    ]
    assert replayed(result)["flaky"] == result.tasks["flaky"]


def test_process_sub_run_and_wait_reports_are_events() -> None:
    class Reporting(FakeExecutor):
        def submit(self, job: AttemptSpec, reports: Reports) -> FakeHandle:
            reports.process(4242)
            reports.note("waits for the warehouse lock")
            reports.subrun("child-1")
            return super().submit(job, reports)

    result = execute("name: w\ntasks: [{name: a, shell: 'true'}]\n", Reporting())
    changes = [e.data.get("set") or e.data for e in result.events if e.task == "a" and e.kind in ("attempt_updated", "task_note")]
    assert {"pid": 4242, "host": ""} in changes or any(c.get("pid") == 4242 for c in changes)
    assert {"reason": "waits for the warehouse lock"} in changes
    assert {"sub_run_id": "child-1"} in changes
    attempt = result.tasks["a"].attempts[0]
    assert attempt["pid"] == 4242
    assert attempt["sub_run_id"] == "child-1"
    assert result.tasks["a"].reason is None  # the wait ended with the attempt
    assert replayed(result)["a"] == result.tasks["a"]


# --------------------------------------------------------------------------- hooks


def record_new_run(store: MemoryRunStore, workflow: Workflow, run_id: str) -> Any:
    """Record a new run of `workflow` (every task pending) for a runner built by the test; its plan."""
    plan = compile_plan(workflow)
    store.create_run(
        NewRun(
            id=run_id,
            workflow=workflow.name,
            version=None,
            definition=workflow.to_dict(),
            variables={},
            overrides={},
            root="/nonexistent",
            logical_time=0.0,
            started_at=0.0,
            runner_pid=0,
            runner_host="test",
            runner_started=0.0,
            tasks=[TaskRun(name=n, stage=plan.stage_names[node.stage]) for n, node in plan.nodes.items()],
        )
    )
    return plan


def test_a_raising_hook_is_logged_and_never_changes_the_run() -> None:
    from flowstage.engine.hooks import Hooks

    calls: list[str] = []

    def bad_event(event: Event, task: TaskRun | None) -> None:
        calls.append(event.kind)
        raise RuntimeError("observer broke")

    def bad_attempt(task: TaskRun, attempt: Mapping[str, Any]) -> None:
        raise ValueError("attempt hook broke")

    def bad_run(status: RunStatus, tasks: Mapping[str, TaskRun]) -> None:
        calls.append(f"run {status}")
        raise KeyError("run hook broke")

    workflow = wf("name: w\ntasks: [{name: a, shell: 'true'}, {name: b, shell: 'true', after: [a]}]\n")
    store = MemoryRunStore()
    plain = execute(workflow, store=store, run_id="plain")
    plan = record_new_run(store, workflow, "hooked")
    info = RunInfo("hooked", "w", None, datetime(2026, 3, 1, tzinfo=UTC), "/nonexistent")
    hooks = Hooks(after_event=[bad_event], after_attempt=[bad_attempt], after_run=[bad_run])
    runner = Runner(plan=plan, info=info, store=store, executor=FakeExecutor(), variables={}, hooks=hooks)
    assert runner.run() is RunStatus.SUCCEEDED
    run = store.get_run("hooked")
    assert run is not None
    assert run.status == "succeeded"
    assert [t.status for t in run.tasks] == [t.status for t in plain.run.tasks]
    assert "run_finished" in calls
    assert calls[-1] == "run succeeded"
    messages = [s.line.message for s in store.logs("hooked")]
    assert any("hook" in m and "observer broke" in m for m in messages)
    assert any("attempt hook broke" in m for m in messages)
    assert any("run hook broke" in m for m in messages)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [({}, RunStatus.SUCCEEDED), ({"a": "failed"}, RunStatus.FAILED)],
)
def test_after_run_hooks_see_every_final_status(outcomes: dict[str, str], expected: RunStatus) -> None:
    from flowstage.engine.hooks import Hooks

    seen: list[RunStatus] = []
    workflow = wf("name: w\ntasks: [{name: a, shell: 'true'}]\n")
    store = MemoryRunStore()
    execute(workflow, store=store, run_id="seed")
    plan = record_new_run(store, workflow, "r")
    runner = Runner(
        plan=plan,
        info=RunInfo("r", "w", None, datetime(2026, 3, 1, tzinfo=UTC), "/x"),
        store=store,
        executor=FakeExecutor(outcomes),
        variables={},
        hooks=Hooks(after_run=[lambda status, tasks: seen.append(status)]),
    )
    assert runner.run() is expected
    assert seen == [expected]


# --------------------------------------------------------------------------- handlers and stage defaults (SPEC §2.1)

HANDLER_STAGES = """
name: w
stages:
  - name: main
    tasks:
      - {name: extract, shell: "true"}
  - name: catch
    tasks:
      - {name: on_error, shell: "true", after: {extract: failure}}
  - name: next
    tasks:
      - {name: load, shell: "true"}
  - name: finally
    tasks:
      - {name: cleanup, shell: "true", after: {load: completion}}
  - name: last
    tasks:
      - {name: report, shell: "true"}
"""

HANDLER_TABLE = [
    # outcomes, expected statuses, run status
    (
        "happy path: the unneeded catch is skipped and never blocks what follows",
        {},
        {"on_error": S.SKIPPED, "load": S.SUCCEEDED, "cleanup": S.SUCCEEDED, "report": S.SUCCEEDED},
        RunStatus.SUCCEEDED,
    ),
    (
        "a caught failure lets the main line go on",
        {"extract": "failed"},
        {"on_error": S.SUCCEEDED, "load": S.SUCCEEDED, "cleanup": S.SUCCEEDED, "report": S.SUCCEEDED},
        RunStatus.SUCCEEDED,
    ),
    (
        "a failed catch stops the main line",
        {"extract": "failed", "on_error": "failed"},
        {"on_error": S.FAILED, "load": S.SKIPPED, "cleanup": S.SKIPPED, "report": S.SKIPPED},
        RunStatus.FAILED,
    ),
    (
        "a finally never lets the main line go on after an uncaught failure",
        {"load": "failed"},
        {"on_error": S.SKIPPED, "load": S.FAILED, "cleanup": S.SUCCEEDED, "report": S.SKIPPED},
        RunStatus.FAILED,
    ),
]


@pytest.mark.parametrize(("outcomes", "expected", "run"), [r[1:] for r in HANDLER_TABLE], ids=[r[0] for r in HANDLER_TABLE])
def test_stage_defaults_look_past_handlers(outcomes: dict[str, str], expected: dict[str, TaskStatus], run: RunStatus) -> None:
    result = execute(HANDLER_STAGES, FakeExecutor(outcomes))
    assert {n: result.status_of(n) for n in expected} == expected
    assert result.status is run
    if expected["report"] is S.SKIPPED:
        assert result.tasks["report"].reason == "needs every task of stage 'next' to succeed; load " + (
            "failed" if outcomes.get("load") else "was skipped"
        )


def test_a_skipped_main_line_task_still_skips_every_later_stage() -> None:
    result = execute(
        """
        name: w
        stages:
          - {name: one, tasks: [{name: a, shell: "true", if: "false"}]}
          - {name: two, tasks: [{name: b, shell: "true"}]}
          - {name: three, tasks: [{name: c, shell: "true"}]}
        """
    )
    assert result.statuses() == {"a": S.SKIPPED, "b": S.SKIPPED, "c": S.SKIPPED}
    assert result.tasks["c"].reason == "needs every task of stage 'two' to succeed; b was skipped"
