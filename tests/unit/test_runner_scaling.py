"""The runner's work per task does not grow with the run: counted, never timed.

A run of n tasks must cost O(n) store writes, rows, events, decisions and looks at task records
in all: a step that scans every task (or every event) per event, per decision or per commit
would make the count per task grow with n. Each workload runs at 100 and at 1,000 tasks on a
counting store with an executor that answers at once, and the counts per task are compared.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from flowstage.engine import readiness
from flowstage.engine.plan import compile_plan
from flowstage.engine.ports import AttemptSpec, Batch, Outcome, Reports, TaskRun
from flowstage.engine.runner import RunInfo, Runner
from flowstage.model import RunStatus, TaskStatus
from flowstage.model.loader import load_text
from flowstage.stores.base import NewRun
from flowstage.stores.memory import MemoryRunStore

#: how much more per task the large run may cost (rounding of fixed costs, a last partial batch)
SLACK = 1.15


@dataclass
class Counts:
    records: int = 0  # store writes (transactions)
    rows: int = 0  # task rows written
    events: int = 0
    decisions: int = 0
    visits: int = 0  # task records looked at by a walk over all of them

    def per_task(self, n: int) -> dict[str, float]:
        return {k: v / n for k, v in self.__dict__.items()}


class CountingStore(MemoryRunStore):
    def __init__(self, counts: Counts) -> None:
        super().__init__()
        self.counts = counts

    def record(self, batch: Batch) -> None:
        self.counts.records += 1
        self.counts.rows += len(batch.tasks)
        self.counts.events += len(batch.events)
        super().record(batch)


class CountingRecords(dict[str, TaskRun]):
    """The runner's task records, counting every record a walk over all of them touches."""

    counts: Counts

    def __iter__(self) -> Iterator[str]:
        self.counts.visits += len(self)
        return super().__iter__()

    def items(self) -> Any:
        self.counts.visits += len(self)
        return super().items()

    def values(self) -> Any:
        self.counts.visits += len(self)
        return super().values()

    def keys(self) -> Any:
        self.counts.visits += len(self)
        return super().keys()


@dataclass
class AtOnce:
    """An executor whose attempts succeed as they are submitted."""

    jobs: list[str] = field(default_factory=list)

    def submit(self, attempt: AttemptSpec, reports: Reports) -> Any:
        self.jobs.append(attempt.task)
        reports.done(Outcome(TaskStatus.SUCCEEDED))
        return self

    def kill(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _task(name: str, after: list[str] | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"name": name, "shell": "true"}
    if after is not None:
        task["after"] = after
    return task


def fanout(n: int) -> dict[str, Any]:
    middle = [_task(f"t{i}", ["start"]) for i in range(n - 2)]
    return {"name": "fanout", "tasks": [_task("start"), *middle, _task("end", [t["name"] for t in middle])]}


def chain(n: int) -> dict[str, Any]:
    return {"name": "chain", "tasks": [_task("t0"), *(_task(f"t{i}", [f"t{i - 1}"]) for i in range(1, n))]}


def staged(n: int) -> dict[str, Any]:
    # more stages as the run grows: a step over every earlier stage per stage would show
    width = 10
    return {
        "name": "staged",
        "stages": [{"name": f"s{s}", "tasks": [_task(f"s{s}_t{i}") for i in range(width)]} for s in range(n // width)],
    }


def counted_run(definition: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[Counts, int]:
    counts, runner = counted_runner(definition, monkeypatch)
    return counts, len(runner.plan.nodes)


def counted_runner(definition: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[Counts, Runner]:
    counts = Counts()
    workflow = load_text(json.dumps(definition), "scaling.json")
    plan = compile_plan(workflow)
    store = CountingStore(counts)
    now = 1_700_000_000.0
    tasks = [TaskRun(name=n.name, stage=plan.stage_names[n.stage]) for n in plan.nodes.values()]
    store.create_run(
        NewRun(
            id="run-1",
            workflow=workflow.name,
            version=None,
            definition={},
            variables={},
            overrides={},
            root="/nonexistent",
            logical_time=now,
            started_at=now,
            runner_pid=0,
            runner_host="test",
            runner_started=now,
            tasks=tasks,
        )
    )
    decide = readiness.Readiness.decide

    def counting_decide(self: readiness.Readiness, name: str) -> Any:
        counts.decisions += 1
        return decide(self, name)

    monkeypatch.setattr(readiness.Readiness, "decide", counting_decide)
    executor = AtOnce()
    info = RunInfo("run-1", workflow.name, None, datetime(2026, 3, 1, tzinfo=UTC), "/nonexistent")
    runner = Runner(plan=plan, info=info, store=store, executor=executor, variables={})
    records = CountingRecords(runner.rec.records)
    records.counts = counts
    runner.rec.records = records
    assert runner.run() is RunStatus.SUCCEEDED
    assert len(executor.jobs) == len(plan.nodes)
    return counts, runner


@pytest.mark.parametrize("shape", [fanout, chain, staged], ids=["fanout", "chain", "staged"])
def test_work_per_task_does_not_grow_with_the_number_of_tasks(shape: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    small, n_small = counted_run(shape(100), monkeypatch)
    large, n_large = counted_run(shape(1000), monkeypatch)
    per_small, per_large = small.per_task(n_small), large.per_task(n_large)
    for what, value in per_large.items():
        assert value <= per_small[what] * SLACK + 0.05, (what, per_small, per_large)


def test_a_walk_over_every_task_record_happens_a_fixed_number_of_times_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    counts, n = counted_run(fanout(1000), monkeypatch)
    assert counts.visits <= 5 * n
    assert counts.rows <= 3 * n  # a task row is written when the task starts and when it ends
    assert counts.events <= 3 * n


@pytest.mark.parametrize("shape", [fanout, chain, staged], ids=["fanout", "chain", "staged"])
def test_what_a_task_needed_while_it_ran_is_dropped_once_it_is_final(shape: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, runner = counted_runner(shape(100), monkeypatch)
    assert runner.launch == {}
    assert not runner.running
    assert all(r.status is TaskStatus.SUCCEEDED for r in runner.records.values())
