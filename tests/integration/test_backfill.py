"""`flowstage backfill` end to end, through the CLI on a project in tmp_path.

The backfilled workflow has one in-process python task that appends its `run.logical_time` to a
file of its own per logical time (``out/<time>``), so the files tell which times ran and how
often. What the task does is set by ``config.json``: times from `gate_from` on wait until the
test writes the file ``gate`` (so a driver can be killed or paused at a moment the test chooses,
seen through the store, however slow the machine), and the hours in `fail_hours` fail until the
file ``fixed`` exists.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowstage.engine.scheduling import CronSchedule
from flowstage.stores.backfills import Backfill
from flowstage.stores.sql.store import SqlRunStore
from tests.conftest import Project

MARK_PY = """
import json
import os
import time
from datetime import datetime
from pathlib import Path


def mark(at):
    config = json.loads(Path("config.json").read_text()) if os.path.exists("config.json") else {}
    t = datetime.fromisoformat(at)
    gate = config.get("gate_from")
    deadline = time.monotonic() + 120
    while gate and t >= datetime.fromisoformat(gate) and not os.path.exists("gate"):
        if time.monotonic() > deadline:
            raise RuntimeError("the gate never opened")
        time.sleep(0.01)
    if t.hour in config.get("fail_hours", []) and not os.path.exists("fixed"):
        raise RuntimeError(f"no data for {at}")
    Path("out").mkdir(exist_ok=True)
    with open(Path("out") / t.strftime("%Y%m%dT%H%M%z"), "a") as fh:
        fh.write(at + "\\n")
"""

HOURLY = """
name: hourly
trigger:
  schedule: "0 * * * *"
  timezone: {tz}
tasks:
  - name: mark
    python: tasks/mark.py:mark
    in_process: true
    with: {{at: "{{{{ run.logical_time }}}}"}}
"""

SLEEPY = """
name: sleepy
trigger: {schedule: "0 0 * * *"}
tasks:
  - {name: nap, shell: "sleep 60"}
"""

ON_DEMAND = """
name: manual
tasks:
  - {name: noop, shell: "true"}
"""


@pytest.fixture
def hourly(project: Project) -> Project:
    project.write("tasks/mark.py", MARK_PY)
    project.write("workflows/hourly.yaml", HOURLY.format(tz="UTC"))
    deployed = project.cli("deploy", "workflows/")
    assert deployed.code == 0, deployed.err
    return project


@contextlib.contextmanager
def opened(project: Project) -> Iterator[SqlRunStore]:
    store = SqlRunStore(f"sqlite:///{project.root / '.flowstage' / 'flowstage.db'}")
    try:
        yield store
    finally:
        store.close()


def only_backfill(store: SqlRunStore) -> Backfill:
    listed = store.backfills.list()
    assert len(listed) == 1
    found = store.backfills.get(listed[0].id)
    assert found is not None
    return found


def wait_until(what: str, check: Callable[[], bool], proc: subprocess.Popen[str] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the backfill ended (exit {proc.returncode}) before {what}: {out} {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def reached(project: Project, *, succeeded: int, running: int) -> Callable[[], bool]:
    """The backfill has `succeeded` times done and `running` runs recorded and running."""

    def check() -> bool:
        db = project.root / ".flowstage" / "flowstage.db"
        if not db.exists():
            return False
        with opened(project) as store:
            listed = store.backfills.list()
            if not listed:
                return False
            counts = listed[0].counts
            runs = store.list_runs(workflow=listed[0].workflow, statuses=["running"], limit=1000)
            return counts.get("succeeded", 0) == succeeded and counts.get("running", 0) == running and len(runs) == running

    return check


def side_effects(project: Project) -> Counter[str]:
    """How many times each logical time's task wrote its file."""
    out = project.root / "out"
    found: Counter[str] = Counter()
    for path in out.glob("*") if out.exists() else []:
        found[path.name] = len(path.read_text().splitlines())
    return found


def configure(project: Project, **config: Any) -> None:
    project.write("config.json", json.dumps(config))


def show(project: Project, backfill_id: str) -> dict[str, Any]:
    shown = project.cli("backfill", "show", backfill_id, "--json")
    assert shown.code == 0, shown.err
    data: dict[str, Any] = json.loads(shown.out)
    return data


def test_a_backfill_killed_midway_and_resumed_by_two_drivers_runs_each_logical_time_exactly_once(hourly: Project) -> None:
    configure(hourly, gate_from="2026-01-01T06:00:00+00:00")  # hours 0-5 run, 6-9 start and wait
    proc = hourly.popen("backfill", "hourly", "--from", "2026-01-01T00:00", "--to", "2026-01-02T23:00", "--max-active", "4")
    try:
        wait_until("6 times done and 4 running", reached(hourly, succeeded=6, running=4), proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    with opened(hourly) as store:
        killed = only_backfill(store)
    assert killed.total == 48
    assert killed.status == "running"
    assert killed.counts == {"succeeded": 6, "running": 4, "queued": 38}
    interrupted = {t.run_id for t in killed.times if t.status == "running"}

    (hourly.root / "gate").write_text("open")
    drivers = [hourly.popen("backfill", "resume", killed.id) for _ in range(2)]  # two processes drive it at once
    outcomes = [(d.wait(timeout=120), *d.communicate()) for d in drivers]
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes

    with opened(hourly) as store:
        done = only_backfill(store)
        runs = store.list_runs(workflow="hourly", limit=1000)
    assert done.status == "done"
    assert done.counts == {"succeeded": 48}
    assert len(runs) == 48
    assert len({r.logical_time for r in runs}) == 48
    assert {r.status for r in runs} == {"succeeded"}
    assert {t.run_id for t in done.times} == {r.id for r in runs}
    assert interrupted <= {r.id for r in runs}  # the runs the kill interrupted were resumed, not started again
    effects = side_effects(hourly)
    assert len(effects) == 48
    assert set(effects.values()) == {1}


def test_pause_lets_running_runs_finish_and_starts_no_new_one_until_resume(hourly: Project) -> None:
    configure(hourly, gate_from="2026-01-01T02:00:00+00:00")
    proc = hourly.popen("backfill", "hourly", "--from", "2026-01-01T00:00", "--to", "2026-01-01T07:00", "--max-active", "2")
    try:
        wait_until("2 times done and 2 running", reached(hourly, succeeded=2, running=2), proc)
        with opened(hourly) as store:
            backfill_id = only_backfill(store).id
        paused = hourly.cli("backfill", "pause", backfill_id)
        assert paused.code == 0, paused.err
        assert "paused" in paused.out
        (hourly.root / "gate").write_text("open")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"backfill {backfill_id} paused: 4 queued, 4 succeeded" in out
    shown = show(hourly, backfill_id)
    assert (shown["status"], shown["counts"]) == ("paused", {"queued": 4, "succeeded": 4})
    assert len(side_effects(hourly)) == 4

    resumed = hourly.cli("backfill", "resume", backfill_id)
    assert resumed.code == 0, resumed.err
    assert f"backfill {backfill_id} done: 8 succeeded" in resumed.out
    assert side_effects(hourly) == Counter({name: 1 for name in side_effects(hourly)})
    assert len(side_effects(hourly)) == 8
    listed = hourly.cli("backfill", "list", "--json")
    assert [(b["id"], b["status"], b["total"]) for b in json.loads(listed.out)] == [(backfill_id, "done", 8)]
    resumed_again = hourly.cli("backfill", "resume", backfill_id)
    assert resumed_again.code == 2
    assert "done; nothing to resume" in resumed_again.err


def test_reprocess_failed_runs_again_only_the_failed_times_and_none_skips_what_ran(hourly: Project) -> None:
    configure(hourly, fail_hours=[2, 4])
    first = hourly.cli("backfill", "hourly", "--from", "2026-01-01T00:00", "--to", "2026-01-01T05:00", "--max-active", "3")
    assert first.code == 1, first.err  # a backfill that ended with failed runs
    assert "done: 4 succeeded, 2 failed" in first.out
    assert sorted(side_effects(hourly)) == [f"20260101T0{h}00+0000" for h in (0, 1, 3, 5)]

    (hourly.root / "fixed").write_text("yes")
    again = hourly.cli("backfill", "hourly", "--from", "2026-01-01T00:00", "--to", "2026-01-01T05:00", "--reprocess", "failed")
    assert again.code == 0, again.err
    assert "6 logical time(s) (2 queued, 4 skipped)" in again.out
    effects = side_effects(hourly)
    assert len(effects) == 6
    assert set(effects.values()) == {1}

    nothing = hourly.cli("backfill", "hourly", "--from", "2026-01-01T00:00", "--to", "2026-01-01T05:00", "-q")
    assert nothing.code == 0, nothing.err
    assert "done: 6 skipped" in nothing.out
    everything = hourly.cli("backfill", "hourly", "--from", "2026-01-01T04:00", "--to", "2026-01-01T05:00", "--reprocess", "all")
    assert everything.code == 0, everything.err
    assert side_effects(hourly)["20260101T0400+0000"] == 2
    with opened(hourly) as store:
        assert len(store.list_runs(workflow="hourly", limit=1000)) == 6 + 2 + 2


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # clocks go forward at 02:00: the hour that does not exist fires once, at 03:00 (with 03:00 itself)
        (
            "2026-03-29T00:00",
            "2026-03-29T04:00",
            ["2026-03-29T00:00:00+01:00", "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"],
        ),
        # clocks go back at 03:00: the repeated hour fires once, at its first occurrence
        (
            "2026-10-25T01:00",
            "2026-10-25T03:30",
            ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00"],
        ),
    ],
)
def test_a_dst_crossing_range_in_paris_gets_the_times_the_scheduler_fires(
    project: Project, start: str, end: str, expected: list[str]
) -> None:
    project.write("tasks/mark.py", MARK_PY)
    project.write("workflows/hourly.yaml", HOURLY.format(tz="Europe/Paris"))
    assert project.cli("deploy", "workflows/").code == 0
    done = project.cli("backfill", "hourly", "--from", start, "--to", end, "--max-active", "4")
    assert done.code == 0, done.err
    with opened(project) as store:
        backfill_id = only_backfill(store).id
        ran = sorted(r.logical_time for r in store.list_runs(workflow="hourly", limit=100))
    shown = show(project, backfill_id)
    assert [t["logical_time"] for t in shown["times"]] == expected
    assert {t["status"] for t in shown["times"]} == {"succeeded"}
    assert len(ran) == len(expected)
    with opened(project) as store:
        first = store.backfills.get(backfill_id)
        assert first is not None
        fired = list(itertools.islice(CronSchedule("0 * * * *", "Europe/Paris").after(first.start - 1), len(expected)))
    assert ran == fired


def test_cancel_stops_the_running_runs_and_cancels_the_queued_times(project: Project) -> None:
    project.write("workflows/sleepy.yaml", SLEEPY)
    assert project.cli("deploy", "workflows/").code == 0
    proc = project.popen("backfill", "sleepy", "--from", "2026-01-01", "--to", "2026-01-04", "--max-active", "2")
    try:

        def napping() -> bool:
            if not reached(project, succeeded=0, running=2)():
                return False
            with opened(project) as store:
                runs = store.list_runs(workflow="sleepy", statuses=["running"])
                return all(t.status == "running" for r in runs for t in r.tasks)

        wait_until("2 runs napping", napping, proc)
        with opened(project) as store:
            backfill_id = only_backfill(store).id
        cancelled = project.cli("backfill", "cancel", backfill_id)
        assert cancelled.code == 0, cancelled.err
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    shown = show(project, backfill_id)
    assert (shown["status"], shown["counts"]) == ("cancelled", {"cancelled": 4})
    with opened(project) as store:
        assert {r.status for r in store.list_runs(workflow="sleepy")} == {"cancelled"}
    again = project.cli("backfill", "cancel", backfill_id)
    assert again.code == 2


BAD_INPUT = [
    (["nope", "--from", "2026-01-01", "--to", "2026-01-02"], "no deployed workflow 'nope'"),
    (["manual", "--from", "2026-01-01", "--to", "2026-01-02"], "workflow 'manual' v1 has no schedule"),
    (["hourly", "--from", "yesterday", "--to", "2026-01-02"], "--from 'yesterday': not a date or time"),
    (["hourly", "--from", "2026-01-02", "--to", "2026-01-01"], "--to '2026-01-01' is before --from '2026-01-02'"),
    (["hourly", "--from", "2026-01-01", "--to", "2026-01-02", "--reprocess", "some"], "--reprocess 'some': expected one of"),
    (["hourly", "--from", "2026-01-01", "--to", "2026-01-02", "--max-active", "0"], "--max-active 0"),
    (["hourly", "--from", "2026-01-01T00:10", "--to", "2026-01-01T00:20"], "no logical time of '0 * * * *'"),
    (["resume", "bf-none"], "no backfill 'bf-none'"),
]


def test_bad_input_is_one_clear_line_and_exit_code_2(hourly: Project) -> None:
    hourly.write("workflows/manual.yaml", ON_DEMAND)
    assert hourly.cli("deploy", "workflows/").code == 0
    for args, message in BAD_INPUT:
        result = hourly.cli("backfill", *args)
        assert result.code == 2, (args, result.out, result.err)
        assert message in result.err, args
        assert len(result.err.strip().splitlines()) == 1, args
        assert "Traceback" not in result.err
    with opened(hourly) as store:
        assert store.backfills.list() == []  # nothing was recorded


def test_an_unreachable_store_exits_3(project: Project) -> None:
    env = project.env(FLOWSTAGE_STORE="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    result = project.cli("backfill", "list", env=env)
    assert result.code == 3, (result.out, result.err)
    assert "Traceback" not in result.err


def test_a_claim_whose_driver_died_before_recording_its_run_is_taken_over_under_its_run_id(
    hourly: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowstage.app.backfills import BackfillDriver, create_backfill, mark_running
    from flowstage.settings import load_project

    monkeypatch.chdir(hourly.root)  # the in-process task writes where a runner started in the project would
    settings = load_project(root=hourly.root)
    probe = subprocess.Popen(["true"])  # a process that has ended: its pid is gone from this host
    probe.wait()
    with opened(hourly) as store:
        backfill = create_backfill(settings, store, "hourly", start="2026-01-01T00:00", end="2026-01-01T03:00", max_active=2)
        mark_running(store, backfill.id)
        claimed = store.backfills.claim_next(
            backfill.id, run_id="orphaned-claim", pid=probe.pid, host=os.uname().nodename, at=time.time()
        )
        assert claimed is not None
        done = BackfillDriver(settings, store, backfill.id, poll=0.05).run()
        runs = store.list_runs(workflow="hourly", limit=100)
    assert done.status == "done"
    assert done.counts == {"succeeded": 4}
    assert "orphaned-claim" in {r.id for r in runs}
    assert len(runs) == 4
    assert len({r.logical_time for r in runs}) == 4
    assert set(side_effects(hourly).values()) == {1}


def test_with_orphans_fail_a_resumed_backfill_fails_the_runs_its_killed_driver_left(hourly: Project) -> None:
    hourly.write("flowstage.yaml", "server: {orphans: fail}\n")
    configure(hourly, gate_from="2026-01-01T01:00:00+00:00")
    proc = hourly.popen("backfill", "hourly", "--from", "2026-01-01T00:00", "--to", "2026-01-01T03:00", "--max-active", "2")
    try:
        wait_until("1 time done and 2 running", reached(hourly, succeeded=1, running=2), proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    with opened(hourly) as store:
        backfill_id = only_backfill(store).id
    (hourly.root / "gate").write_text("open")
    resumed = hourly.cli("backfill", "resume", backfill_id, "-q")
    assert resumed.code == 1, (resumed.out, resumed.err)  # ended with failed runs
    assert f"backfill {backfill_id} done: 2 succeeded, 2 failed" in resumed.out
    with opened(hourly) as store:
        runs = store.list_runs(workflow="hourly", limit=100)
    assert Counter(r.status for r in runs) == Counter({"succeeded": 2, "failed": 2})
    assert len(side_effects(hourly)) == 2
