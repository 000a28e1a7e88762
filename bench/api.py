"""The REST API and its live events, measured over loopback from a second process.

Two measures, on the SQLite store and (with ``--postgres URL``) on PostgreSQL:
  * ``GET /api/v1/runs/{id}`` of a finished 50-task run: 32 keep-alive connections for 20 s from
    a load process of its own, as fast as answers come and then at fixed rates (500 and 1,000
    requests/s, each latency counted from when its request was due); requests per second and
    latency p50 / p99 / max;
  * live events: 100 subscribers of one running run (``GET /api/v1/runs/{id}/events``); whether
    each got every event of the run after its snapshot, and the delay from an event's record
    time to its arrival at each subscriber, p50 / p99 / max.
The load process speaks plain HTTP/1.1 on asyncio streams (no client library in the way), so the
client costs little of the two cores the server has too. ``flowstage server`` runs as it would
for a user, with an admin token (auth on).
A benchmark, not a test: ``.venv/bin/python bench/api.py [--seconds 20] [--postgres URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

FIFTY = "name: fifty\ntasks:\n" + "".join(
    f"  - {{name: t{i:02d}, python: tasks/work.py:noop, in_process: true}}\n" for i in range(50)
)
# a run that waits for its subscribers, then records ~150 events over a second or two
LIVE = "name: live\ntasks:\n  - {name: gate, wait_for: {file: go.txt}, poke: 0.05s, timeout: 120s}\n" + "".join(
    f"  - {{name: s{i:02d}, python: tasks/work.py:pause, in_process: true, after: [{f's{i - 1:02d}' if i else 'gate'}]}}\n"
    for i in range(50)
)
WORK = "import time\n\ndef noop():\n    return None\n\ndef pause():\n    time.sleep(0.02)\n"


def flowstage(*args: str) -> list[str]:
    return [sys.executable, "-m", "flowstage", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the load process ------------------------------------------------------------------------


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> int:
    writer.write(head)
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def _hammer(port: int, path: str, token: str, connections: int, seconds: float, rate: float) -> dict[str, Any]:
    """`connections` keep-alive connections asking `path` for `seconds`: as fast as answers come
    (`rate` 0), or at `rate` requests/s in all, each latency counted from when its request was due
    (so a stall of the server counts for every request it held up, not only the one it hit)."""
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    began = time.perf_counter()
    deadline = began + seconds

    async def one(index: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = 0
        try:
            while True:
                due = time.perf_counter()
                if rate > 0:
                    due = began + (sent * connections + index) / rate
                    if due > deadline:
                        return
                    wait = due - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                elif due > deadline:
                    return
                status = await _request(reader, writer, head)
                latencies.append(time.perf_counter() - due)
                errors += status != 200
                sent += 1
        finally:
            writer.close()

    await asyncio.gather(*(one(i) for i in range(connections)))
    wall = time.perf_counter() - began
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / wall,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


async def _subscribe(port: int, path: str, token: str, ready: asyncio.Event, got: list[tuple[int, float, float]]) -> None:
    """Read one SSE stream to its end: (event id, recorded at, arrived at) of each event after the snapshot."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    event_id, kind, data = None, None, None
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            text = line.decode().rstrip("\r\n")
            if text.startswith("id: "):
                event_id = int(text[4:])
            elif text.startswith("event: "):
                kind = text[7:]
            elif text.startswith("data: "):
                data = text[6:]
            elif text == "" and kind is not None:
                if kind == "snapshot":
                    ready.set()
                else:
                    at = json.loads(data or "{}")["at"]
                    got.append((int(event_id or 0), _epoch(at), time.time()))
                    if kind == "run_finished":
                        return
                event_id, kind, data = None, None, None
    finally:
        writer.close()


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


async def _listen(port: int, path: str, token: str, subscribers: int, gate: Path) -> dict[str, Any]:
    readies = [asyncio.Event() for _ in range(subscribers)]
    streams: list[list[tuple[int, float, float]]] = [[] for _ in range(subscribers)]
    tasks = [asyncio.create_task(_subscribe(port, path, token, readies[i], streams[i])) for i in range(subscribers)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    gate.write_text("go\n")
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    ids = [[event_id for event_id, _, _ in stream] for stream in streams]
    delays = [arrived - at for stream in streams for _, at, arrived in stream]
    return {
        "subscribers": subscribers,
        "events": len(ids[0]),
        "ids": sorted(set().union(*ids)),
        "all_same": all(stream == ids[0] for stream in ids),
        "p50_ms": percentile(delays, 0.50) * 1000,
        "p99_ms": percentile(delays, 0.99) * 1000,
        "max_ms": max(delays) * 1000,
    }


def load_main(argv: list[str]) -> None:
    mode, port, path, token, count, extra, *rate = argv
    if mode == "get":
        result = asyncio.run(_hammer(int(port), path, token, int(count), float(extra), float(rate[0]) if rate else 0.0))
    else:
        result = asyncio.run(_listen(int(port), path, token, int(count), Path(extra)))
    print(json.dumps(result))


# --- the driver ------------------------------------------------------------------------------


def write_project(root: Path, store: str | None) -> None:
    (root / "tasks").mkdir(parents=True)
    (root / "workflows").mkdir()
    (root / "tasks" / "work.py").write_text(WORK)
    (root / "workflows" / "fifty.yaml").write_text(FIFTY)
    (root / "workflows" / "live.yaml").write_text(LIVE)
    (root / "flowstage.yaml").write_text(f"store: {store}\n" if store else "{}\n")


def run_load(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--load", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the load process failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(label: str, store: str | None, seconds: float, connections: int, subscribers: int, rates: list[float]) -> None:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_project(root, store)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSTAGE_")}
        subprocess.run(flowstage("deploy", "workflows"), cwd=root, env=env, check=True, capture_output=True)
        made = subprocess.run(
            flowstage("token", "create", "--role", "admin"), cwd=root, env=env, check=True, capture_output=True, text=True
        )
        token = made.stdout.strip().splitlines()[-1]
        port = free_port()
        log = open(root / "server.log", "wb")  # noqa: SIM115 -- closed after the server stops
        server = subprocess.Popen(
            flowstage("server", "--port", str(port)), cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers, timeout=30) as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if client.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit((root / "server.log").read_text())
                    time.sleep(0.1)
                run_id = client.post("/workflows/fifty/runs", json={}).json()["id"]
                while client.get(f"/runs/{run_id}").json()["status"] == "running":
                    time.sleep(0.2)
                tasks = len(client.get(f"/runs/{run_id}").json()["tasks"])
                target = f"/api/v1/runs/{run_id}"
                run_load("get", str(port), target, token, str(connections), "2")  # warm-up
                for rate in (0.0, *rates):
                    got = run_load("get", str(port), target, token, str(connections), str(seconds), str(rate))
                    how = "as fast as it answers" if not rate else f"at {rate:.0f} requests/s"
                    print(
                        f"{label}: GET /runs/{{id}} ({tasks} tasks), {connections} connections, {how}, {seconds:.0f} s: "
                        f"{got['rps']:.0f} requests/s, p50 {got['p50_ms']:.1f} ms, p99 {got['p99_ms']:.1f} ms, "
                        f"max {got['max_ms']:.1f} ms, {got['errors']} non-200",
                        flush=True,
                    )
                live_id = client.post("/workflows/live/runs", json={}).json()["id"]
                heard = run_load(
                    "sse", str(port), f"/api/v1/runs/{live_id}/events", token, str(subscribers), str(root / "go.txt")
                )
                recorded = _event_ids(client, live_id, token, port)
                missing = [i for i in recorded if i > min(heard["ids"], default=0) and i not in heard["ids"]]
                print(
                    f"{label}: SSE, {subscribers} subscribers of one run, {heard['events']} events each "
                    f"(every subscriber the same: {heard['all_same']}; missed: {len(missing)}): "
                    f"delivery p50 {heard['p50_ms']:.1f} ms, p99 {heard['p99_ms']:.1f} ms, max {heard['max_ms']:.1f} ms"
                )
        finally:
            server.terminate()
            server.wait(30)
            log.close()


def _event_ids(client: Any, run_id: str, token: str, port: int) -> list[int]:
    """Every event id of the run, read back by a stream from the start (`?after=0`)."""
    ids: list[int] = []
    with client.stream("GET", f"/runs/{run_id}/events", params={"after": 0}) as answer:
        for line in answer.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
    return ids


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=float, action="append", help="also at this many requests/s (default: 500 and 1000)")
    parser.add_argument("--postgres", help="also on a PostgreSQL store: a server URL whose user may create databases")
    parser.add_argument("--only-postgres", action="store_true")
    args = parser.parse_args()
    rates = args.rate or [500.0, 1000.0]
    if not args.only_postgres:
        measure("sqlite", None, args.seconds, args.connections, args.subscribers, rates)
    if args.postgres:
        with postgres_database(args.postgres) as url:
            measure("postgresql", url, args.seconds, args.connections, args.subscribers, rates)


class postgres_database:
    """A fresh database on the server of `url` for one measure, dropped after it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"flowstage_bench_{uuid.uuid4().hex[:8]}"

    def _admin(self, sql: str) -> None:
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(sql)
        finally:
            engine.dispose()

    def __enter__(self) -> str:
        import sqlalchemy

        self._admin(f"CREATE DATABASE {self.name}")
        return sqlalchemy.make_url(self.url).set(database=self.name).render_as_string(hide_password=False)

    def __exit__(self, *exc: object) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


if __name__ == "__main__":
    main()
