"""The Dask executor on a real `LocalCluster` (worker processes on 127.0.0.1), driven through the CLI.

Attempts of python and shell tasks run on the workers, SQL stays on the runner; copies spread
across workers; a worker killed mid-attempt ends that attempt `worker_lost` and it is retried on
another worker without using the task's `retries:`; cancel and timeout stop the remote child; an
old attempt's late output and answer never reach the record. Tasks that must hold still wait for
files the test writes, so nothing races the clock.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import CI, Project
from tests.records import record_of, tasks_of, wait_until

try:
    import distributed
except ImportError:  # pragma: no cover - the dev install has it
    distributed = None  # type: ignore[assignment]

pytestmark = pytest.mark.timeout(240)

TASKS_PY = """
import os
import time


def wait_for(path, seconds=120):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never came")
        time.sleep(0.02)


def mark(path, text):
    with open(path + ".tmp", "w") as fh:
        fh.write(str(text))
    os.replace(path + ".tmp", path)


def where(instance, instances):
    # every copy waits for all the others: on one single-threaded worker they could never meet
    mark(f"ready-{instance}", os.getpid())
    for other in range(instances):
        wait_for(f"ready-{other}", 60)
    return os.environ["FLOWSTAGE_DASK_WORKER"]


def lost_once():
    if os.environ["FLOWSTAGE_ATTEMPT"] == "1":
        mark("child1.pid", os.getpid())
        mark("worker1.pid", os.environ["FLOWSTAGE_DASK_WORKER_PID"])
        wait_for("never", 200)
    return os.environ["FLOWSTAGE_DASK_WORKER"]


def slow(name):
    mark(f"{name}.pid", os.getpid())
    wait_for("never", 200)


def late():
    if os.environ["FLOWSTAGE_ATTEMPT"] == "1":
        mark("worker1.pid", os.environ["FLOWSTAGE_DASK_WORKER_PID"])
        wait_for("go1")
        print("late line of attempt 1", flush=True)
        mark("late1.done", "old")
        return "old"
    wait_for("go2")
    return "new"
"""


def _needs_dask() -> None:
    if distributed is None:
        message = "distributed is not installed (pip install 'flowstage[dask]')"
        if CI:
            pytest.fail(message + ", and CI=true: the Dask tests must run")
        pytest.skip(message)


def _start_cluster() -> Any:
    _needs_dask()
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",  # HTTP servers (metrics) on free loopback ports, never 0.0.0.0
        worker_dashboard_address="127.0.0.1:0",
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A cluster the tests of this module share (none of them harms its workers)."""
    found = _start_cluster()
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def own_cluster() -> Iterator[Any]:
    """A cluster for one test that kills or stops a worker."""
    found = _start_cluster()
    try:
        yield found
    finally:
        found.close()


def url_of(cluster: Any) -> str:
    return "dask://" + str(cluster.scheduler_address).removeprefix("tcp://")


def _pid_in(project: Project, name: str) -> int:
    path = project.root / name
    wait_until(path.exists, 120, f"{name} to be written")
    return int(path.read_text())


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _run_id(project: Project) -> str:
    def newest() -> str | None:
        result = project.cli("runs", "--json")
        runs = json.loads(result.out) if result.code == 0 else []
        return runs[0]["id"] if runs else None

    found: str = wait_until(newest, 60, "the run to be recorded")
    return found


def _attempts(project: Project, run_id: str, task: str) -> list[dict[str, Any]]:
    result = project.cli("show", run_id, "--json")
    return list(tasks_of(record_of(result))[task]["attempts"]) if result.code == 0 else []


def test_attempts_run_on_workers_sql_stays_on_the_runner_and_copies_spread(project: Project, cluster: Any) -> None:
    project.write("flowstage.yaml", f"executor: {url_of(cluster)}\n")
    project.write("tasks/steps.py", TASKS_PY)
    project.write(
        "workflows/spread.yaml",
        """
        name: spread
        stages:
          - name: one
            tasks:
              - {name: answer, sql: "SELECT 42", save: answer}
              - name: copies
                python: tasks/steps.py:where
                instances: 2
                with: {instance: "{{ task.instance }}", instances: "{{ task.instances }}"}
                save: workers
              - {name: hello, shell: 'echo "hello from $FLOWSTAGE_DASK_WORKER"'}
              - name: totals
                dataflow:
                  name: totals
                  sources: {orders: {file: data/orders.csv}}
                  steps:
                    - from: orders
                    - aggregate: {by: [country], metrics: {amount: sum(amount)}}
                    - sort: [country]
                  sink: {file: out/totals.parquet}
          - name: two
            tasks:
              - {name: after, shell: "echo answer {{ var.answer }}"}
        """,
    )
    project.write("data/orders.csv", "country,amount\nFR,1\nDE,2\nFR,3\n")
    result = project.cli("run", "spread", "--json")
    assert result.code == 0, result.err
    record = record_of(result)
    tasks = tasks_of(record)
    workers = tasks["copies"]["saved"]["workers"]
    assert len(set(workers)) == 2, f"both copies ran on one worker: {workers}"
    assert all(w.startswith("tcp://127.0.0.1:") for w in workers)
    logs = project.cli("logs", record["id"]).out
    on_workers = [line for line in logs.splitlines() if "attempt runs on Dask worker tcp://127.0.0.1:" in line]
    assert not [line for line in on_workers if "answer#" in line], "the SQL task was shipped to a worker"
    assert [line for line in on_workers if "hello#" in line]
    assert [line for line in on_workers if "totals#" in line], "the dataflow stayed on the runner"
    assert tasks["totals"]["metrics"]["rows_written"] == 2
    assert (project.root / "out/totals.parquet").is_file()
    assert [line for line in on_workers if "after#" in line]
    assert "hello from tcp://127.0.0.1:" in logs
    assert "answer 42" in logs


def test_a_worker_killed_mid_attempt_is_retried_on_another_and_the_run_succeeds(project: Project, own_cluster: Any) -> None:
    project.write("tasks/steps.py", TASKS_PY)
    project.write(
        "workflows/lost.yaml",
        """
        name: lost
        tasks:
          - {name: work, python: tasks/steps.py:lost_once, retries: 0, save: worker}
        """,
    )
    proc = project.popen("run", "lost", "--json", "--executor", url_of(own_cluster))
    worker_pid = _pid_in(project, "worker1.pid")
    child_pid = _pid_in(project, "child1.pid")
    os.kill(worker_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    task = tasks_of(json.loads(out))["work"]
    assert task["status"] == "succeeded"
    assert [a["status"] for a in task["attempts"]] == ["worker_lost", "succeeded"]
    assert "worker_lost" in task["attempts"][0]["error"]
    wait_until(lambda: _gone(child_pid), 30, "the lost attempt's process to die with its worker")


def test_cancel_and_timeout_stop_the_remote_child(project: Project, cluster: Any) -> None:
    project.write("tasks/steps.py", TASKS_PY)
    project.write(
        "workflows/held.yaml",
        """
        name: held
        tasks:
          - {name: slow, python: tasks/steps.py:slow, with: {name: held}}
        """,
    )
    project.write(
        "workflows/bounded.yaml",
        """
        name: bounded
        tasks:
          - {name: slow, python: tasks/steps.py:slow, with: {name: bounded}, timeout: 2s}
        """,
    )
    env = project.env(FLOWSTAGE_EXECUTOR=url_of(cluster))  # the environment names the executor
    proc = project.popen("run", "held", "--json", env=env)
    pid = _pid_in(project, "held.pid")
    run_id = _run_id(project)
    assert project.cli("cancel", run_id).code == 0
    out, err = proc.communicate(timeout=120)
    assert json.loads(out)["status"] == "cancelled", err
    wait_until(lambda: _gone(pid), 30, "the cancelled attempt's process on the worker to be killed")

    # the runner killed: its client is gone, the cluster releases the attempt, the worker kills it
    (project.root / "held.pid").unlink()
    proc = project.popen("run", "held", "--json", env=env)
    pid = _pid_in(project, "held.pid")
    proc.kill()
    proc.communicate(timeout=30)
    wait_until(lambda: _gone(pid), 60, "the attempt of a killed runner to be killed on the worker")

    result = project.cli("run", "bounded", "--json", env=env)
    assert result.code == 1, result.err
    task = tasks_of(record_of(result))["slow"]
    assert task["status"] == "timed_out"
    wait_until(lambda: _gone(int((project.root / "bounded.pid").read_text())), 30, "the timed-out process to be killed")


def test_an_old_attempts_late_answer_and_output_are_ignored(project: Project, own_cluster: Any) -> None:
    project.write("tasks/steps.py", TASKS_PY)
    project.write(
        "workflows/late.yaml",
        """
        name: late
        tasks:
          - {name: work, python: tasks/steps.py:late, timeout: 3s, retries: 1, retry_delay: 0s, save: answer}
        """,
    )
    proc = project.popen("run", "late", "--json", "--executor", url_of(own_cluster))
    worker_pid = _pid_in(project, "worker1.pid")
    # a stopped worker cannot act on the kill: attempt 1 goes on, and its answer comes late
    os.kill(worker_pid, signal.SIGSTOP)
    try:
        run_id = _run_id(project)
        wait_until(
            lambda: [a["status"] for a in _attempts(project, run_id, "work")][:1] == ["timed_out"],
            60,
            "attempt 1 to time out",
        )
        (project.root / "go1").write_text("")
        wait_until((project.root / "late1.done").exists, 60, "attempt 1 to finish late")
    finally:
        os.kill(worker_pid, signal.SIGCONT)
    (project.root / "go2").write_text("")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    record = json.loads(out)
    task = tasks_of(record)["work"]
    assert task["saved"] == {"answer": "new"}
    assert [a["status"] for a in task["attempts"]] == ["timed_out", "succeeded"]
    assert "late line of attempt 1" not in project.cli("logs", record["id"]).out


def test_an_unreachable_scheduler_is_exit_3_and_a_malformed_url_exit_2(project: Project, tmp_path: Path) -> None:
    _needs_dask()
    project.write("workflows/one.yaml", "name: one\ntasks: [{name: a, shell: 'true'}]\n")
    result = project.cli("run", "one", "--executor", "dask://127.0.0.1:9")
    assert result.code == 3
    assert "the Dask scheduler at dask://127.0.0.1:9 is unreachable" in result.err
    assert "Traceback" not in result.err
    assert project.cli("runs", "--json").out.strip() == "[]", "a run was recorded before its executor existed"
    result = project.cli("run", "one", "--executor", "dask://127.0.0.1:port")
    assert result.code == 2
    assert "expected dask://HOST:PORT" in result.err
