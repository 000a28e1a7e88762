"""An http task's URL: template values are percent-encoded for the part of the URL they land in.

A value rendered into a path segment cannot add ``/``, ``?``, ``#`` or a ``..`` segment; into a
query key or value it cannot add ``&``, ``=`` or ``#``. A whole-URL variable goes only in
`base_url:` (taken as written, checked as an http(s) URL); `url:` is then a path joined to it,
still encoded. A real HTTP server on 127.0.0.1 records the raw request line it received.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.conftest import Project
from tests.records import record_of, tasks_of


class RecordingServer:
    """Answers 200 (after `failures` answers 500) and records the raw path and Authorization of each request."""

    def __init__(self, failures: int = 0) -> None:
        self.paths: list[str] = []
        self.authorizations: list[str | None] = []
        self.failures = failures  # answer 500 to this many requests first
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                server.authorizations.append(self.headers.get("Authorization"))
                fail = server.failures > 0
                server.failures -= 1
                body = b'{"ok": false}' if fail else b'{"ok": true}'
                self.send_response(500 if fail else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as s:
        yield s


def call(project: Project, url_keys: str, *variables: str, code: int = 0) -> dict[str, Any]:
    project.write(
        "workflows/call.yaml",
        f"""
        name: call
        variables: {{name: "", q: "", base: ""}}
        tasks:
          - name: fetch
            http: {{{url_keys}}}
        """,
    )
    args = [a for v in variables for a in ("--var", v)]
    result = project.cli("run", "call", *args, "--json")
    assert result.code == code, result
    return record_of(result)


TRAVERSAL = "../../admin?role=admin&x="


def test_a_path_value_cannot_climb_out_of_its_segment_or_add_a_query(project: Project, server: RecordingServer) -> None:
    port = server.base.rsplit(":", 1)[1]
    call(project, f'url: "http://127.0.0.1:{port}/items/{{{{ var.name }}}}"', f"name={TRAVERSAL}")

    (path,) = server.paths
    assert path == "/items/..%2F..%2Fadmin%3Frole%3Dadmin%26x%3D"
    parts = urlsplit(path)
    assert parts.query == ""
    assert parts.path.split("/") == ["", "items", "..%2F..%2Fadmin%3Frole%3Dadmin%26x%3D"]
    assert unquote(parts.path.split("/")[2]) == TRAVERSAL  # the value arrives whole, as one segment


def test_a_query_value_cannot_add_a_parameter_or_a_fragment(project: Project, server: RecordingServer) -> None:
    port = server.base.rsplit(":", 1)[1]
    url = f'url: "http://127.0.0.1:{port}/search?q={{{{ var.q }}}}&page=1"'
    call(project, url, "q=shoes&page=99&admin=1#top")

    (path,) = server.paths
    assert parse_qs(urlsplit(path).query) == {"q": ["shoes&page=99&admin=1#top"], "page": ["1"]}


@pytest.mark.parametrize("value", ["..", "."])
def test_a_value_that_is_a_dot_segment_fails_the_task_before_any_request(
    project: Project, server: RecordingServer, value: str
) -> None:
    port = server.base.rsplit(":", 1)[1]
    record = call(project, f'url: "http://127.0.0.1:{port}/items/{{{{ var.name }}}}/x"', f"name={value}", code=1)

    fetch = tasks_of(record)["fetch"]
    assert fetch["status"] == "failed"
    assert f"makes a '{value}' path segment" in fetch["error"]
    assert server.paths == []


def test_a_whole_url_variable_goes_in_base_url_and_the_path_is_still_encoded(project: Project, server: RecordingServer) -> None:
    record = call(
        project,
        'base_url: "{{ var.base }}/api/", url: "/items/{{ var.name }}", params: {page: 2}',
        f"base={server.base}",
        f"name={TRAVERSAL}",
    )

    assert tasks_of(record)["fetch"]["status"] == "succeeded"
    assert server.paths == ["/api/items/..%2F..%2Fadmin%3Frole%3Dadmin%26x%3D?page=2"]


def test_a_whole_url_variable_in_url_is_refused_with_a_pointer_to_base_url(project: Project) -> None:
    project.write(
        "workflows/call.yaml",
        """
        name: call
        variables: {base: ""}
        tasks:
          - name: fetch
            http: {url: "{{ var.base }}/items"}
        """,
    )
    result = project.cli("validate", "workflows/call.yaml")

    assert result.code == 2, result
    assert "base_url" in result.out + result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("ftp://127.0.0.1/x", "base_url: not an http(s) URL"),
        ("http://127.0.0.1/x?token=1", "must not carry a query or fragment"),
    ],
)
def test_a_rendered_base_url_is_checked_as_an_http_url(project: Project, base: str, message: str) -> None:
    record = call(project, 'base_url: "{{ var.base }}", url: /items', f"base={base}", code=1)

    assert message in tasks_of(record)["fetch"]["error"]
