"""Liveness (SPEC §2.5): the driver loop beats; a run whose beat is stale is interrupted, whatever its pid says.

The case that matters for a scheduler or a server: a runner THREAD dies inside a process that
lives on. Its pid is alive, so only the beat can tell; until it does, `max_active_runs: 1`
would block the workflow forever.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowstage.app.liveness import STALE_HEARTBEAT_SECONDS, effective_status, process_started, runner_alive
from flowstage.app.runs import begin_run, open_store, resume_run
from flowstage.model.loader import load_text
from flowstage.settings import load_project
from flowstage.stores.deployments import ActiveRun, Claim, Fire


class _DyingStore:
    """The project's store, except that the runner's heartbeat raises once it was called `after` times."""

    def __init__(self, store: Any, after: int) -> None:
        self._store = store
        self._left = after

    def heartbeat(self, run_id: str, at: float) -> bool:
        self._left -= 1
        if self._left < 0:
            raise RuntimeError("the runner thread dies here")
        return bool(self._store.heartbeat(run_id, at))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


WORKFLOW = """
name: slow
tasks:
  - {name: wait, shell: "sleep 30"}
  - {name: after, shell: "true", after: [wait]}
"""


def test_a_dead_runner_thread_in_a_living_process_shows_interrupted_once_its_beat_is_stale(tmp_path: Path) -> None:
    (tmp_path / "flowstage.yaml").write_text("{}\n")
    project = load_project(root=tmp_path)
    store = open_store(project)
    try:
        workflow = load_text(WORKFLOW, "slow.yaml")
        begun = begin_run(project, workflow, store=_DyingStore(store, after=1))  # type: ignore[arg-type]
        died = threading.Event()

        def drive() -> None:
            try:
                begun.runner.run()
            except RuntimeError:
                died.set()

        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
        assert died.wait(30), "the runner thread should have died on its second beat"
        thread.join(10)
        run = store.get_run(begun.id)
        assert run is not None
        assert run.status == "running"  # nothing ended it: its thread is gone
        assert run.runner_pid == os.getpid()  # ... and its process is alive
        assert run.heartbeat_at is not None
        fresh = run.heartbeat_at + 1.0
        stale = run.heartbeat_at + STALE_HEARTBEAT_SECONDS + 1.0
        assert runner_alive(run, fresh)
        assert effective_status(run, fresh) == "running"
        assert not runner_alive(run, stale)
        assert effective_status(run, stale) == "interrupted"
    finally:
        store.close()


def test_a_stale_beat_frees_max_active_runs_and_the_run_can_be_resumed(tmp_path: Path) -> None:
    (tmp_path / "flowstage.yaml").write_text("{}\n")
    project = load_project(root=tmp_path)
    store = open_store(project)
    try:
        workflow = load_text("name: quick\ntasks: [{name: a, shell: 'true'}]\n", "quick.yaml")
        begun = begin_run(project, workflow, store=store)  # recorded, never driven: like a thread that died at once
        now = time.time()
        fire = Fire(workflow="quick", logical_time=now, kind="schedule", version=None, run_id="next-run", fired_at=now)
        text = "name: quick\ntasks: [{name: a, shell: 'true'}]\n"
        store.deployments.deploy(name="quick", definition=workflow.to_dict(), text=text, files={}, source=None, at=now, by=None)

        def alive_now(run: ActiveRun) -> bool:
            return runner_alive(run, now)

        def alive_later(run: ActiveRun) -> bool:
            return runner_alive(run, now + STALE_HEARTBEAT_SECONDS + 5)

        active = ActiveRun(begun.id, "running", os.getpid(), socket.gethostname(), process_started(), now)
        assert alive_now(active)
        assert not alive_later(active)
        assert store.deployments.claim_fire(fire, max_active=1, alive=alive_now) is Claim.BUSY
        assert store.deployments.claim_fire(fire, max_active=1, alive=alive_later) is Claim.CLAIMED

        # the stale run is resumable, and resuming it ends it
        store.heartbeat(begun.id, now - STALE_HEARTBEAT_SECONDS - 5)
        ended = resume_run(project, begun.id, store=store)
        assert ended.status == "succeeded"
    finally:
        store.close()


@pytest.mark.parametrize("gone", ["pid", "recycled"])
def test_a_runner_whose_process_is_gone_is_interrupted_at_once(gone: str) -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    pid = child.pid if gone == "pid" else os.getpid()
    started = process_started() - (0 if gone == "pid" else 3600)  # another process's start time: a recycled pid
    active = ActiveRun("r", "running", pid, socket.gethostname(), started, time.time())
    assert not runner_alive(active)
    assert effective_status(active) == "interrupted"
