"""What `flowstage run` tells while it runs: the deployed version it runs (and when the file differs
from it), and on a terminal a live table of every task, pending ones and later stages included."""

from __future__ import annotations

import json

from rich.console import Console

from flowstage.cli.run import LiveProgress
from flowstage.engine.ports import Event, TaskRun
from flowstage.model.loader import load_text
from tests.conftest import Project


def test_a_run_by_name_says_which_deployed_version_runs_and_when_the_file_differs(project: Project) -> None:
    path = project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    assert project.cli("deploy", "workflows/one.yaml").code == 0
    same = project.cli("run", "one")
    assert same.code == 0, same.err
    assert "note: running one v1, the deployed version\n" in same.err
    assert "differs" not in same.err
    path.write_text("name: one\ntasks:\n  - {name: b, shell: 'true'}\n")
    changed = project.cli("run", "one", "--json")
    assert changed.code == 0, changed.err
    assert [t["name"] for t in json.loads(changed.out)["tasks"]] == ["a"], "the deployed version ran"
    assert (
        "workflows/one.yaml differs from it (flowstage deploy workflows/one.yaml makes it the version that runs)" in changed.err
    )
    quiet = project.cli("run", "one", "-q")
    assert "differs from it" in quiet.err, "a quiet run still warns"
    path.write_text("name: one\ntasks:\n  - {name: b, shell: 'true', after: [nope]}\n")
    broken = project.cli("run", "one", "-q")
    assert broken.code == 0, broken.err
    assert "workflows/one.yaml differs from it" in broken.err
    assert project.cli("run", "workflows/one.yaml").code == 2, "the file itself is still checked when run as a file"


def test_a_file_run_says_nothing_about_versions(project: Project) -> None:
    project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    result = project.cli("run", "workflows/one.yaml", "-q")
    assert result.code == 0
    assert "note:" not in result.err


WORKFLOW = """
name: three
stages:
  - name: extract
    tasks:
      - {name: e1, shell: 'true'}
      - {name: e2, shell: 'true'}
  - name: load
    tasks:
      - {name: l1, shell: 'true'}
  - name: report
    tasks:
      - {name: r1, shell: 'true', retries: 2}
"""


def rendered(progress: LiveProgress) -> str:
    console = Console(record=True, width=140, color_system=None)
    console.print(progress.render())
    return console.export_text()


def test_the_live_view_lists_pending_tasks_of_later_stages_with_a_done_count_and_attempts() -> None:
    progress = LiveProgress(load_text(WORKFLOW))
    progress.run_id = "r1"
    text = rendered(progress)
    assert "0/4 done" in text
    for stage, name in (("extract", "e1"), ("load", "l1"), ("report", "r1")):
        assert any(stage in line and name in line and "pending" in line for line in text.splitlines()), text
    progress(
        Event("r1", 1.0, "task_status", "e1", "succeeded", {}),
        TaskRun(name="e1", stage="extract", status="succeeded", attempts=[{"n": 1}], started_at=1.0, ended_at=2.0),
    )
    progress(
        Event("r1", 1.0, "task_status", "r1", "running", {}),
        TaskRun(name="r1", stage="report", status="running", attempts=[{"n": 1}, {"n": 2}], started_at=1.0),
    )
    text = rendered(progress)
    assert "1/4 done" in text
    row = next(line for line in text.splitlines() if "report" in line)
    assert "running" in row
    assert " 2 " in row, row


def test_a_big_live_view_shows_what_runs_and_what_comes_next() -> None:
    tasks = "\n".join(f"  - {{name: t{i}, shell: 'true'}}" for i in range(100))
    progress = LiveProgress(load_text(f"name: big\ntasks:\n{tasks}\n"))
    progress(
        Event("r", 1.0, "task_status", "t50", "running", {}),
        TaskRun(name="t50", stage="main", status="running", attempts=[{}], started_at=1.0),
    )
    text = rendered(progress)
    assert " t50 " in text
    assert " t0 " in text, "the next pending tasks are listed"
    assert "30 of 100 tasks shown" in text


def test_keys_typed_during_a_live_run_are_not_echoed_and_the_terminal_is_given_back(project: Project) -> None:
    import contextlib
    import os
    import pty
    import subprocess
    import termios
    import threading

    from tests.conftest import FLOWSTAGE
    from tests.records import shell_wait_for, wait_until

    project.write("workflows/hold.yaml", f"name: hold\ntasks:\n  - {{name: a, shell: {json.dumps(shell_wait_for('go.ok'))}}}\n")
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)[3]
    assert before & termios.ECHO
    proc = subprocess.Popen(
        [*FLOWSTAGE, "run", "hold"], cwd=project.root, stdin=slave, stdout=slave, stderr=slave, env=project.env()
    )

    def drain() -> None:  # the live view's output is read, so that a full terminal never blocks it
        with contextlib.suppress(OSError):
            while os.read(master, 65536):
                pass

    threading.Thread(target=drain, daemon=True).start()
    try:
        wait_until(lambda: not termios.tcgetattr(slave)[3] & termios.ECHO, 60, "the live view to take the terminal")
        os.write(master, b"typed while it ran\n")
        (project.root / "go.ok").write_text("")
        assert proc.wait(timeout=60) == 0
        assert termios.tcgetattr(slave)[3] & termios.ECHO, "echo is on again after the run"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(slave)


def test_a_json_workflow_is_found_by_its_name_whatever_its_file_is_called(project: Project) -> None:
    project.write("workflows/exported.json", '{"name": "from_json", "tasks": [{"name": "a", "shell": "true"}]}\n')
    result = project.cli("run", "from_json", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["workflow"] == "from_json"


def test_runs_with_an_unknown_status_is_bad_input_naming_the_statuses(project: Project) -> None:
    result = project.cli("runs", "--status", "bogus")
    assert result.code == 2
    assert "'bogus' is not one of 'running', 'succeeded', 'failed'" in result.err
