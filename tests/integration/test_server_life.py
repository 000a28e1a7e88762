"""`flowstage server` over its life: the scheduler inside it starts runs detached, a restarted
server resumes (or fails) the runs a dead runner left interrupted, and `/metrics` counts runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowstage.deploy import deploy
from flowstage.scheduler import Scheduler
from flowstage.settings import load_project
from flowstage.stores.sql.store import SqlRunStore
from tests.conftest import FLOWSTAGE, Project
from tests.integration.test_api import HELLO, _answers, _free_port, serve, start, wait_status
from tests.integration.test_api import deploy as post_workflow
from tests.records import wait_until

T0 = 1_777_593_600.0  # 2026-05-01T00:00:00Z
MINUTE = 60.0

EVERY_MINUTE = """
name: minutely
trigger: {schedule: "* * * * *", variables: {who: scheduler}}
tasks:
  - {name: greet, shell: "echo hello {{ var.who }} > greeted.txt"}
"""

GATED = """
name: gated
tasks:
  - {name: started, shell: "echo started > started.txt"}
  - {name: gate, wait_for: {file: go.txt}, poke: 0.2s, after: [started], timeout: 120s}
"""


class ManualClock:
    """A clock the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def store(project: Project) -> Iterator[SqlRunStore]:
    opened = SqlRunStore(f"sqlite:///{project.root}/.flowstage/flowstage.db")
    yield opened
    opened.close()


def test_a_detached_scheduler_records_the_fire_and_its_run_lives_in_a_runner_process_of_its_own(
    project: Project, store: SqlRunStore
) -> None:
    project.write("workflows/minutely.yaml", EVERY_MINUTE)
    loaded = load_project(root=project.root)
    deploy(loaded, [project.root / "workflows"], store=store, at=T0)
    clock = ManualClock(T0 + MINUTE + 1)
    scheduler = Scheduler(loaded, store=store, clock=clock, detached=True, report=lambda _line: None)
    started = scheduler.tick()
    assert [(s.workflow, s.logical_time) for s in started] == [("minutely", T0 + MINUTE)]
    assert scheduler.wait_idle(90)
    assert scheduler.stats.started == 1
    assert scheduler.stats.failed == 0
    assert (scheduler.stats.lag_count, scheduler.stats.lag_last) == (1, 1.0)  # fired a second after its due time
    run = store.get_run(started[0].run_id, with_tasks=False)
    assert run is not None, "the runner process recorded the run under the fire's run id"
    assert run.runner_pid is not None
    assert run.runner_pid != os.getpid()
    assert run.logical_time == T0 + MINUTE
    assert run.version == 1
    assert run.variables["who"] == "scheduler"

    def ended() -> str | None:
        found = store.get_run(run.id, with_tasks=False)
        return found.status if found is not None and found.status != "running" else None

    assert wait_until(ended, 60, "the scheduled run to end") == "succeeded"
    assert (project.root / "greeted.txt").read_text().strip() == "hello scheduler"
    # the due time is fired once: the next pass at the same time starts nothing
    assert scheduler.tick() == []
    assert scheduler.shutdown(grace=5) == []


FAST_MINUTES = """
name: minutely
trigger: {schedule: "* * * * *", max_active_runs: 20}
tasks:
  - {name: greet, shell: "echo hello"}
"""


@contextmanager
def serve_with_clock(project: Project, log: Path, *clock: str) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    """`flowstage server` with its scheduler's clock shifted or sped up (hidden options), until SIGTERM."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*FLOWSTAGE, "server", "--port", str(port), *clock],
            cwd=project.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=project.env(),
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=90) as client:
            wait_until(lambda: _answers(client, proc, log), 60, "the server to answer /health")
            yield client, proc
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("the server did not stop on SIGTERM within 30 s")
    assert code in (0, -signal.SIGTERM), log.read_text(errors="replace")


def test_two_servers_on_one_store_fire_each_due_time_once_and_their_runs_outlive_them(
    project: Project, store: SqlRunStore, tmp_path: Path
) -> None:
    project.write("workflows/minutely.yaml", FAST_MINUTES)
    assert project.cli("deploy", "workflows").code == 0
    clock = ("--clock-origin", repr(time.time()), "--clock-rate", "60")  # a minute per second
    pids: set[int] = set()
    with ExitStack() as servers:
        for i in range(2):
            _client, proc = servers.enter_context(serve_with_clock(project, tmp_path / f"server{i}.log", *clock))
            pids.add(proc.pid)
        wait_until(lambda: len(store.list_runs(workflow="minutely", limit=100)) >= 4, 60, "four scheduled runs")
    runs = store.list_runs(workflow="minutely", limit=100)
    twice = [at for at, n in Counter(r.logical_time for r in runs).items() if n > 1]
    assert twice == [], "a due time started more than one run"
    assert all(r.logical_time % 60 == 0 for r in runs)
    assert not {r.runner_pid for r in runs} & pids, "the runs are driven by runner processes of their own"
    # both servers are stopped: their runs end all the same
    for run in runs:
        wait_until(
            lambda run_id=run.id: (found := store.get_run(run_id, with_tasks=False)) is not None and found.status != "running",
            60,
            f"run {run.id} to end",
        )
        ended = store.get_run(run.id, with_tasks=False)
        assert ended is not None
        assert ended.status == "succeeded"


def _show(project: Project, run_id: str) -> dict[str, Any]:
    import json

    result = project.cli("show", run_id, "--json")
    assert result.code == 0, result.err
    record: dict[str, Any] = json.loads(result.out)
    return record


def _gate_running(project: Project, run_id: str) -> bool:
    tasks = {t["name"]: t for t in _show(project, run_id)["tasks"]}
    return bool(tasks["gate"]["status"] == "running")


def interrupted_run(project: Project) -> str:
    """`flowstage run gated`, SIGKILLed while its gate waits: the id of the run it leaves interrupted."""
    project.write("workflows/gated.yaml", GATED)
    proc = project.popen("run", "gated")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert re.fullmatch(r"run \S+ started", first), first
        run_id = first.split()[1]
        wait_until(lambda: _gate_running(project, run_id), 30, "the gate to wait")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert _show(project, run_id)["status"] == "interrupted"
    return run_id


def test_a_starting_server_resumes_an_interrupted_run_in_a_runner_of_its_own(project: Project, tmp_path: Path) -> None:
    run_id = interrupted_run(project)
    killed_pid = _show(project, run_id).get("runner_pid")
    with serve(project, tmp_path / "server.log") as server:

        def resumed() -> dict[str, Any] | None:
            record: dict[str, Any] = server.client.get(f"/runs/{run_id}").json()
            return record if record["status"] == "running" and record.get("resumes") else None

        wait_until(resumed, 60, f"run {run_id} to be resumed")
        (project.root / "go.txt").write_text("go\n")
        wait_status(server.client, run_id, "succeeded")
        assert server.proc.pid != killed_pid
    assert f"run {run_id} (gated) was interrupted: resumed" in server.output()


def test_a_server_set_to_fail_orphans_fails_an_interrupted_run_and_counts_it(project: Project, tmp_path: Path) -> None:
    run_id = interrupted_run(project)
    project.write("flowstage.yaml", "server: {orphans: fail}\n")
    with serve(project, tmp_path / "server.log") as server:
        record = wait_status(server.client, run_id, "failed")
        assert not (project.root / "go.txt").exists()
        assert record["status"] == "failed"
        text = server.client.get("/metrics").text
        assert 'flowstage_runs{status="failed",workflow="gated"} 1.0' in text
        assert 'status="interrupted"' not in text
    assert f"run {run_id} (gated) was interrupted: failed" in server.output()


def test_metrics_count_runs_by_workflow_and_status_in_the_prometheus_text_format(project: Project, tmp_path: Path) -> None:
    project.write("flowstage.yaml", 'notifiers:\n  ops: {command: "true"}\n')
    with serve(project, tmp_path / "server.log") as server:
        client = server.client
        assert post_workflow(client, HELLO).status_code == 201
        for _ in range(2):
            wait_status(client, start(client, "hello"), "succeeded")
        failing = "name: failing\nalerts:\n  - {on: failed, notify: [ops]}\ntasks:\n  - {name: boom, shell: exit 3}\n"
        assert post_workflow(client, failing).status_code == 201
        wait_status(client, start(client, "failing"), "failed")

        answer = client.get("/metrics")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain")
        text = answer.text
        samples = dict(re.findall(r"^(flowstage_runs\{[^}]*\}) (\S+)$", text, flags=re.MULTILINE))
        assert samples == {
            'flowstage_runs{status="succeeded",workflow="hello"}': "2.0",
            'flowstage_runs{status="failed",workflow="failing"}': "1.0",
        }
        assert "# TYPE flowstage_runs gauge" in text
        assert re.search(r"^flowstage_scheduler_starts_total 0\.0$", text, flags=re.MULTILINE), text
        assert 'flowstage_scheduler_fires_total{outcome="taken"} 0.0' in text
        uptime = re.search(r"^flowstage_server_uptime_seconds (\S+)$", text, flags=re.MULTILINE)
        assert uptime is not None
        assert float(uptime.group(1)) > 0
        assert "flowstage_scheduler_lag_seconds_count 0.0" in text
        # what the event log told this server: every event, the attempts, the durations
        wait_until(
            lambda: 'flowstage_run_duration_seconds_count{status="failed",workflow="failing"} 1.0' in client.get("/metrics").text,
            30,
            "the failed run to be counted",
        )
        text = client.get("/metrics").text
        assert 'flowstage_run_duration_seconds_count{status="succeeded",workflow="hello"} 2.0' in text
        assert 'flowstage_task_attempts_total{workflow="hello"} 4.0' in text  # greet and shout, twice
        assert 'flowstage_task_duration_seconds_count{status="failed",workflow="failing"} 1.0' in text
        assert 'flowstage_alerts_total{notifier="ops",workflow="failing"} 1.0' in text
        events = re.search(r"^flowstage_events_total (\S+)$", text, flags=re.MULTILINE)
        assert events is not None
        assert float(events.group(1)) >= 12
