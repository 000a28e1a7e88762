"""The runs a server started outlive it: killed (SIGKILL) or stopped (SIGTERM, exit status 0),
their runner processes drive them to their end, and a restarted server shows them final."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest

from flowstage.stores.sql.store import SqlRunStore
from tests.conftest import FLOWSTAGE, Project
from tests.integration.test_api import _answers, _free_port, deploy, serve, start
from tests.records import wait_until

GATED = """
name: gated
tasks:
  - {name: gate, wait_for: {file: go.txt}, poke: 0.2s, timeout: 120s}
"""


@contextmanager
def server_process(project: Project, log: Path) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    """`flowstage server` on a free port, answering; the test ends it (the process is killed if it is left)."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*FLOWSTAGE, "server", "--port", str(port)], cwd=project.root, stdout=out, stderr=subprocess.STDOUT, env=project.env()
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30) as client:
            wait_until(lambda: _answers(client, proc, log), 60, "the server to answer /health")
            yield client, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _gates_waiting(client: httpx.Client, run_ids: list[str]) -> bool:
    for run_id in run_ids:
        record = client.get(f"/runs/{run_id}").json()
        if record["status"] != "running" or record["tasks"][0]["status"] != "running":
            return False
    return True


def _statuses(project: Project, run_ids: list[str]) -> dict[str, str]:
    with closing(SqlRunStore(f"sqlite:///{project.root}/.flowstage/flowstage.db")) as store:
        found = {run_id: store.get_run(run_id, with_tasks=False) for run_id in run_ids}
    return {run_id: run.status if run is not None else "missing" for run_id, run in found.items()}


def _all_end(project: Project, run_ids: list[str]) -> dict[str, str]:
    def ended() -> dict[str, str] | None:
        statuses = _statuses(project, run_ids)
        return statuses if "running" not in statuses.values() else None

    found: dict[str, str] = wait_until(ended, 60, "the runs to end", every=0.2)
    return found


def test_runs_started_by_a_killed_server_end_in_their_runners_and_a_restarted_server_shows_them(
    project: Project, tmp_path: Path
) -> None:
    with server_process(project, tmp_path / "killed.log") as (client, proc):
        assert deploy(client, GATED).status_code == 201
        run_ids = [start(client, "gated") for _ in range(3)]
        wait_until(lambda: _gates_waiting(client, run_ids), 60, "the three gates to wait")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    assert _statuses(project, run_ids) == dict.fromkeys(run_ids, "running")
    (project.root / "go.txt").write_text("go\n")
    assert _all_end(project, run_ids) == dict.fromkeys(run_ids, "succeeded")
    with serve(project, tmp_path / "restarted.log") as server:
        for run_id in run_ids:
            record = server.client.get(f"/runs/{run_id}").json()
            assert record["status"] == "succeeded", record
            assert record["graph"]["nodes"][0]["status"] == "succeeded"


def test_a_server_stopped_by_sigterm_exits_0_and_its_runs_go_on(project: Project, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with server_process(project, log) as (client, proc):
        assert deploy(client, GATED).status_code == 201
        run_ids = [start(client, "gated")]
        wait_until(lambda: _gates_waiting(client, run_ids), 60, "the gate to wait")
        proc.terminate()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the server did not stop on SIGTERM within 20 s")
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
    assert _statuses(project, run_ids) == dict.fromkeys(run_ids, "running")
    (project.root / "go.txt").write_text("go\n")
    assert _all_end(project, run_ids) == dict.fromkeys(run_ids, "succeeded")
