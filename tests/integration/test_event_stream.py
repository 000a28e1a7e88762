"""The event log is the whole record (SPEC §5.2 live events stand on it): a subscriber in another
process, following `events_after` with `wait_events`, sees every state change of a run killed with
SIGKILL and resumed — and of one killed and then cancelled from outside — and folding what it saw
gives back exactly the task rows the store keeps."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

from flowstage.engine.ports import Event
from flowstage.engine.projection import fresh, replay
from flowstage.settings import load_project
from flowstage.stores.sql.store import SqlRunStore
from tests.conftest import Project
from tests.records import tasks_of, wait_until

WORKFLOW = """
name: watched
stages:
  - name: one
    tasks:
      - {name: hello, shell: "echo hello"}
  - name: two
    tasks:
      - {name: gate, shell: "test -f go.txt || sleep 60", retries: 0}
  - name: three
    tasks:
      - {name: after, shell: "echo after"}
"""

SUBSCRIBER = """
import json, sys, time
from flowstage.stores.sql.store import SqlRunStore
store = SqlRunStore(sys.argv[1])
cursor = 0
print(json.dumps({"ready": True}), flush=True)
while True:
    for eid, e in store.events_after(cursor, limit=500):
        cursor = eid
        print(json.dumps({"id": eid, "run_id": e.run_id, "at": e.at, "seen": time.time(), "kind": e.kind,
                          "task": e.task, "status": e.status, "data": e.data}), flush=True)
    store.wait_events(cursor, timeout=2.0)
"""


def show(project: Project, run_id: str) -> dict[str, Any]:
    result = project.cli("show", run_id, "--json")
    assert result.code == 0, result.err
    record: dict[str, Any] = json.loads(result.out)
    return record


def start_and_kill(project: Project) -> str:
    """Start `watched`, SIGKILL its runner while `gate` runs; the run id."""
    proc = project.popen("run", "watched")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert re.fullmatch(r"run \S+ started", first), first
        run_id = first.split()[1]
        wait_until(lambda: tasks_of(show(project, run_id))["gate"]["status"] == "running", 30, "gate to run")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return run_id


def test_a_subscriber_in_another_process_sees_every_change_of_a_killed_and_resumed_run(project: Project) -> None:
    project.write("workflows/watched.yaml", WORKFLOW)
    url = load_project(root=project.root).store_url
    SqlRunStore(url).close()  # create and migrate the store before the subscriber opens it
    sub = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SUBSCRIBER), url], stdout=subprocess.PIPE, text=True, env=project.env()
    )
    try:
        assert sub.stdout is not None
        assert json.loads(sub.stdout.readline()) == {"ready": True}
        resumed_id = start_and_kill(project)
        (project.root / "go.txt").write_text("go")
        assert project.cli("resume", resumed_id).code == 0
        cancelled_id = start_and_kill_again(project)
        assert project.cli("cancel", cancelled_id).code == 0

        store = SqlRunStore(url)
        try:
            expected = {rid: [e for _, e in store.events(rid)] for rid in (resumed_id, cancelled_id)}
            total = sum(len(v) for v in expected.values())
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while sum(1 for s in seen if s["run_id"] in expected) < total and time.monotonic() < deadline:
                line = sub.stdout.readline()
                if not line:
                    break
                seen.append(json.loads(line))
            for rid, events in expected.items():
                mine = [s for s in seen if s["run_id"] == rid]
                assert [(s["kind"], s["task"], s["status"]) for s in mine] == [(e.kind, e.task, e.status) for e in events]
                run = store.get_run(rid)
                assert run is not None
                folded = replay(
                    fresh(run.tasks), [Event(rid, s["at"], s["kind"], s["task"], s["status"], s["data"]) for s in mine]
                )
                assert folded == {t.name: t for t in run.tasks}, rid
            kinds = {(s["run_id"], s["kind"]) for s in seen}
            assert (resumed_id, "run_resumed") in kinds
            assert (cancelled_id, "run_finished") in kinds
            pids = [s for s in seen if s["kind"] == "attempt_updated" and "pid" in s["data"].get("set", {})]
            assert pids, "the child process of each attempt is an event"
            delays = sorted(s["seen"] - s["at"] for s in seen)
            assert delays[len(delays) // 2] < 0.5, f"median delivery {delays[len(delays) // 2]:.3f}s"
        finally:
            store.close()
        final = show(project, resumed_id)
        assert final["status"] == "succeeded"
        assert all(isinstance(t, dict) for t in final["tasks"])
    finally:
        sub.kill()
        sub.wait()
        if sub.stdout is not None:
            sub.stdout.close()


def start_and_kill_again(project: Project) -> str:
    (project.root / "go.txt").unlink()
    return start_and_kill(project)
