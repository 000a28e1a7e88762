"""Detached runs: a runner process of its own that outlives its caller (the server starts runs this way)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

from tests.conftest import Project
from tests.records import tasks_of, wait_until

WORKFLOW = """
name: background
tasks:
  - {name: first, shell: "echo started > started.txt"}
  - {name: gate, wait_for: {file: go.txt}, poke: 0.2s, after: [first], timeout: 60s}
  - {name: last, shell: "echo done > done.txt", after: [gate]}
"""


def show(project: Project, run_id: str) -> dict[str, Any]:
    result = project.cli("show", run_id, "--json")
    assert result.code == 0, result.err
    record: dict[str, Any] = json.loads(result.out)
    return record


def test_run_detach_returns_at_once_and_the_run_goes_on_in_its_own_process(project: Project) -> None:
    project.write("workflows/background.yaml", WORKFLOW)
    result = project.cli("run", "background", "--detach", "--json")
    assert result.code == 0, result.err
    run_id = json.loads(result.out)["id"]
    # the command returned while the run waits for go.txt
    wait_until(lambda: (project.root / "started.txt").exists(), 30, "the first task")
    record = show(project, run_id)
    assert record["status"] == "running"
    (project.root / "go.txt").write_text("go")
    wait_until(lambda: show(project, run_id)["status"] == "succeeded", 60, "the detached run to end")
    assert (project.root / "done.txt").read_text().strip() == "done"
    assert (project.root / ".flowstage" / "runners" / f"{run_id}.log").exists()


def test_a_detached_run_outlives_its_caller_killed_with_its_whole_process_group(project: Project) -> None:
    project.write("workflows/background.yaml", WORKFLOW)
    caller = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from flowstage.app.detached import detach_run
        from flowstage.settings import load_project
        run_id = detach_run(load_project(root=Path({str(project.root)!r})), "background")
        print(run_id, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", caller], stdout=subprocess.PIPE, text=True, env=project.env(), start_new_session=True
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        assert run_id, "the caller printed no run id"
        wait_until(lambda: (project.root / "started.txt").exists(), 30, "the first task")
        os.killpg(proc.pid, signal.SIGKILL)  # the caller and everything in its group
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    (project.root / "go.txt").write_text("go")
    wait_until(lambda: show(project, run_id)["status"] == "succeeded", 60, "the run to end without its caller")
    assert tasks_of(show(project, run_id))["last"]["status"] == "succeeded"


def test_resume_detach_resumes_in_a_runner_process_of_its_own(project: Project) -> None:
    project.write(
        "workflows/flaky.yaml",
        """
        name: flaky
        tasks:
          - {name: needs_file, shell: "test -f ok.txt"}
        """,
    )
    failed = project.cli("run", "flaky", "--json")
    assert failed.code == 1
    run_id = json.loads(failed.out)["id"]
    (project.root / "ok.txt").write_text("ok")
    result = project.cli("resume", run_id, "--detach")
    assert result.code == 0, result.err
    assert run_id in result.out
    wait_until(lambda: show(project, run_id)["status"] == "succeeded", 60, "the detached resume to end")


def test_a_detached_run_of_an_unknown_workflow_fails_with_a_clear_message(project: Project) -> None:
    result = project.cli("run", "nope", "--detach")
    assert result.code == 2
    assert "no workflow named 'nope'" in result.err
    assert "Traceback" not in result.err
