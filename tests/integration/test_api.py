"""The REST API over real HTTP: `flowstage server` as a subprocess on a project in tmp_path, talked to with httpx."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowstage.stores.sql.store import SqlRunStore
from tests.conftest import FLOWSTAGE, Project
from tests.records import wait_until

PROBLEM = "application/problem+json"

HELLO = """
name: hello
variables: {who: world}
stages:
  - name: first
    tasks:
      - {name: greet, shell: "echo hello {{ var.who }}"}
  - name: second
    tasks:
      - {name: shout, shell: "echo HELLO"}
      - {name: on_error, shell: "echo caught", after: {greet: failure}}
"""

GATED = """
name: gated
tasks:
  - {name: started, shell: "echo started > started.txt"}
  - {name: gate, wait_for: {file: go.txt}, poke: 0.2s, after: [started], timeout: 120s}
"""

BROKEN = """
name: broken
tasks:
  - {name: a, shell: "echo a", bogus: 1}
  - {name: b, shell: "echo b", after: [missing]}
"""


@dataclass
class Server:
    client: httpx.Client
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"the server ended (exit code {proc.returncode}):\n{log.read_text(errors='replace')}")
    try:
        return client.get("/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def serve(project: Project, log: Path) -> Iterator[Server]:
    """`flowstage server` on a free port of loopback, until SIGTERM; its output in `log`."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*FLOWSTAGE, "server", "--port", str(port)], cwd=project.root, stdout=out, stderr=subprocess.STDOUT, env=project.env()
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=90) as client:
            wait_until(lambda: _answers(client, proc, log), 60, "the server to answer /health")
            yield Server(client, proc, log)
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("the server did not stop on SIGTERM within 20 s")
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells how it ended
    stopped = log.read_text(errors="replace")
    assert code in (0, -signal.SIGTERM), f"exit {code}:\n{stopped}"
    assert "Application shutdown complete" in stopped, stopped


@pytest.fixture
def server(project: Project, tmp_path: Path) -> Iterator[Server]:
    with serve(project, tmp_path / "server.log") as running:
        yield running


def deploy(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/workflows", content=text.lstrip("\n"), headers={"Content-Type": "application/yaml"})


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in answer.text
    return body


def start(client: httpx.Client, name: str, variables: dict[str, Any] | None = None) -> str:
    answer = client.post(f"/workflows/{name}/runs", json={"variables": variables or {}})
    assert answer.status_code in (201, 202), answer.text
    run_id: str = answer.json()["id"]
    return run_id


def wait_status(client: httpx.Client, run_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        record: dict[str, Any] = client.get(f"/runs/{run_id}").json()
        return record if record["status"] == status else None

    found: dict[str, Any] = wait_until(ended, timeout, f"run {run_id} to be {status}")
    return found


def test_health_answers_and_openapi_lists_the_routes(server: Server) -> None:
    assert server.client.get("/health").json()["status"] == "ok"
    paths = server.client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/workflows", "/api/v1/workflows/{name}/graph", "/api/v1/runs/{run_id}", "/api/v1/runs/{run_id}/logs"):
        assert path in paths


def test_deploy_by_post_then_list_get_versions_graph_and_rollback(server: Server) -> None:
    client = server.client
    first = deploy(client, HELLO)
    assert first.status_code == 201, first.text
    assert first.json() == {"name": "hello", "version": 1, "previous": None, "created": True, "activated": True}
    again = deploy(client, HELLO)
    assert again.status_code == 200
    assert again.json()["version"] == 1
    assert not again.json()["created"]
    second = deploy(client, HELLO.replace("echo HELLO", "echo HELLO AGAIN"))
    assert second.status_code == 201
    assert second.json()["version"] == 2

    listed = client.get("/workflows").json()
    assert [(w["name"], w["version"], w["versions"]) for w in listed] == [("hello", 2, 2)]
    detail = client.get("/workflows/hello").json()
    assert detail["definition"]["name"] == "hello"
    assert detail["version"] == 2
    versions = client.get("/workflows/hello/versions").json()
    assert [(v["version"], v["current"]) for v in versions] == [(2, True), (1, False)]

    graph = client.get("/workflows/hello/graph").json()
    assert graph["stages"] == ["first", "second"]
    assert {n["id"]: n["stage"] for n in graph["nodes"]} == {"greet": "first", "shout": "second", "on_error": "second"}
    assert all("status" not in n for n in graph["nodes"])
    assert {"from": "greet", "to": "on_error", "condition": "failure"} in graph["edges"]

    rolled = client.post("/workflows/hello/rollback", json={"version": 1})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json() == {"name": "hello", "version": 1, "previous": 2, "activated": True}
    assert client.get("/workflows/hello").json()["version"] == 1
    assert "no version 9" in assert_problem(client.post("/workflows/hello/rollback", json={"version": 9}), 404)["detail"]


def test_a_rejected_deploy_answers_422_with_its_located_problems(server: Server) -> None:
    body = assert_problem(deploy(server.client, BROKEN), 422)
    assert body["problems"], body
    assert any("bogus" in p for p in body["problems"])
    assert all(p.startswith("workflow.yaml:") and p.split(":")[1].isdigit() for p in body["problems"])
    assert server.client.get("/workflows").json() == []
    wrong_type = server.client.post("/workflows", content="name: x", headers={"Content-Type": "text/plain"})
    assert "application/yaml" in assert_problem(wrong_type, 415)["detail"]


def test_a_run_started_by_post_succeeds_and_its_record_carries_the_dynamic_graph(server: Server) -> None:
    client = server.client
    assert deploy(client, HELLO).status_code == 201
    run_id = start(client, "hello", {"who": "api"})
    record = wait_status(client, run_id, "succeeded")
    assert record["id"] == run_id
    assert record["workflow"] == "hello"
    assert record["version"] == 1
    assert record["variables"]["who"] == "api"
    tasks = {t["name"]: t for t in record["tasks"]}
    assert tasks["greet"]["status"] == "succeeded"
    assert tasks["greet"]["stage"] == "first"
    assert tasks["on_error"]["status"] == "skipped"
    assert tasks["on_error"]["reason"]
    assert len(tasks["greet"]["attempts"]) == 1
    for key in ("started_at", "ended_at", "error", "metrics", "saved", "reason"):
        assert key in tasks["shout"]
    graph = record["graph"]
    assert {n["id"]: n["status"] for n in graph["nodes"]} == {"greet": "succeeded", "shout": "succeeded", "on_error": "skipped"}
    assert {"from": "greet", "to": "on_error", "condition": "failure"} in graph["edges"]

    explained = client.get(f"/runs/{run_id}/tasks/on_error/explain")
    assert explained.status_code == 200, explained.text
    why = explained.json()
    assert (why["task"], why["decision"]["verdict"]) == ("on_error", "skipped")
    assert why["decision"]["checks"][0] | {"status": None} == {
        "task": "greet",
        "condition": "failure",
        "status": None,
        "held": False,
        "caught": False,
    }
    assert {"name": "who", "value": "api", "source": "--var (or the API's run variables)"} in why["variables"]
    assert "has no task 'nope'" in assert_problem(client.get(f"/runs/{run_id}/tasks/nope/explain"), 404)["detail"]

    resumed = assert_problem(client.post(f"/runs/{run_id}/resume"), 409)
    assert "succeeded" in resumed["detail"]
    cancelled = assert_problem(client.post(f"/runs/{run_id}/cancel"), 409)
    assert "succeeded" in cancelled["detail"]


def test_logs_are_paged_by_cursor_with_a_next_link(server: Server) -> None:
    client = server.client
    assert deploy(client, HELLO).status_code == 201
    run_id = start(client, "hello")
    wait_status(client, run_id, "succeeded")
    everything = client.get(f"/runs/{run_id}/logs").json()
    assert everything["next"] is None
    assert any("hello world" in line["message"] for line in everything["items"])
    assert len(everything["items"]) >= 3

    seen: list[int] = []
    url: str | None = f"/runs/{run_id}/logs?limit=2"
    while url is not None:
        page = client.get(url).json()
        assert len(page["items"]) <= 2
        seen += [line["id"] for line in page["items"]]
        url = page["next"]
    assert seen == [line["id"] for line in everything["items"]]

    greet = client.get(f"/runs/{run_id}/logs", params={"task": "greet"}).json()["items"]
    assert greet
    assert all(line["task"] == "greet" for line in greet)
    warnings = client.get(f"/runs/{run_id}/logs", params={"level": "warning"}).json()["items"]
    assert all(line["level"] in ("warning", "error", "critical") for line in warnings)
    assert "no task 'nope'" in assert_problem(client.get(f"/runs/{run_id}/logs", params={"task": "nope"}), 404)["detail"]
    assert "level" in assert_problem(client.get(f"/runs/{run_id}/logs", params={"level": "loud"}), 422)["detail"]


def test_runs_are_paged_newest_first_by_cursor_with_a_next_link(server: Server) -> None:
    client = server.client
    assert deploy(client, HELLO).status_code == 201
    ids = [start(client, "hello") for _ in range(3)]
    for run_id in ids:
        wait_status(client, run_id, "succeeded")
    first = client.get("/runs", params={"limit": 2}).json()
    assert [r["id"] for r in first["items"]] == ids[::-1][:2]
    assert first["next"] is not None
    second = client.get(first["next"]).json()
    assert [r["id"] for r in second["items"]] == [ids[0]]
    assert second["next"] is None
    assert client.get("/runs", params={"workflow": "other"}).json() == {"items": [], "next": None}
    assert len(client.get("/runs", params={"status": "succeeded", "workflow": "hello"}).json()["items"]) == 3
    assert client.get("/runs", params={"status": "failed"}).json()["items"] == []
    assert "cursor" in assert_problem(client.get("/runs", params={"cursor": "garbage"}), 422)["detail"]
    assert "limit" in assert_problem(client.get("/runs", params={"limit": 0}), 422)["detail"]


def test_unknown_things_answer_404_problems(server: Server) -> None:
    client = server.client
    assert "no run 'nope'" in assert_problem(client.get("/runs/nope"), 404)["detail"]
    assert_problem(client.post("/runs/nope/resume"), 404)
    assert_problem(client.post("/runs/nope/cancel"), 404)
    assert_problem(client.get("/runs/nope/logs"), 404)
    assert_problem(client.get("/runs/nope/tasks/greet/explain"), 404)
    assert "never deployed" in assert_problem(client.get("/workflows/nope"), 404)["detail"]
    assert_problem(client.get("/workflows/nope/graph"), 404)
    assert_problem(client.post("/workflows/nope/runs", json={"variables": {}}), 404)
    assert_problem(client.get("/no/such/route"), 404)
    assert "variables" in assert_problem(client.post("/workflows/nope/runs", json={"variables": 3}), 422)["detail"]


def test_cancel_stops_a_running_run(server: Server, project: Project) -> None:
    client = server.client
    assert deploy(client, GATED).status_code == 201
    run_id = start(client, "gated")
    wait_until(lambda: (project.root / "started.txt").exists(), 60, "the first task")
    assert client.get(f"/runs/{run_id}").json()["status"] == "running"
    assert_problem(client.post(f"/runs/{run_id}/resume"), 409)  # still running
    # the runner held still (SIGSTOP) just after a heartbeat, out of any transaction: it cannot
    # acknowledge the cancel, and the answer must not wait for it
    runner = _paused_after_a_heartbeat(project, run_id)
    resume_it = threading.Timer(10, os.kill, (runner, signal.SIGCONT))
    resume_it.start()
    try:
        asked = time.monotonic()
        answer = client.post(f"/runs/{run_id}/cancel")
        took = time.monotonic() - asked
    finally:
        resume_it.cancel()
        os.kill(runner, signal.SIGCONT)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"id": run_id, "status": "running"}
    assert took < 2, f"the cancel answered after {took:.1f}s"
    record = wait_status(client, run_id, "cancelled", timeout=30)
    assert {n["id"]: n["status"] for n in record["graph"]["nodes"]}["gate"] == "cancelled"

    (project.root / "go.txt").write_text("go")
    assert client.post(f"/runs/{run_id}/resume").status_code == 202
    wait_status(client, run_id, "succeeded")


def _paused_after_a_heartbeat(project: Project, run_id: str) -> int:
    """SIGSTOP the runner of `run_id` right after it recorded a heartbeat; answer its pid."""
    with closing(SqlRunStore(f"sqlite:///{project.root}/.flowstage/flowstage.db")) as store:

        def beat() -> tuple[int, float] | None:
            run = store.get_run(run_id, with_tasks=False)
            assert run is not None
            return (run.runner_pid, run.heartbeat_at) if run.runner_pid and run.heartbeat_at else None

        pid, first = wait_until(beat, 30, "a heartbeat of the runner", every=0.01)
        wait_until(lambda: beat() != (pid, first), 30, "the next heartbeat of the runner", every=0.01)
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_catalog_routes_list_and_show_crawled_tables(project: Project, server: Server) -> None:
    project.write("data/orders.csv", "id,amount\n1,2.5\n2,NA\n")
    project.write(
        "workflows/crawl.yaml",
        """
        name: crawl
        tasks:
          - {name: crawl_orders, crawl: {path: data/*.csv, table: raw.orders}}
        """,
    )
    client = server.client
    wait_status(client, start(client, "crawl"), "succeeded")
    tables = client.get("/catalog").json()
    assert [t["name"] for t in tables] == ["raw.orders"]
    table = client.get("/catalog/raw.orders").json()
    assert [c["name"] for c in table["columns"]] == ["id", "amount"]
    assert [h["version"] for h in table["history"]] == [1]
    assert "no catalog table" in assert_problem(client.get("/catalog/raw.nope"), 404)["detail"]


def test_no_connection_password_appears_in_answers(project: Project, tmp_path: Path) -> None:
    url = "postgresql+psycopg://app:s3cr3t-pw@127.0.0.1:1/shop"
    project.write("flowstage.yaml", f"connections:\n  shop: {url}\n")
    leaky = f"""
name: leaky
variables: {{target: "{url}"}}
tasks:
  - {{name: say, shell: "echo connecting to {url}"}}
"""
    with serve(project, tmp_path / "leaky.log") as running:
        client = running.client
        assert deploy(client, leaky).status_code == 201
        run_id = start(client, "leaky")
        wait_status(client, run_id, "succeeded")
        answers = {
            path: client.get(path).text
            for path in ("/workflows", "/workflows/leaky", f"/runs/{run_id}", f"/runs/{run_id}/logs", "/runs")
        }
        assert "connecting to" in answers[f"/runs/{run_id}/logs"]
        leaked = [path for path, text in answers.items() if "s3cr3t-pw" in text]
        assert leaked == []
        assert "***" in answers[f"/runs/{run_id}"]
    assert "s3cr3t-pw" not in (tmp_path / "leaky.log").read_text(errors="replace")


def test_the_server_refuses_a_non_loopback_host_without_auth(project: Project) -> None:
    result = project.cli("server", "--host", "0.0.0.0", "--port", str(_free_port()), timeout=60)
    assert result.code == 2
    assert "without auth" in result.err
    assert "0.0.0.0" in result.err


def test_a_run_record_answers_304_while_unchanged_and_a_new_etag_once_the_run_moves(server: Server, project: Project) -> None:
    client = server.client
    assert deploy(client, GATED).status_code == 201
    run_id = start(client, "gated")
    wait_until(lambda: (project.root / "started.txt").exists(), 60, "the first task to run")
    wait_until(lambda: client.get(f"/runs/{run_id}").json()["tasks"][1]["status"] == "running", 60, "the gate to wait")
    first = client.get(f"/runs/{run_id}")
    tag = first.headers["etag"]
    again = client.get(f"/runs/{run_id}", headers={"If-None-Match": tag})
    assert again.status_code == 304, again.text
    assert again.content == b""
    assert again.headers["etag"] == tag
    (project.root / "go.txt").write_text("go\n")
    ended = wait_status(client, run_id, "succeeded")
    moved = client.get(f"/runs/{run_id}", headers={"If-None-Match": tag})
    assert moved.status_code == 200
    assert moved.headers["etag"] != tag
    assert moved.json() == ended
    assert moved.json()["status"] == "succeeded"
