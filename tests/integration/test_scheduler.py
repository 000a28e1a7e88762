"""The scheduler: schedules and event triggers start real, recorded runs, exactly once.

In-process tests drive `Scheduler.tick` with an injected clock (no sleeping for minutes); process
tests run `flowstage scheduler` as a user does, with a hidden clock option that shifts or speeds up
its wall time (an every-minute cron then fires every second), so many due times pass in seconds.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flowstage.deploy import deploy
from flowstage.scheduler import Scheduler
from flowstage.settings import load_project
from flowstage.stores.base import StoredRun
from flowstage.stores.sql.deployments import SqlDeploymentStore
from flowstage.stores.sql.store import SqlRunStore
from tests.conftest import Project
from tests.records import wait_until

T0 = datetime.fromisoformat("2026-05-01T00:00:00+00:00").timestamp()
HOUR = 3600.0
MINUTE = 60.0

TASKS_PY = """
import os
import time


def noop():
    return None


def echo(value):
    return value


def hold(gate):
    deadline = time.monotonic() + 60
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{gate} never came")
        time.sleep(0.02)
"""


class ManualClock:
    """A clock the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def scheduled_workflow(name: str, schedule: str, *, catch_up: bool = False, max_active: int = 1, task: str = "") -> str:
    task = task or "{name: work, python: tasks/jobs.py:noop, in_process: true}"
    return (
        f"name: {name}\n"
        f'trigger: {{schedule: "{schedule}", catch_up: {str(catch_up).lower()}, max_active_runs: {max_active}}}\n'
        f"tasks:\n  - {task}\n"
    )


def runs_of(store: SqlRunStore, workflow: str) -> list[StoredRun]:
    return list(reversed(store.list_runs(workflow=workflow, limit=10_000)))


@pytest.fixture
def local(project: Project) -> Iterator[tuple[Project, SqlRunStore]]:
    project.write("tasks/jobs.py", TASKS_PY)
    store = SqlRunStore(f"sqlite:///{project.root}/.flowstage/flowstage.db")
    yield project, store
    store.close()


def scheduler_for(project: Project, store: SqlRunStore, clock: ManualClock) -> Scheduler:
    return Scheduler(load_project(root=project.root), store=store, clock=clock, report=lambda _line: None)


def run_pass(scheduler: Scheduler) -> list[Any]:
    started = scheduler.tick()
    assert scheduler.wait_idle(60)
    return started


def drain(scheduler: Scheduler) -> list[Any]:
    """Passes until nothing more starts (runs held back by max_active_runs start one after another)."""
    started: list[Any] = []
    for _ in range(20):
        more = run_pass(scheduler)
        if not more:
            return started
        started += more
    raise AssertionError("the scheduler kept starting runs")


# --------------------------------------------------------------------------- in-process, injected clock
@pytest.mark.parametrize(("catch_up", "expected_hours"), [(True, [1, 2, 3]), (False, [3])])
def test_catch_up_after_downtime(local: tuple[Project, SqlRunStore], catch_up: bool, expected_hours: list[int]) -> None:
    project, store = local
    project.write("workflows/hourly.yaml", scheduled_workflow("hourly", "0 * * * *", catch_up=catch_up, max_active=10))
    deploy(load_project(root=project.root), [project.root / "workflows"], store=store, at=T0)

    clock = ManualClock(T0 + 3 * HOUR + 600)  # the scheduler comes up three hours and ten minutes later
    scheduler = scheduler_for(project, store, clock)
    run_pass(scheduler)
    runs = runs_of(store, "hourly")
    assert sorted(r.logical_time for r in runs) == [T0 + h * HOUR for h in expected_hours]
    assert {r.status for r in runs} == {"succeeded"}
    assert {r.version for r in runs} == {1}

    # a new scheduler (a restart) at the same time fires nothing again
    assert run_pass(scheduler_for(project, store, clock)) == []
    clock.now = T0 + 4 * HOUR
    assert [s.logical_time for s in run_pass(scheduler_for(project, store, clock))] == [T0 + 4 * HOUR]
    assert len(runs_of(store, "hourly")) == len(expected_hours) + 1


def test_max_active_runs_holds_back_due_times_until_a_run_ends(local: tuple[Project, SqlRunStore]) -> None:
    project, store = local
    gate = project.root / "go.ok"  # the first run holds until the test has ticked again
    held = f"{{name: work, python: tasks/jobs.py:hold, in_process: true, with: {{gate: {gate}}}}}"
    project.write("workflows/busy.yaml", scheduled_workflow("busy", "*/10 * * * *", catch_up=True, max_active=1, task=held))
    deploy(load_project(root=project.root), [project.root / "workflows"], store=store, at=T0)
    scheduler = scheduler_for(project, store, ManualClock(T0 + 35 * MINUTE))

    first = scheduler.tick()
    assert [s.logical_time for s in first] == [T0 + 10 * MINUTE]  # the others wait for a free slot
    assert scheduler.tick() == []
    assert scheduler.stats.busy >= 2
    gate.write_text("")
    assert scheduler.wait_idle(60)
    later = []
    for _ in range(3):
        later += scheduler.tick()
        assert scheduler.wait_idle(60)
    assert [s.logical_time for s in later] == [T0 + 20 * MINUTE, T0 + 30 * MINUTE]
    runs = runs_of(store, "busy")
    for a, b in itertools.pairwise(runs):
        assert a.ended_at is not None
        assert a.ended_at <= b.started_at  # never two at once


def test_a_scheduled_run_records_its_version_logical_time_and_trigger_variables(local: tuple[Project, SqlRunStore]) -> None:
    project, store = local
    project.write(
        "workflows/stamp.yaml",
        """
        name: stamp
        variables: {region: US}
        trigger: {schedule: "30 23 * * *", timezone: Europe/Paris, variables: {region: EU}}
        tasks:
          - name: seen
            python: tasks/jobs.py:echo
            in_process: true
            with: {value: "{{ run.logical_time }} {{ run.date }} {{ var.region }} v{{ run.version }}"}
            save: seen
        """,
    )
    deploy(load_project(root=project.root), [project.root / "workflows"], store=store, at=T0)
    due = datetime.fromisoformat("2026-05-01T23:30:00+02:00").timestamp()
    (started,) = run_pass(scheduler_for(project, store, ManualClock(due + 0.2)))
    run = store.get_run(started.run_id)
    assert run is not None
    assert run.status == "succeeded"
    assert run.version == 1
    assert run.logical_time == due
    assert run.variables["region"] == "EU"
    assert run.tasks[0].saved == {"seen": "2026-05-01T23:30:00+02:00 2026-05-01 EU v1"}


def test_event_triggers_all_and_any_count_runs_that_ended_while_no_scheduler_was_up(local: tuple[Project, SqlRunStore]) -> None:
    from flowstage.app.runs import start_run

    project, store = local
    noop = "tasks:\n  - {name: work, python: tasks/jobs.py:noop, in_process: true}\n"
    project.write("workflows/a.yaml", "name: a\n" + noop)
    project.write("workflows/b.yaml", "name: b\n" + noop)
    project.write("workflows/both.yaml", "name: both\ntrigger: {after: {workflows: [a, b], when: all}}\n" + noop)
    project.write("workflows/either.yaml", "name: either\ntrigger: {after: {workflows: [a, b], when: any}}\n" + noop)
    proj = load_project(root=project.root)
    deploy(proj, [project.root / "workflows"], store=store)
    from flowstage.app.workflows import resolve_workflow

    def run(name: str) -> None:
        found = resolve_workflow(proj, name, store=store)
        assert start_run(proj, found.workflow, store=store, version=found.version).status == "succeeded"

    run("a")  # no scheduler is up
    scheduler = scheduler_for(project, store, ManualClock(time.time()))
    drain(scheduler)
    assert (len(runs_of(store, "both")), len(runs_of(store, "either"))) == (0, 1)
    run("a")
    run("b")
    scheduler._events_due = True  # what a run ending elsewhere shows on the next poll
    drain(scheduler)  # `either` has max_active_runs 1: its two starts run one after the other
    assert (len(runs_of(store, "both")), len(runs_of(store, "either"))) == (1, 3)
    scheduler._events_due = True
    assert drain(scheduler) == []  # nothing new: nothing fires again
    run("b")
    scheduler._events_due = True
    drain(scheduler)
    assert (len(runs_of(store, "both")), len(runs_of(store, "either"))) == (1, 4)  # ALL waits for `a` again
    both = runs_of(store, "both")[0]
    fires = SqlDeploymentStore(store).fires("both")
    assert [f.run_id for f in fires] == [both.id]
    assert "a succeeded" in (fires[0].reason or "")
    assert "b succeeded" in (fires[0].reason or "")


# --------------------------------------------------------------------------- the real process
class SchedulerProcess:
    """A `flowstage scheduler` process whose output is read as it comes (to know when it is up)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.up = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "scheduler started" in line:
                self.up.set()
        self.up.set()


def start_scheduler(project: Project, *args: str) -> SchedulerProcess:
    return SchedulerProcess(project.popen("scheduler", "--poll", "0.2", *args))


def stop(scheduler: SchedulerProcess, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str, str]:
    """Signal the scheduler (a graceful signal only once it is up and handles it) and collect its output."""
    if sig != signal.SIGKILL:
        scheduler.up.wait(timeout)
    scheduler.proc.send_signal(sig)
    scheduler.proc.wait(timeout=timeout)
    scheduler.reader.join(timeout)
    assert scheduler.proc.stderr is not None
    assert scheduler.proc.stdout is not None
    err = scheduler.proc.stderr.read()
    scheduler.proc.stderr.close()
    scheduler.proc.stdout.close()
    return scheduler.proc.returncode, "".join(scheduler.lines), err


def open_store(project: Project) -> SqlRunStore:
    return SqlRunStore(f"sqlite:///{project.root}/.flowstage/flowstage.db")


STARTUP = 6.0  # real seconds a scheduler is given to start before its first due time


def test_a_due_schedule_fires_within_a_second(project: Project) -> None:
    project.write("tasks/jobs.py", TASKS_PY)
    project.write("workflows/minutely.yaml", scheduled_workflow("minutely", "* * * * *"))
    # the first minute after the deploy began (so no earlier time is due, even when the deploy
    # crosses a minute), which the scheduler's shifted clock reaches STARTUP real seconds from now
    before = time.time()
    assert project.cli("deploy", "workflows").code == 0
    now = time.time()
    due = (int(before) // 60 + 1) * 60.0
    offset = due - (now + STARTUP)
    real_due = due - offset
    proc = start_scheduler(project, "--clock-offset", repr(offset))
    try:
        assert proc.up.wait(STARTUP + 60)
        # only a scheduler idle before the due time measures how soon it fires
        assert time.time() < real_due, f"the scheduler took more than {STARTUP:g}s to start"
        store = open_store(project)
        run = wait_until(lambda: next(iter(runs_of(store, "minutely")), None), STARTUP + 60, "the scheduled run")
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    assert run.logical_time == due
    # bench/scheduler.py measures the 1 s target on a quiet machine; here a busy one may be slower
    assert run.started_at - real_due < 3.0, f"started {run.started_at - real_due:.3f}s after due"
    assert run.started_at >= real_due - 0.05
    assert "scheduler started" in out
    assert "scheduler stopped" in out
    store.close()


def test_event_triggers_fire_as_runs_end(project: Project) -> None:
    project.write("tasks/jobs.py", TASKS_PY)
    noop = "tasks:\n  - {name: work, python: tasks/jobs.py:noop, in_process: true}\n"
    project.write("workflows/a.yaml", "name: a\n" + noop)
    project.write("workflows/b.yaml", "name: b\n" + noop)
    project.write("workflows/both.yaml", "name: both\ntrigger: {after: {workflows: [a, b], when: all}}\n" + noop)
    project.write("workflows/either.yaml", "name: either\ntrigger: {after: {workflows: [a, b], when: any}}\n" + noop)
    project.write("workflows/c.yaml", "name: c\n" + noop)
    project.write("workflows/after_c.yaml", "name: after_c\ntrigger: {after: {workflows: [c]}}\n" + noop)
    assert project.cli("deploy", "workflows").code == 0
    proc = start_scheduler(project)
    store = open_store(project)
    try:

        def counts() -> tuple[int, int]:
            return len(runs_of(store, "both")), len(runs_of(store, "either"))

        assert project.cli("run", "a", "-q").code == 0
        wait_until(lambda: counts() == (0, 1), 60, "ANY to fire after a")
        assert project.cli("run", "b", "-q").code == 0
        wait_until(lambda: counts() == (1, 2), 60, "ALL and ANY to fire after b")
        # a later event fired: the scheduler looked at every trigger again since
        assert project.cli("run", "c", "-q").code == 0
        wait_until(lambda: runs_of(store, "after_c"), 60, "the trigger on c to fire")
        assert counts() == (1, 2)  # each event fired once
        assert {r.status for r in runs_of(store, "both") + runs_of(store, "either")} == {"succeeded"}
    finally:
        code, _out, err = stop(proc)
        store.close()
    assert code == 0, err


def test_sigterm_stops_the_scheduler_and_leaves_a_running_run_resumable(project: Project) -> None:
    project.write("workflows/long.yaml", scheduled_workflow("long", "* * * * *", task="{name: nap, shell: sleep 30.5173}"))
    assert project.cli("deploy", "workflows").code == 0
    now = time.time()
    due = (int(now) // 60 + 1) * 60.0
    proc = start_scheduler(project, "--grace", "0.5", "--clock-offset", repr(due - (now + 2)))
    store = open_store(project)
    try:

        def task_running() -> bool:
            runs = [store.get_run(r.id) for r in runs_of(store, "long")]
            return any(t.status == "running" for r in runs if r is not None for t in r.tasks)

        wait_until(task_running, 60, "the task to run")
    finally:
        began = time.monotonic()
        code, out, err = stop(proc)
    assert code == 0, err
    assert time.monotonic() - began < 20  # the grace, not the task's 30 s
    assert "cancelled 1 run(s)" in out
    (run,) = runs_of(store, "long")
    assert run.status == "cancelled"  # resumable
    store.close()
    resume = project.cli("show", run.id, "--json")
    assert json.loads(resume.out)["status"] == "cancelled"


def logical_minutes(store: SqlRunStore, workflow: str) -> list[int]:
    return [int(r.logical_time // MINUTE) for r in runs_of(store, workflow)]


@pytest.mark.slow
@pytest.mark.parametrize("catch_up", [True, False])
def test_a_killed_scheduler_restarted_never_fires_a_time_twice_and_applies_catch_up(project: Project, catch_up: bool) -> None:
    project.write("tasks/jobs.py", TASKS_PY)
    project.write("workflows/minutely.yaml", scheduled_workflow("minutely", "* * * * *", catch_up=catch_up, max_active=100))
    assert project.cli("deploy", "workflows").code == 0
    clock = ("--clock-origin", repr(time.time()), "--clock-rate", "60")  # a minute per second
    store = open_store(project)

    first = start_scheduler(project, *clock)
    wait_until(lambda: len(runs_of(store, "minutely")) >= 3, 60, "three runs")
    stop(first, signal.SIGKILL)
    before = logical_minutes(store, "minutely")
    # the downtime itself, not a wait for something: four minutes of scheduler time (at least) go
    # by without a scheduler; a slower machine only makes it longer
    time.sleep(4.0)

    second = start_scheduler(project, *clock)
    wait_until(lambda: len(runs_of(store, "minutely")) >= len(before) + 3, 60, "runs after the restart")
    code, _out, err = stop(second)
    assert code == 0, err

    minutes = logical_minutes(store, "minutely")
    counts = Counter(minutes)
    assert max(counts.values()) == 1, f"a time fired twice: {counts.most_common(3)}"
    missing = sorted(set(range(min(minutes), max(minutes) + 1)) - set(minutes))
    if catch_up:
        assert missing == [], f"catch_up: true left minutes out: {missing}"
    else:
        assert len(missing) >= 2, "catch_up: false ran the missed minutes"
        assert all(m > max(before) for m in missing)
    store.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_schedulers_on_postgres_start_exactly_one_run_per_due_time(project: Project, pg_schema_url: str) -> None:
    project.write("flowstage.yaml", f"store: {pg_schema_url}\n")
    project.write("tasks/jobs.py", TASKS_PY)
    project.write("workflows/minutely.yaml", scheduled_workflow("minutely", "* * * * *", catch_up=True, max_active=100))
    project.write("workflows/other.yaml", scheduled_workflow("other", "*/2 * * * *", catch_up=True, max_active=100))
    assert project.cli("deploy", "workflows").code == 0
    clock = ("--clock-origin", repr(time.time()), "--clock-rate", "240")  # four minutes per second
    a = start_scheduler(project, *clock)
    b = start_scheduler(project, *clock)
    store = SqlRunStore(pg_schema_url)
    try:
        wait_until(lambda: len(runs_of(store, "minutely")) >= 30, 120, "thirty due times")
    finally:
        results = [stop(a), stop(b)]
    for code, _out, err in results:
        assert code == 0, err
    for workflow, step in (("minutely", 1), ("other", 2)):
        minutes = logical_minutes(store, workflow)
        counts = Counter(minutes)
        assert max(counts.values()) == 1, f"{workflow}: a due time started twice: {counts.most_common(3)}"
        assert sorted(minutes) == list(range(min(minutes), max(minutes) + 1, step)), f"{workflow}: a due time was lost"
    each = [int(out.strip().splitlines()[-1].split()[-3]) for _code, out, _err in results]
    print("runs started by each scheduler:", each)
    started = sum(each)
    assert started == len(runs_of(store, "minutely")) + len(runs_of(store, "other"))
    fires = SqlDeploymentStore(store).fires("minutely", limit=1000)
    assert sorted(f.run_id for f in fires) == sorted(r.id for r in runs_of(store, "minutely"))
    store.close()


def test_scheduler_with_no_deployments_idles_and_stops_cleanly(tmp_path: Path, project: Project) -> None:
    proc = start_scheduler(project)
    assert proc.up.wait(60)
    time.sleep(1.0)  # what is tested: a second of idle polls (every 0.2 s) that end nothing
    assert proc.proc.poll() is None, "the scheduler ended by itself"
    code, out, err = stop(proc)
    assert code == 0, err
    assert "0 schedule(s), 0 event trigger(s)" in out


def test_a_run_whose_scheduler_was_killed_is_interrupted_and_resumes_as_a_normal_run(project: Project) -> None:
    gate = "if [ -f go.ok ]; then echo done; else sleep 30.2291; fi"
    project.write(
        "workflows/gated.yaml",
        scheduled_workflow("gated", "* * * * *", task=f'{{name: gate, shell: "{gate}"}}'),
    )
    # the first minute after the deploy began (as in test_a_due_schedule_fires_within_a_second): no
    # earlier time is due even when the deploy crosses a minute, and nothing waits for the clock
    before = time.time()
    assert project.cli("deploy", "workflows").code == 0
    now = time.time()
    due = (int(before) // 60 + 1) * 60.0
    proc = start_scheduler(project, "--clock-offset", repr(due - (now + 2)))
    store = open_store(project)
    try:

        def task_running() -> bool:
            runs = [store.get_run(r.id) for r in runs_of(store, "gated")]
            return any(t.status == "running" for r in runs if r is not None for t in r.tasks)

        wait_until(task_running, 60, "the task to run")
    finally:
        stop(proc, signal.SIGKILL)
    (run,) = runs_of(store, "gated")
    shown = json.loads(project.cli("show", run.id, "--json").out)
    assert shown["status"] == "interrupted"
    (project.root / "go.ok").write_text("")
    resumed = project.cli("resume", run.id, "--json")
    assert resumed.code == 0, resumed.err
    record = json.loads(resumed.out)
    assert record["status"] == "succeeded"
    assert record["version"] == 1
    after = store.get_run(run.id)
    assert after is not None
    assert after.logical_time == due
    store.close()
