"""`GET /health` tells whether the server can do its work: its run store answers, its scheduler runs."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from flowstage.api.server import create_app
from flowstage.settings import load_project
from tests.conftest import Project
from tests.integration.test_api import _free_port, serve
from tests.records import wait_until

HEALTHY = {"status": "ok", "store": "ok", "scheduler": "ok"}


def test_a_live_server_is_healthy_with_its_version(project: Project, tmp_path: Path) -> None:
    with serve(project, tmp_path / "server.log") as server:
        answer = server.client.get("/health")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == {**HEALTHY, "version": body["version"]}
    assert body["version"]


class Relay:
    """A TCP relay to a database server that the test can cut, as if that server went away."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.open = True
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if not self.open:
                    client.close()  # a connection the other end sees dropped at once
                    continue
                upstream = socket.create_connection(self.target)
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """Drop every connection and every new one."""
        with self._lock:
            self.open = False
            for s in self._sockets:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def mend(self) -> None:
        with self._lock:
            self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def relayed_store_url(pg_schema_url: str) -> Iterator[tuple[str, Relay]]:
    """A PostgreSQL store's URL through a `Relay`."""
    url = sa.engine.make_url(pg_schema_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False), relay
    finally:
        relay.close()


def test_a_server_whose_store_is_unreachable_answers_503_degraded_without_its_url_and_recovers(
    project: Project, tmp_path: Path, relayed_store_url: tuple[str, Relay]
) -> None:
    url, relay = relayed_store_url
    project.write("flowstage.yaml", f"store: '{url}'\n")
    with serve(project, tmp_path / "server.log") as server:
        assert server.client.get("/health").json()["store"] == "ok"
        relay.cut()
        answer = server.client.get("/health")
        assert answer.status_code == 503, answer.text
        assert answer.json() == {**HEALTHY, "status": "degraded", "store": "unreachable", "version": answer.json()["version"]}
        for part in (str(relay.port), "postgresql", sa.engine.make_url(url).database or "?"):
            assert part not in answer.text
        relay.mend()
        wait_until(lambda: server.client.get("/health").status_code == 200, 30, "the store to answer again")
    assert "health: the run store does not answer" in server.output()


def test_a_server_whose_scheduler_stopped_answers_503_degraded(project: Project) -> None:
    # the app served by uvicorn in this process, so that the test can stop its scheduler
    app = create_app(load_project(root=project.root))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30) as client:
            wait_until(lambda: server.started, 30, "the server to start")
            assert client.get("/health").json()["scheduler"] == "ok"
            app.state.scheduler.stop()
            app.state.scheduler_thread.join(30)
            answer = client.get("/health")
    finally:
        server.should_exit = True
        serving.join(30)
    assert answer.status_code == 503, answer.text
    assert answer.json() == {**HEALTHY, "status": "degraded", "scheduler": "stopped", "version": answer.json()["version"]}
