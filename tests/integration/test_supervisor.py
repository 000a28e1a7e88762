"""The runner's supervisor and its warm python workers keep a process's isolation, kill and measures.

One supervisor process per runner starts every task process; default python tasks run in warm
worker interpreters. What must hold: a SIGKILLed runner leaves nothing alive (the supervisor, the
workers, the tasks' trees, a process that left its group with setsid); a worker that crashed,
was killed or grew too large is never used again; timeouts kill the task's whole group; a warm
worker keeps imported modules and `fresh_process: true` does not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

from tests.conftest import Project
from tests.records import processes_with, record_of, tasks_of, wait_until

TASKS_PY = """
import os
import subprocess
import time

CALLS = []  # module state: kept between the tasks of one warm worker


def pid():
    CALLS.append(1)
    return {"pid": os.getpid(), "calls": len(CALLS)}


def crash(marker):
    with open(marker, "w") as fh:
        fh.write(str(os.getpid()))
    os._exit(3)


HELD = []


def leak(mb):
    HELD.append(bytearray(mb << 20))
    for i in range(0, len(HELD[-1]), 4096):
        HELD[-1][i] = 1  # touched: resident
    return {"pid": os.getpid()}


def leave_daemons(token):
    subprocess.Popen(["sleep", token], start_new_session=True)  # a session of its own
    first = os.fork()
    if first == 0:  # a daemon the classic way: fork, setsid, fork again, the middle one exits
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", token])
        os._exit(0)
    os.waitpid(first, 0)
    return "left two behind"


def spawn_and_wait(token, marker):
    child = subprocess.Popen(["sleep", token])
    with open(marker, "w") as fh:
        fh.write(str(child.pid))
    time.sleep(600)
"""


def stop(runner: subprocess.Popen[str]) -> None:
    """End a runner the test started (if it still runs) and close its pipes."""
    if runner.poll() is None:
        runner.kill()
        runner.wait(timeout=30)
    for stream in (runner.stdout, runner.stderr):
        if stream is not None:
            stream.close()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sequential_tasks_share_a_warm_worker_and_its_modules(project: Project) -> None:
    project.write("tasks/t.py", TASKS_PY)
    project.write(
        "workflows/warm.yaml",
        """
        name: warm
        tasks:
          - {name: a, python: "tasks/t.py:pid", save: a}
          - {name: b, python: "tasks/t.py:pid", after: [a], save: b}
        """,
    )
    record = record_of(project.cli("run", "warm", "--json"))
    assert record["status"] == "succeeded", record
    saved = record["variables"]
    assert saved["a"]["pid"] == saved["b"]["pid"], saved
    assert (saved["a"]["calls"], saved["b"]["calls"]) == (1, 2), "the module was imported once per worker"


def test_fresh_process_tasks_get_an_interpreter_of_their_own(project: Project) -> None:
    project.write("tasks/t.py", TASKS_PY)
    project.write(
        "workflows/fresh.yaml",
        """
        name: fresh
        tasks:
          - {name: a, python: "tasks/t.py:pid", fresh_process: true, save: a}
          - {name: b, python: "tasks/t.py:pid", fresh_process: true, after: [a], save: b}
        """,
    )
    record = record_of(project.cli("run", "fresh", "--json"))
    assert record["status"] == "succeeded", record
    saved = record["variables"]
    assert saved["a"]["pid"] != saved["b"]["pid"], saved
    assert (saved["a"]["calls"], saved["b"]["calls"]) == (1, 1)


def test_a_worker_that_crashed_is_replaced(project: Project) -> None:
    project.write("tasks/t.py", TASKS_PY)
    project.write(
        "workflows/crash.yaml",
        """
        name: crash
        tasks:
          - {name: a, python: "tasks/t.py:pid", save: a}
          - {name: b, python: "tasks/t.py:crash", with: {marker: crashed.pid}, after: {a: success}}
          - {name: c, python: "tasks/t.py:pid", after: {b: completion}, save: c}
        """,
    )
    record = record_of(project.cli("run", "crash", "--json"))
    tasks = tasks_of(record)
    assert tasks["b"]["status"] == "failed"
    assert tasks["b"]["error"] == "python process exited with code 3 and no result"
    crashed = int((project.root / "crashed.pid").read_text())
    assert record["variables"]["a"]["pid"] == crashed, "b ran in a's warm worker"
    assert record["variables"]["c"]["pid"] != crashed, "c ran in the worker that had crashed"
    assert record["variables"]["c"]["calls"] == 1


def test_a_worker_that_grew_past_the_limit_is_replaced(project: Project) -> None:
    project.write("tasks/t.py", TASKS_PY)
    project.write(
        "workflows/leak.yaml",
        """
        name: leak
        tasks:
          - {name: small, python: "tasks/t.py:leak", with: {mb: 1}, save: small}
          - {name: big, python: "tasks/t.py:leak", with: {mb: 120}, after: [small], save: big}
          - {name: after, python: "tasks/t.py:pid", after: [big], save: after}
        """,
    )
    ran = project.cli("run", "leak", "--json", env=project.env(FLOWSTAGE_PYTHON_WORKER_MAX_MB="100"))
    record = record_of(ran)
    assert record["status"] == "succeeded", record
    saved = record["variables"]
    assert saved["small"]["pid"] == saved["big"]["pid"], "under the limit, the worker is kept"
    assert saved["after"]["pid"] != saved["big"]["pid"], "over the limit, the worker is retired"
    assert tasks_of(record)["big"]["metrics"]["memory_mb"] >= 120


def test_a_timed_out_python_task_loses_its_worker_and_everything_it_started(project: Project) -> None:
    token = str(500 + uuid.uuid4().int % 1000)
    project.write("tasks/t.py", TASKS_PY)
    project.write(
        "workflows/slow.yaml",
        f"""
        name: slow
        tasks:
          - {{name: a, python: "tasks/t.py:spawn_and_wait", with: {{token: "{token}", marker: child.pid}}, timeout: 2s}}
          - {{name: b, python: "tasks/t.py:pid", after: {{a: completion}}, save: b}}
        """,
    )
    record = record_of(project.cli("run", "slow", "--json"))
    tasks = tasks_of(record)
    assert tasks["a"]["status"] == "timed_out", tasks["a"]
    child = int((project.root / "child.pid").read_text())
    wait_until(lambda: not alive(child), 10, "the timed-out task's child to be killed")
    killed_worker = int(tasks["a"]["attempts"][0]["pid"])
    assert record["variables"]["b"]["pid"] != killed_worker
    assert not alive(killed_worker)


def test_a_sigkilled_runner_leaves_no_process_alive(project: Project) -> None:
    token = str(1500 + uuid.uuid4().int % 1000)
    project.write("tasks/t.py", TASKS_PY)
    project.write(
        "workflows/hold.yaml",
        f"""
        name: hold
        tasks:
          - {{name: py, python: "tasks/t.py:spawn_and_wait", with: {{token: "{token}", marker: py.pid}}}}
          - name: sh
            shell: "setsid sleep {token} & echo $! > escaped.pid; sleep {token} & echo $! > sh.pid; wait"
        """,
    )
    runner = project.popen("run", "hold", "-q")
    try:
        root = Path(project.root)
        wait_until(
            lambda: all((root / f).exists() and (root / f).read_text().strip() for f in ("py.pid", "sh.pid", "escaped.pid")),
            60,
            "the tasks to start their processes",
        )
        tree = psutil.Process(runner.pid).children(recursive=True)
        assert tree, "the runner started a supervisor"
        pids = [p.pid for p in tree] + [int((root / f).read_text()) for f in ("py.pid", "sh.pid", "escaped.pid")]
        assert processes_with(token), "the sleeps run"
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=30)
        wait_until(lambda: not any(alive(pid) for pid in pids), 15, "every process of the killed runner to end")
        assert processes_with(token) == []
    finally:
        stop(runner)


def test_cancel_kills_a_shell_task_group(project: Project) -> None:
    token = str(2500 + uuid.uuid4().int % 1000)
    project.write(
        "workflows/cancel.yaml",
        f"""
        name: cancel
        tasks:
          - {{name: sh, shell: "sleep {token} & echo $! > bg.pid; sleep {token}"}}
        """,
    )
    runner = project.popen("run", "cancel", "-q")
    try:
        root = Path(project.root)
        wait_until(lambda: (root / "bg.pid").exists() and (root / "bg.pid").read_text().strip(), 60, "the task to start")
        background = int((root / "bg.pid").read_text())
        runs = record_of(project.cli("runs", "--json"))
        assert project.cli("cancel", runs[0]["id"]).code == 0
        runner.wait(timeout=60)
        wait_until(lambda: not alive(background), 15, "the task's whole group to be killed")
        assert processes_with(token) == []
    finally:
        stop(runner)


def test_a_shell_task_ends_with_its_command_and_what_it_left_running_is_killed_and_logged(project: Project) -> None:
    """`setsid sleep & echo`: the task ends when `sh` does, not when the sleep would; nothing stays."""
    token = str(3500 + uuid.uuid4().int % 1000)
    project.write(
        "workflows/bg.yaml",
        f"""
        name: bg
        tasks:
          - {{name: escaped, shell: "setsid sleep {token} & echo started"}}
          - {{name: plain, shell: "sleep {token} & echo started"}}
          - {{name: quiet, shell: "nohup sleep {token} >/dev/null 2>&1 & echo started"}}
        """,
    )
    result = project.cli("run", "bg", "--json", timeout=int(token) - 60)  # far sooner than any sleep would end
    record = record_of(result)
    assert record["status"] == "succeeded", record
    assert processes_with(token) == []
    logs = project.cli("logs", record["id"])
    for name in ("escaped", "plain", "quiet"):
        assert any(f"{name}#1: killed" in line and "left running when it ended" in line for line in logs.out.splitlines()), (
            name,
            logs.out,
        )
    # each is named by its command line — or, caught between its fork and its exec, by its shell's
    assert " (pid " in logs.out


def test_a_python_task_that_leaves_daemons_succeeds_and_its_daemons_are_killed(project: Project) -> None:
    """A warm worker is a subreaper: a daemon that forked twice still comes back to it and is killed."""
    token = str(4500 + uuid.uuid4().int % 1000)
    project.write("tasks/t.py", TASKS_PY)
    project.write(
        "workflows/daemons.yaml",
        f"""
        name: daemons
        tasks:
          - {{name: warm, python: "tasks/t.py:leave_daemons", with: {{token: "{token}"}}, save: warm}}
          - {{name: fresh, python: "tasks/t.py:leave_daemons", with: {{token: "{token}"}}, fresh_process: true, save: fresh}}
          - {{name: next, python: "tasks/t.py:pid", after: [warm], save: next}}
        """,
    )
    record = record_of(project.cli("run", "daemons", "--json", timeout=int(token) - 60))
    assert record["status"] == "succeeded", record
    assert record["variables"]["warm"] == record["variables"]["fresh"] == "left two behind"
    assert processes_with(token) == []
    logs = project.cli("logs", record["id"]).out
    for name in ("warm", "fresh"):
        line = next(x for x in logs.splitlines() if f"{name}#1: killed" in x)
        assert "killed 2 processes" in line, line  # the double-forked one may be caught before its exec
        assert f"sleep {token} (pid " in line, line
    assert "next#1: killed" not in logs, "the warm worker's next task starts clean"


SHUTDOWN_DURING_PRESTART = """
import importlib.abc, importlib.machinery, sys, time
from pathlib import Path

class SlowSupervisorImport(importlib.abc.MetaPathFinder):
    # the supervisor's module takes 0.5 s to load: the thread starting the first warm worker is
    # still inside the import of the workers' module when the run ends
    def find_spec(self, name, path=None, target=None):
        if name != "flowstage.tasks._supervisor":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        spec.loader.exec_module = lambda module: (time.sleep(0.5), run(module))
        return spec

sys.meta_path.insert(0, SlowSupervisorImport())

from flowstage.connections import Connections
from flowstage.executors.local import LocalExecutor
from flowstage.tasks import RunResources

root = Path(sys.argv[1])
executor = LocalExecutor(RunResources(root=root, connections=Connections({}, root=root)), interpreters=[""])
time.sleep(0.1)
executor.shutdown()
from flowstage.tasks._workers import WORKERS
print("idle workers:", sum(len(w) for w in WORKERS._idle.values()))
"""


def test_a_run_that_ends_while_its_first_worker_starts_ends_that_worker_too(project: Project) -> None:
    script = project.root / "shutdown_during_prestart.py"
    script.write_text(SHUTDOWN_DURING_PRESTART)
    ended = subprocess.run(
        [sys.executable, str(script), str(project.root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.strip() == "idle workers: 0"
