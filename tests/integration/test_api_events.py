"""Live events over real HTTP (SPEC §5.2): a snapshot first, then each change with its cursor as `id:`;
`Last-Event-ID` resumes with nothing lost or repeated; a run's stream ends after its final event."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Project
from tests.integration.test_api import GATED, Server, deploy, serve
from tests.records import wait_until


@pytest.fixture
def server(project: Project, tmp_path: Path) -> Iterator[Server]:
    with serve(project, tmp_path / "server.log") as running:
        yield running


def frames(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Server-sent events as {"id", "event", "data"}; comments as {"comment"}."""
    frame: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if frame:
                yield frame
            frame = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            frame[key] = json.loads(value) if key == "data" else int(value) if key == "id" else value


def read_stream(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every frame of a stream that ends by itself (a run's stream ends after the run's final event)."""
    with client.stream("GET", path, headers=headers or {}, timeout=httpx.Timeout(120, read=60)) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        return list(frames(answer.iter_lines()))


def test_a_run_stream_sends_a_snapshot_then_every_change_until_the_run_ends(server: Server, project: Project) -> None:
    assert deploy(server.client, GATED).status_code == 201
    run_id = server.client.post("/workflows/gated/runs", json={"variables": {}}).json()["id"]
    got: list[dict[str, Any]] = []

    def follow() -> None:
        with server.client.stream("GET", f"/runs/{run_id}/events", timeout=httpx.Timeout(120, read=60)) as answer:
            for frame in frames(answer.iter_lines()):
                got.append(frame)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_until(lambda: (project.root / "started.txt").exists(), 60, "the run's first task")
    wait_until(lambda: any(f.get("event") == "snapshot" for f in got), 60, "the stream's snapshot")
    (project.root / "go.txt").write_text("go")  # only now can the run end: the stream is open
    reader.join(timeout=120)
    assert not reader.is_alive(), "the stream did not end with the run"

    events = [f for f in got if "event" in f]
    assert events[0]["event"] == "snapshot"
    assert events[0]["data"]["id"] == run_id
    assert {n["id"] for n in events[0]["data"]["graph"]["nodes"]} == {"started", "gate"}
    changes = events[1:]
    assert changes[-1]["event"] == "run_finished"
    assert changes[-1]["data"]["status"] == "succeeded"
    ids = [f["id"] for f in changes]
    assert ids == sorted(set(ids)), "ids are the cursor: increasing, never repeated"
    assert all(i > events[0]["id"] for i in ids)
    statuses = [(f["data"]["task"], f["data"]["status"]) for f in changes if f["event"] == "task_status"]
    # the stream may open once `gate` runs already: then the snapshot shows it running
    at_start = {n["id"]: n["status"] for n in events[0]["data"]["graph"]["nodes"]}
    assert ("gate", "running") in statuses or at_start["gate"] == "running"
    assert statuses[-1] == ("gate", "succeeded")

    # the record agrees with the stream
    record = server.client.get(f"/runs/{run_id}").json()
    assert record["status"] == "succeeded"

    # a client that saw up to a middle event gets exactly the rest: nothing lost, nothing repeated
    middle = ids[len(ids) // 2]
    again = read_stream(server.client, f"/runs/{run_id}/events", {"Last-Event-ID": str(middle)})
    assert [f["id"] for f in again if "event" in f] == [i for i in ids if i > middle]
    assert not any(f.get("event") == "snapshot" for f in again)
    assert [f["id"] for f in read_stream(server.client, f"/runs/{run_id}/events?after={middle}") if "event" in f] == [
        i for i in ids if i > middle
    ]


def test_the_stream_of_every_run_follows_runs_started_after_it_opened(server: Server, project: Project) -> None:
    assert deploy(server.client, GATED).status_code == 201
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def follow() -> None:
        with server.client.stream("GET", "/events", timeout=httpx.Timeout(120, read=60)) as answer:
            for frame in frames(answer.iter_lines()):
                seen.append(frame)
                if frame.get("event") == "run_finished" or stop.is_set():
                    return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_until(lambda: any(f.get("event") == "snapshot" for f in seen), 30, "the snapshot")
    started = time.monotonic()
    run_id = server.client.post("/workflows/gated/runs", json={"variables": {}}).json()["id"]
    wait_until(lambda: (project.root / "started.txt").exists(), 60, "the run's first task")
    (project.root / "go.txt").write_text("go")
    reader.join(timeout=120)
    stop.set()
    runs = {f["data"]["run_id"] for f in seen if f.get("event") not in (None, "snapshot")}
    assert runs == {run_id}
    assert seen[-1]["event"] == "run_finished"
    assert time.monotonic() - started < 120


def test_an_unknown_run_or_a_bad_cursor_is_a_problem(server: Server) -> None:
    missing = server.client.get("/runs/nope/events")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    bad = server.client.get("/events", headers={"Last-Event-ID": "yesterday"})
    assert bad.status_code == 422
    assert "Last-Event-ID" in bad.json()["detail"]


def test_the_stream_of_a_run_that_already_ended_ends_after_its_snapshot(server: Server, project: Project) -> None:
    (project.root / "go.txt").write_text("go")  # nothing waits: the run ends at once
    assert deploy(server.client, GATED).status_code == 201
    run_id = server.client.post("/workflows/gated/runs", json={"variables": {}}).json()["id"]
    wait_until(lambda: server.client.get(f"/runs/{run_id}").json()["status"] == "succeeded", 60, "the run to end")
    got = read_stream(server.client, f"/runs/{run_id}/events")
    assert [f["event"] for f in got if "event" in f] == ["snapshot"]
    assert got[0]["data"]["status"] == "succeeded"
