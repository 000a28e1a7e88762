"""A run store whose folder cannot be written (a read-only mount, a copy shared read-only): the
history is read as usual, and starting a run is a clear infrastructure error (exit 3) — never an
internal error about a lock file.

The folder is made immutable with `chattr +i`, which holds for root too (the suite may run as root,
for whom permission bits do not stop a write).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

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
