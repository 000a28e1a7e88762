"""Task kinds through the CLI: sub-workflows, sensors, http calls, and fan-out (`instances`, `for_each`).

Each test writes a small project in tmp_path and drives `flowstage` in a child process, as a user
types it. HTTP tasks talk to a server started by the test on 127.0.0.1 (a free port); slow tasks
are `sleep` processes with a unique duration so that a test can find its own processes.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Project
from tests.records import processes_with, record_of, shell_wait_for_log, tasks_of, wait_until

# ---------------------------------------------------------------------------------------------- helpers


def run_json(project: Project, *args: str, code: int = 0) -> dict[str, Any]:
    result = project.cli("run", *args, "--json")
    assert result.code == code, result
    return record_of(result)


def show(project: Project, run_id: str) -> dict[str, Any]:
    result = project.cli("show", run_id, "--json")
    assert result.code == 0, result
    return record_of(result)


def runs_of(project: Project, workflow: str) -> list[dict[str, Any]]:
    result = project.cli("runs", workflow, "--json")
    assert result.code == 0, result
    return list(json.loads(result.out))


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def unique_sleep() -> str:
    return f"300.{secrets.randbelow(10**6):06d}"


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t opens)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


# ---------------------------------------------------------------------------------------------- sub-workflows
def test_workflow_task_runs_the_child_as_its_own_run_with_its_variables(project: Project) -> None:
    project.write(
        "workflows/child.yaml",
        """
        name: child
        variables: {greeting: default, who: nobody}
        tasks:
          - name: greet
            shell: printf '%s\\n' "$MESSAGE" > greeting.txt
            env: {MESSAGE: "{{ var.greeting }}, {{ var.who }}"}
          - name: shout
            sql: SELECT upper(:g) AS loud
            params: {g: "{{ var.greeting }}"}
            save: loud
        """,
    )
    project.write(
        "workflows/parent.yaml",
        """
        name: parent
        variables: {name: nobody}
        tasks:
          - name: call
            workflow: child
            variables: {greeting: hello, who: "{{ var.name }}"}
            save: child_vars
          - name: use
            after: [call]
            shell: test {{ var.child_vars.loud }} = HELLO
        """,
    )
    record = run_json(project, "parent", "--var", "name=Ada")

    assert record["status"] == "succeeded"
    tasks = tasks_of(record)
    assert set(tasks) == {"call", "use"}
    assert tasks["use"]["status"] == "succeeded"
    child_id = tasks["call"]["metrics"]["sub_run_id"]
    assert child_id != record["id"]
    child = show(project, child_id)
    assert child["workflow"] == "child"
    assert child["status"] == "succeeded"
    assert child["parent_run_id"] == record["id"]
    assert record["parent_run_id"] is None
    assert child["variables"] == {"greeting": "hello", "who": "Ada", "loud": "HELLO"}
    assert {t["name"]: t["status"] for t in child["tasks"]} == {"greet": "succeeded", "shout": "succeeded"}
    assert (project.root / "greeting.txt").read_text() == "hello, Ada\n"
    assert record["variables"]["child_vars"]["loud"] == "HELLO"
    assert [r["id"] for r in runs_of(project, "child")] == [child_id]


def test_failing_child_run_fails_the_workflow_task_and_the_parent(project: Project) -> None:
    project.write(
        "workflows/broken.yaml",
        """
        name: broken
        tasks:
          - name: boom
            shell: echo about to fail && exit 3
        """,
    )
    project.write(
        "workflows/parent.yaml",
        """
        name: parent
        tasks:
          - name: call
            workflow: broken
          - name: after_call
            after: [call]
            shell: echo never
        """,
    )
    record = run_json(project, "parent", code=1)

    assert record["status"] == "failed"
    tasks = tasks_of(record)
    call = tasks["call"]
    assert call["status"] == "failed"
    child_id = call["metrics"]["sub_run_id"]
    assert child_id in call["error"]
    assert "failed" in call["error"]
    assert tasks["after_call"]["status"] == "skipped"
    child = show(project, child_id)
    assert child["status"] == "failed"
    assert child["parent_run_id"] == record["id"]
    assert tasks_of(child)["boom"]["error"] == "command exited with code 3"


def test_cancel_of_the_parent_cancels_the_child_run(project: Project) -> None:
    token = unique_sleep()
    project.write(
        "workflows/slow_child.yaml",
        f"""
        name: slow_child
        tasks:
          - name: nap
            shell: sleep {token}
        """,
    )
    project.write(
        "workflows/parent.yaml",
        """
        name: parent
        tasks:
          - name: call
            workflow: slow_child
        """,
    )
    proc = project.popen("run", "parent", "-q")
    try:
        wait_until(lambda: processes_with(token), 60, "the child run's sleep to start")
        parent_id = runs_of(project, "parent")[0]["id"]
        cancelled = project.cli("cancel", parent_id)
        assert cancelled.code == 0, cancelled
        assert "cancelled" in cancelled.out
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    assert proc.returncode == 1
    parent = show(project, parent_id)
    assert parent["status"] == "cancelled"
    assert tasks_of(parent)["call"]["status"] == "cancelled"
    (child_summary,) = runs_of(project, "slow_child")
    child = show(project, child_summary["id"])
    assert child["parent_run_id"] == parent_id
    assert child["status"] == "cancelled"
    assert tasks_of(child)["nap"]["status"] == "cancelled"
    wait_until(lambda: not processes_with(token), 30, "the child run's sleep to be killed")


def test_resume_of_the_parent_resumes_the_same_child_run(project: Project) -> None:
    project.write(
        "workflows/flaky_child.yaml",
        """
        name: flaky_child
        variables: {flag: missing.flag}
        stages:
          - name: one
            tasks:
              - name: count
                shell: echo ran >> count.txt
          - name: two
            tasks:
              - name: check
                shell: test -f {{ var.flag }}
        """,
    )
    project.write(
        "workflows/parent.yaml",
        """
        name: parent
        tasks:
          - name: call
            workflow: flaky_child
            variables: {flag: ready.flag}
        """,
    )
    first = run_json(project, "parent", code=1)
    call = tasks_of(first)["call"]
    assert call["status"] == "failed"
    child_id = call["metrics"]["sub_run_id"]
    assert show(project, child_id)["status"] == "failed"

    (project.root / "ready.flag").write_text("")
    resumed = project.cli("resume", first["id"], "--json")

    assert resumed.code == 0, resumed
    record = record_of(resumed)
    assert record["id"] == first["id"]
    assert record["status"] == "succeeded"
    attempts = tasks_of(record)["call"]["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "succeeded"]
    assert [a["metrics"]["sub_run_id"] for a in attempts] == [child_id, child_id]
    assert [r["id"] for r in runs_of(project, "flaky_child")] == [child_id]
    child = show(project, child_id)
    assert child["status"] == "succeeded"
    assert len(child["resumes"]) == 1
    assert [a["status"] for a in tasks_of(child)["check"]["attempts"]] == ["failed", "succeeded"]
    # the child task that had succeeded was not run again
    assert len(tasks_of(child)["count"]["attempts"]) == 1
    assert (project.root / "count.txt").read_text() == "ran\n"


# ---------------------------------------------------------------------------------------------- sensors
def test_file_sensor_succeeds_when_a_parallel_task_creates_the_file(project: Project) -> None:
    # the producer writes the file once the sensor has recorded a look that found nothing
    produce = shell_wait_for_log("wait_csv", "no file yet") + " && mkdir -p landing && echo 1 > landing/orders_1.csv"
    project.write(
        "workflows/landing.yaml",
        f"""
        name: landing
        tasks:
          - name: produce
            shell: {json.dumps(produce)}
          - name: wait_csv
            wait_for: {{file: "landing/*.csv"}}
            poke: 0.1s
            timeout: 150s
            log_level: debug
            save: found
          - name: consume
            after: [wait_csv]
            shell: test -s landing/orders_1.csv
        """,
    )
    record = run_json(project, "landing")

    tasks = tasks_of(record)
    sensor = tasks["wait_csv"]
    assert sensor["status"] == "succeeded"
    assert sensor["metrics"]["checks"] > 1
    assert [p.replace("\\", "/").rsplit("/", 2)[-2:] for p in record["variables"]["found"]] == [["landing", "orders_1.csv"]]
    # the sensor waited alongside the producer and ended once the file was there
    assert when(sensor["started_at"]) < when(tasks["produce"]["ended_at"])
    assert tasks["consume"]["status"] == "succeeded"


def test_file_sensor_times_out_after_its_timeout(project: Project) -> None:
    project.write(
        "workflows/never.yaml",
        """
        name: never
        tasks:
          - name: wait_never
            wait_for: {file: "nowhere/*.csv"}
            poke: 0.2s
            timeout: 1s
          - name: on_timeout
            after: {wait_never: failure}
            shell: echo gave up
        """,
    )
    started = time.monotonic()
    record = run_json(project, "never")
    took = time.monotonic() - started

    tasks = tasks_of(record)
    sensor = tasks["wait_never"]
    assert sensor["status"] == "timed_out"
    assert [a["status"] for a in sensor["attempts"]] == ["timed_out"]
    assert "timed out after 1s" in sensor["error"]
    assert 0.9 <= when(sensor["ended_at"]) - when(sensor["started_at"]) < 60
    assert tasks["on_timeout"]["status"] == "succeeded"
    assert record["status"] == "succeeded"  # the timeout was caught
    assert took < 100


def test_sql_sensor_succeeds_once_its_query_is_true(project: Project) -> None:
    project.write("flowstage.yaml", "connections:\n  lite: sqlite:///lite.db\n")
    project.write(
        "tasks/batch.py",
        """
        import sqlite3
        import subprocess
        import sys
        import time


        def finish(name, run):
            # the batch ends once the sensor has recorded a look that found it unfinished
            logs = [sys.executable, "-m", "flowstage", "logs", run, "wait_batch", "--level", "debug"]
            deadline = time.monotonic() + 120
            while "condition does not hold yet" not in subprocess.run(logs, capture_output=True, text=True).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError("the sensor never looked")
                time.sleep(0.1)
            conn = sqlite3.connect("lite.db", timeout=30)
            try:
                with conn:
                    conn.execute("INSERT INTO batches VALUES (?, 1)", (name,))
            finally:
                conn.close()
        """,
    )
    project.write(
        "workflows/batch.yaml",
        """
        name: batch
        variables: {batch: b-42}
        stages:
          - name: setup
            tasks:
              - name: setup
                connection: lite
                sql: CREATE TABLE batches (name VARCHAR(20), done INTEGER)
          - name: wait
            tasks:
              - name: finish_batch
                python: tasks/batch.py:finish
                with: {name: "{{ var.batch }}", run: "{{ run.id }}"}
              - name: wait_batch
                wait_for:
                  sql: SELECT COUNT(*) FROM batches WHERE name = :n AND done = 1
                  connection: lite
                  params: {n: "{{ var.batch }}"}
                poke: 0.1s
                timeout: 150s
                log_level: debug
                save: done_count
        """,
    )
    record = run_json(project, "batch")

    sensor = tasks_of(record)["wait_batch"]
    assert sensor["status"] == "succeeded"
    assert sensor["metrics"]["checks"] > 1
    assert record["variables"]["done_count"] == 1


# ---------------------------------------------------------------------------------------------- http
class ApiServer:
    """A small JSON API on 127.0.0.1 that records what it receives."""

    def __init__(self, flaky_failures: int = 2) -> None:
        self.requests: list[dict[str, Any]] = []
        self.flaky_left = flaky_failures
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: Any) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                seen = {
                    "method": method,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "json": json.loads(raw) if raw and "json" in (self.headers.get("Content-Type") or "") else None,
                }
                with server.lock:
                    server.requests.append(seen)
                if url.path == "/orders":
                    region = seen["query"].get("region", ["all"])[0]
                    self._answer(200, {"region": region, "orders": [{"id": 1, "amount": 9.5}, {"id": 2, "amount": 3}]})
                elif url.path == "/hooks" and method == "POST":
                    self._answer(201, {"accepted": True, "received": seen["json"]})
                elif url.path == "/flaky":
                    with server.lock:
                        fail = server.flaky_left > 0
                        server.flaky_left -= 1
                    self._answer(503, "busy, try later") if fail else self._answer(200, {"ok": True})
                else:
                    self._answer(404, "no such thing")

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests]


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = ApiServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)


def test_http_get_saves_the_json_answer(project: Project, api: ApiServer) -> None:
    project.write(
        "workflows/get.yaml",
        """
        name: get
        variables: {api: ""}
        tasks:
          - name: fetch
            http: {base_url: "{{ var.api }}", url: /orders, params: {region: EU}}
            save: orders
          - name: count
            after: [fetch]
            shell: test {{ var.orders.orders | length }} = 2
        """,
    )
    record = run_json(project, "get", "--var", f"api={api.url}")

    assert record["status"] == "succeeded"
    assert record["variables"]["orders"] == {"region": "EU", "orders": [{"id": 1, "amount": 9.5}, {"id": 2, "amount": 3}]}
    fetch = tasks_of(record)["fetch"]
    assert fetch["metrics"]["status_code"] == 200
    assert fetch["metrics"]["bytes_read"] > 0
    assert [(r["method"], r["path"], r["query"]) for r in api.requests] == [("GET", "/orders", {"region": ["EU"]})]


def test_http_post_sends_its_json_body_and_headers(project: Project, api: ApiServer) -> None:
    project.write(
        "workflows/post.yaml",
        """
        name: post
        variables: {api: "", campaign: 7}
        tasks:
          - name: notify
            http:
              base_url: "{{ var.api }}"
              url: /hooks
              method: POST
              json: {campaign: "{{ var.campaign }}", tags: [spring, "{{ run.workflow }}"], note: null}
              headers: {X-Token: abc123}
              expect: [200, 201]
            save: answer
        """,
    )
    record = run_json(project, "post", "--var", f"api={api.url}")

    body = {"campaign": 7, "tags": ["spring", "post"], "note": None}
    assert record["variables"]["answer"] == {"accepted": True, "received": body}
    assert tasks_of(record)["notify"]["metrics"]["status_code"] == 201
    (seen,) = api.requests
    assert (seen["method"], seen["path"]) == ("POST", "/hooks")
    assert seen["json"] == body
    assert seen["headers"]["x-token"] == "abc123"
    assert seen["headers"]["content-type"] == "application/json"


def test_http_unexpected_status_fails_the_task(project: Project, api: ApiServer) -> None:
    project.write(
        "workflows/missing.yaml",
        """
        name: missing
        variables: {api: ""}
        tasks:
          - name: fetch
            http: {base_url: "{{ var.api }}", url: /missing}
            save: never
        """,
    )
    record = run_json(project, "missing", "--var", f"api={api.url}", code=1)

    fetch = tasks_of(record)["fetch"]
    assert fetch["status"] == "failed"
    assert "404" in fetch["error"]
    assert "expected 200" in fetch["error"]
    assert "no such thing" in fetch["error"]
    assert fetch["metrics"]["status_code"] == 404
    assert "never" not in record["variables"]
    assert api.paths() == ["/missing"]


def test_http_task_retries_until_the_expected_status(project: Project, api: ApiServer) -> None:
    project.write(
        "workflows/flaky.yaml",
        """
        name: flaky
        variables: {api: ""}
        tasks:
          - name: poll
            http: {base_url: "{{ var.api }}", url: /flaky}
            retries: 3
            retry_delay: 0.1s
            save: status
        """,
    )
    record = run_json(project, "flaky", "--var", f"api={api.url}")

    poll = tasks_of(record)["poll"]
    assert poll["status"] == "succeeded"
    assert [a["status"] for a in poll["attempts"]] == ["failed", "failed", "succeeded"]
    assert "503" in poll["attempts"][0]["error"]
    assert [a["metrics"]["status_code"] for a in poll["attempts"]] == [503, 503, 200]
    assert record["variables"]["status"] == {"ok": True}
    assert api.paths() == ["/flaky"] * 3


# ---------------------------------------------------------------------------------------------- fan-out
def test_instances_run_copies_each_recorded_with_its_instance(project: Project) -> None:
    project.write(
        "tasks/fan.py",
        """
        def part(index, total):
            return f"{index}/{total}"
        """,
    )
    project.write(
        "workflows/parts.yaml",
        """
        name: parts
        tasks:
          - name: part
            instances: 3
            python: tasks/fan.py:part
            with: {index: "{{ task.instance }}", total: "{{ task.instances }}"}
            save: parts
        """,
    )
    record = run_json(project, "parts")

    part = tasks_of(record)["part"]
    assert part["status"] == "succeeded"
    assert record["variables"]["parts"] == ["0/3", "1/3", "2/3"]
    assert sorted(a["instance"] for a in part["attempts"]) == [0, 1, 2]
    assert all(a["status"] == "succeeded" for a in part["attempts"])
    assert part["metrics"]["copies"] == 3


def test_for_each_runs_a_copy_per_item_and_save_keeps_the_list_in_order(project: Project) -> None:
    project.write(
        "tasks/fan.py",
        """
        import os
        import time


        def shout(region, after):
            # a copy ends only once the copy it waits for has ended: apac, then us, then eu
            deadline = time.monotonic() + 60
            while after != "-" and not os.path.exists(f"{after}.done"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{after} never ended")
                time.sleep(0.02)
            open(f"{region}.done", "w").close()
            return region.upper()
        """,
    )
    project.write(
        "workflows/regions.yaml",
        """
        name: regions
        variables: {regions: [eu, us, apac]}
        tasks:
          - name: shout
            for_each: "{{ var.regions }}"
            python: tasks/fan.py:shout
            in_process: true
            # the first item finishes last
            with: {region: "{{ task.item }}", after: "{{ ['us', 'apac', '-'][task.instance] }}"}
            save: loud
        """,
    )
    record = run_json(project, "regions")

    shout = tasks_of(record)["shout"]
    assert record["variables"]["loud"] == ["EU", "US", "APAC"]
    by_instance = {a["instance"]: a for a in shout["attempts"]}
    assert {i: a["item"] for i, a in by_instance.items()} == {0: "eu", 1: "us", 2: "apac"}
    assert when(by_instance[0]["ended_at"]) > when(by_instance[2]["ended_at"])
    assert shout["metrics"]["copies"] == 3


def test_a_failing_copy_fails_the_fanned_out_task(project: Project) -> None:
    project.write(
        "workflows/some_fail.yaml",
        """
        name: some_fail
        tasks:
          - name: check
            for_each: [1, 2, 3]
            shell: test {{ task.item }} -ne 2
          - name: after_check
            after: [check]
            shell: echo never
        """,
    )
    record = run_json(project, "some_fail", code=1)

    tasks = tasks_of(record)
    check = tasks["check"]
    assert check["status"] == "failed"
    assert "copy 1 (2)" in check["error"]
    assert "code 1" in check["error"]
    failed = [a for a in check["attempts"] if a["status"] == "failed"]
    assert [(a["instance"], a["item"]) for a in failed] == [(1, 2)]
    assert tasks["after_check"]["status"] == "skipped"


def test_max_parallel_bounds_the_copies_running_at_once(project: Project) -> None:
    project.write(
        "workflows/bounded.yaml",
        """
        name: bounded
        preferences: {max_parallel: 2}
        tasks:
          - name: span
            instances: 5
            # a copy holds until it sees another one running (or all five have started), so two
            # run at once whenever two may; its span ends after its end mark
            shell: |
              start=$(date +%s.%N)
              touch spans/{{ task.instance }}.start
              limit=$(( $(date +%s) + 60 ))
              until [ $(ls spans | grep -c start) -eq 5 ] || [ $(( $(ls spans | grep -c start) - $(ls spans | grep -c end) )) -ge 2 ]; do
                [ $(date +%s) -lt $limit ] || exit 1
                sleep 0.02
              done
              touch spans/{{ task.instance }}.end
              echo "$start $(date +%s.%N)" > spans/{{ task.instance }}.txt
        """,
    )
    (project.root / "spans").mkdir()
    record = run_json(project, "bounded")

    span = tasks_of(record)["span"]
    assert span["status"] == "succeeded"
    assert sorted(a["instance"] for a in span["attempts"]) == [0, 1, 2, 3, 4]
    spans = []
    for path in sorted((project.root / "spans").glob("*.txt")):
        start, end = map(float, path.read_text().split())
        spans.append((start, end))
    assert len(spans) == 5
    assert max_overlap(spans) == 2
    recorded = [(when(a["started_at"]), when(a["ended_at"])) for a in span["attempts"]]
    assert max_overlap(recorded) <= 2


def test_a_child_python_task_imports_the_standard_librarys_http_and_sql_modules(project: Project) -> None:
    # flowstage's own task modules (tasks/http.py, tasks/sql.py ...) never shadow the standard library
    project.write(
        "tasks/net.py",
        """
        import http.client
        import sqlite3
        import urllib.request


        def names():
            return [http.client.__name__, urllib.request.__name__, sqlite3.__name__]
        """,
    )
    project.write("workflows/net.yaml", "name: net\ntasks: [{name: n, python: tasks/net.py:names, save: got}]\n")
    record = run_json(project, "net")
    assert tasks_of(record)["n"]["saved"] == {"got": ["http.client", "urllib.request", "sqlite3"]}
