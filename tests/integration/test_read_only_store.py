"""A run store whose folder cannot be written (a read-only mount, a copy shared read-only): the
history is read as usual, and starting a run is a clear infrastructure error (exit 3) — never an
internal error about a lock file. A store whose files become read-only while a run runs stops the
runner the same way (exit 3, its task killed, the run left interrupted to be resumed), never with
the SIGBUS of SQLite's memory-mapped index.

The folder is made immutable with `chattr +i`, which holds for root too (the suite may run as root,
for whom permission bits do not stop a write).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import Project


@pytest.fixture
def frozen(project: Project) -> Iterator[Path]:
    """The project's `.flowstage` after one run, made unwritable for the test's duration."""
    project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'echo hello'}\n")
    assert project.cli("run", "one", "-q").code == 0
    state = project.root / ".flowstage"
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr (e2fsprogs) is not installed: no way to make a folder unwritable for root")
    made = subprocess.run([chattr, "+i", str(state)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"this file system cannot make a folder immutable: {made.stderr.strip()}")
    try:
        yield state
    finally:
        subprocess.run([chattr, "-i", str(state)], check=True)


def test_a_store_in_a_folder_that_cannot_be_written_is_read_and_refuses_new_runs(project: Project, frozen: Path) -> None:
    before = sorted(p.name for p in frozen.iterdir())

    listed = project.cli("runs", "--json")
    started = project.cli("run", "one", "-q")

    assert listed.code == 0, listed.err
    (run,) = json.loads(listed.out)
    assert run["status"] == "succeeded"
    shown = project.cli("show", run["id"])
    assert shown.code == 0, shown.err
    logs = project.cli("logs", run["id"])
    assert "hello" in logs.out
    assert started.code == 3, started
    assert "read-only: its folder cannot be written" in started.err
    assert "internal error" not in started.err
    assert "Traceback" not in started.err
    assert len(started.err.strip().splitlines()) == 1
    assert sorted(p.name for p in frozen.iterdir()) == before  # nothing written beside the store


def _chattr(flag: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, text=True, check=False)


def _running_pid(project: Project, runner: subprocess.Popen[str]) -> tuple[str, int]:
    """The run's id and its task's process once the run records the task running with a pid."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            out, err = runner.communicate()
            raise AssertionError(f"the run ended (exit {runner.returncode}) before its task ran: {out} {err}")
        listed = project.cli("runs", "--json")
        runs = json.loads(listed.out) if listed.code == 0 else []
        if runs:
            shown = json.loads(project.cli("show", runs[0]["id"], "--json").out)
            (task,) = shown["tasks"]
            attempts = task["attempts"]
            if task["status"] == "running" and attempts and attempts[-1].get("pid"):
                return runs[0]["id"], int(attempts[-1]["pid"])
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the task to run")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_store_made_read_only_while_a_run_runs_stops_the_runner_cleanly_and_the_run_resumes(
    project: Project, tmp_path: Path
) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is not installed: no way to make a file unwritable for root")
    go = tmp_path / "go"  # made before the resume: the task's second attempt ends at once
    project.write(
        "workflows/slow.yaml",
        f"name: slow\ntasks:\n  - name: nap\n    shell: 'if [ -e {go} ]; then echo awake; else exec sleep 30; fi'\n",
    )
    state = project.root / ".flowstage"
    files = [state / "flowstage.db", state / "flowstage.db-wal", state / "flowstage.db-shm"]
    runner = project.popen("run", "slow", "-q")
    try:
        run_id, pid = _running_pid(project, runner)
        assert all(f.exists() for f in files), sorted(p.name for p in state.iterdir())
        made = _chattr("+i", *files)
        if made.returncode != 0:
            pytest.skip(f"this file system cannot make a file immutable: {made.stderr.strip()}")
        try:
            out, err = runner.communicate(timeout=60)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            left = _alive(pid)
        finally:
            _chattr("-i", *files)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()

    assert runner.returncode == 3, (runner.returncode, out, err)
    assert "became read-only (flowstage.db, flowstage.db-wal and flowstage.db-shm cannot be written)" in err
    assert "can be resumed when the store is writable again" in err
    assert "Traceback" not in err
    assert "Fatal Python error" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not left, f"the task's process {pid} outlived its runner"
    go.touch()
    resumed = project.cli("resume", run_id, "-q")
    assert resumed.code == 0, resumed
    shown = json.loads(project.cli("show", run_id, "--json").out)
    assert shown["status"] == "succeeded"
    assert "awake" in project.cli("logs", run_id).out
