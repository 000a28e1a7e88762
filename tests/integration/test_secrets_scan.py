"""A known password through every way in, then every way out scanned for it (SPEC §1).

`test_secrets.py` checks a password in a connection that cannot be opened; this scan puts one
password (`PASSWORD`) everywhere a user may legitimately put a secret — a PostgreSQL connection in
`flowstage.yaml` through `${SHOP_PASSWORD}`, another as a percent-encoded `FLOWSTAGE_CONN_*` URL, a
shell task's `env:` (`{connection: ...}` and `{env: ...}`), webhook notifier URLs (one answering, one
down) — and runs tasks of every kind that succeed and that fail: sql on PostgreSQL (the real server
of FLOWSTAGE_TEST_POSTGRES_URL, which trusts any password), SQLite and DuckDB, shell, python (a
worker and in-process), http (an answer that echoes the password) and dataflows (a PostgreSQL table
sink, a missing source table). Then every output is read: `run` (piped and `--json`), `show`,
`show --json`, `logs`, `logs --json`, `runs --json`, `alerts --json`, the REST API (`GET
/runs/{id}`, `/runs/{id}/logs`, `/runs/{id}/events`) with the server's own log, and the raw bytes
of the SQLite run store and its WAL. The password must appear in none of them: not plain,
percent-encoded, nor base64-encoded.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import FLOWSTAGE, Project
from tests.integration.test_api import _free_port
from tests.records import record_of, tasks_of, wait_until

pytestmark = pytest.mark.postgres

PASSWORD = "Pw-3xq!9zZ"
ENCODED = quote(PASSWORD, safe="")  # Pw-3xq%219zZ
FORMS = {
    "plain": PASSWORD.encode(),
    "percent-encoded": ENCODED.encode(),
    "percent-encoded, lower case": ENCODED.lower().encode(),
    "base64": base64.b64encode(PASSWORD.encode()).rstrip(b"="),
    "base64 of user:password": base64.b64encode(f"hook:{PASSWORD}".encode()).rstrip(b"="),
    "urlsafe base64": base64.urlsafe_b64encode(PASSWORD.encode()).rstrip(b"="),
}

OK_WORKFLOW = """
name: scan_ok
preferences: {log_level: debug}
alerts:
  - {on: completed, notify: [ops, down]}
tasks:
  - {name: pg_yaml, connection: pg, sql: "SELECT 1 AS one", save: one}
  - {name: pg_env, connection: envpg, sql: "SELECT 2 AS two", save: two}
  - {name: sqlite, connection: local, sql: "CREATE TABLE IF NOT EXISTS t (x INTEGER); INSERT INTO t VALUES (1)"}
  - {name: duck, sql: "SELECT 3 AS three", save: three}
  - name: shell
    shell: 'echo "url=$SHOP_URL pw=$SHOP_PW env=$ENV_URL"; echo "stderr $SHOP_PW" >&2'
    env: {SHOP_URL: {connection: pg}, SHOP_PW: {env: SHOP_PASSWORD}, ENV_URL: {connection: envpg}}
  - {name: py_worker, python: "tasks/leak.py:tell", save: told}
  - {name: py_worker_log, python: "tasks/leak.py:log", save: logged}
  # in-process: neither print nor logging (what in-process code prints or logs reaches the CLI's own
  # stdout and stderr, unmasked: being fixed where python tasks run); it reads the password only
  - {name: py_in_process, python: "tasks/leak.py:quiet", in_process: true}
  - {name: http_ok, http: {base_url: "{{ var.base }}", url: /ok, method: GET}, save: answer}
  - name: dataflow_sink
    dataflow:
      name: to_pg
      sources: {nums: {file: nums.csv}}
      steps: [{from: nums}]
      sink: {table: scan_out, connection: pg}
variables: {base: ""}
"""

FAIL_WORKFLOW = """
name: scan_fail
preferences: {log_level: debug}
alerts:
  - {on: failed, notify: [ops, down]}
tasks:
  - {name: pg_no_database, connection: pgbad, sql: "SELECT 1"}
  - {name: pg_no_table, connection: pg, sql: "SELECT * FROM no_such_table_scan"}
  - {name: pg_env_no_table, connection: envpg, sql: "SELECT * FROM no_such_table_scan"}
  - {name: sqlite_no_table, connection: local, sql: "SELECT * FROM no_such_table_scan"}
  - {name: duck_no_table, sql: "SELECT * FROM no_such_table_scan"}
  - name: shell_fails
    shell: 'echo "url=$SHOP_URL pw=$SHOP_PW"; echo "failing with $SHOP_PW" >&2; exit 3'
    env: {SHOP_URL: {connection: pg}, SHOP_PW: {env: SHOP_PASSWORD}}
  - {name: py_worker_fails, python: "tasks/leak.py:fail"}
  - {name: py_in_process_fails, python: "tasks/leak.py:fail", in_process: true}
  - {name: http_fails, http: {base_url: "{{ var.base }}", url: /fail, method: POST, json: {a: 1}}}
  - name: dataflow_missing_table
    dataflow:
      name: from_pg
      sources: {gone: {table: public.no_such_table_scan, connection: pg}}
      steps: [{from: gone}]
      sink: {file: out/gone.parquet}
variables: {base: ""}
"""

LEAK = """
import sys

def _password():
    with open("secret.txt") as f:
        return f.read().strip()

def tell():
    print("the password is", _password())
    print("on stderr", _password(), file=sys.stderr)
    return "told"

def log():
    import logging
    logging.getLogger("tasks.leak").warning("logging in with %s", _password())
    return "logged"

def quiet():
    return "quiet" if _password() else "none"

def fail():
    raise RuntimeError("cannot log in with " + _password())
"""


class Hooks:
    """An HTTP server on 127.0.0.1: webhook deliveries, and answers that carry the password."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith("/ok"):
                    self._answer(200, b'{"fine": true}')
                else:
                    self._answer(500, json.dumps({"error": f"bad password {PASSWORD}"}).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path.startswith("/hook"):
                    hooks.deliveries.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                    self._answer(200, b"{}")
                else:
                    self._answer(500, json.dumps({"error": f"bad password {PASSWORD}"}).encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Hooks:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@dataclass
class Scan:
    project: Project
    env: dict[str, str]
    runs: dict[str, dict[str, Any]]
    outputs: dict[str, bytes] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)


def _pg_url(base: str, password: str, database: str | None = None) -> str:
    url = sa.engine.make_url(base)
    port = f":{url.port}" if url.port else ""
    query = "&".join(f"{k}={v}" for k, v in url.query.items())
    return f"{url.drivername}://{url.username}:{password}@{url.host}{port}/{database or url.database}" + (
        f"?{query}" if query else ""
    )


def _serve_and_read(project: Project, env: dict[str, str], run_ids: list[str], log: Path) -> dict[str, bytes]:
    """`flowstage server` with a token: each run's record, logs and events, and the server's own log."""
    token = project.cli("token", "create", "--role", "viewer", env=env)
    assert token.code == 0, token
    secret = token.out.strip().splitlines()[-1]
    port = _free_port()
    read: dict[str, bytes] = {"token create": (token.out + token.err).encode()}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*FLOWSTAGE, "server", "--port", str(port)], cwd=project.root, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers, timeout=60) as client:

            def answers() -> bool:
                assert proc.poll() is None, log.read_text(errors="replace")
                try:
                    return client.get("/health", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(answers, 60, "the server to answer /health")
            assert client.get("/runs", headers={"Authorization": ""}).status_code == 401
            for run_id in run_ids:
                for path in (f"/runs/{run_id}", f"/runs/{run_id}/logs", f"/runs/{run_id}/logs?level=debug", "/runs", "/catalog"):
                    answer = client.get(path)
                    assert answer.status_code == 200, (path, answer.text)
                    read[f"GET {path}"] = answer.content
                # the stream of a run that ended ends after its snapshot
                with client.stream("GET", f"/runs/{run_id}/events", timeout=httpx.Timeout(30, read=20)) as stream:
                    assert stream.status_code == 200
                    read[f"GET /runs/{run_id}/events"] = b"".join(stream.iter_bytes())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    read["server log"] = log.read_bytes()
    return read


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Scan]:
    root = tmp_path_factory.mktemp("scan") / "proj"
    root.mkdir()
    project = Project(root)
    with Hooks() as hooks:
        project.write(
            "flowstage.yaml",
            f"""
            connections:
              pg: "{_pg_url(postgres_url, "${SHOP_PASSWORD}")}"
              pgbad: "{_pg_url(postgres_url, "${SHOP_PASSWORD}", "no_such_database_scan")}"
              local: sqlite:///shop.db
            notifiers:
              ops: {{webhook: "http://hook:${{SHOP_PASSWORD}}@127.0.0.1:{hooks.port}/hook?token=${{SHOP_PASSWORD}}"}}
              down: {{webhook: "http://hook:${{SHOP_PASSWORD}}@127.0.0.1:1/hook"}}
            """,
        )
        project.write("workflows/scan_ok.yaml", OK_WORKFLOW)
        project.write("workflows/scan_fail.yaml", FAIL_WORKFLOW)
        project.write("tasks/leak.py", LEAK)
        project.write("secret.txt", PASSWORD + "\n")
        project.write("nums.csv", "n\n1\n2\n")
        env = project.env(SHOP_PASSWORD=PASSWORD, FLOWSTAGE_CONN_ENVPG=_pg_url(postgres_url, ENCODED))
        outputs: dict[str, bytes] = {}
        runs: dict[str, dict[str, Any]] = {}
        for name, code in (("scan_ok", 0), ("scan_fail", 1)):
            args = ("run", name, "--var", f"base={hooks.url}")
            piped = project.cli(*args, env=env)
            as_json = project.cli(*args, "--json", env=env)
            assert piped.code == code, piped
            assert as_json.code == code, as_json
            outputs[f"run {name}"] = (piped.out + piped.err).encode()
            outputs[f"run {name} --json"] = (as_json.out + as_json.err).encode()
            runs[name] = record_of(as_json)
        for record in runs.values():
            run_id = record["id"]
            for args in (("show", run_id), ("show", run_id, "--json"), ("logs", run_id), ("logs", run_id, "--json"),
                         ("logs", run_id, "--level", "debug"), ("alerts", "--run", run_id, "--json"), ("explain", run_id, "shell")):  # fmt: skip
                shown = project.cli(*args, env=env)
                assert shown.code in (0, 2), (args, shown)
                outputs[" ".join(args)] = (shown.out + shown.err).encode()
        listed = project.cli("runs", "--json", env=env)
        outputs["runs --json"] = (listed.out + listed.err).encode()
        deliveries = list(hooks.deliveries)
    logs_dir = tmp_path_factory.mktemp("scan_server")
    outputs.update(_serve_and_read(project, env, [r["id"] for r in runs.values()], logs_dir / "server.log"))
    for path in sorted((root / ".flowstage").glob("flowstage.db*")):
        if path.is_file():
            outputs[f"store file {path.name}"] = path.read_bytes()
    yield Scan(project, env, runs, outputs, deliveries)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS scan_out"))
    engine.dispose()


def test_the_runs_did_what_they_were_asked(scan: Scan) -> None:
    ok = tasks_of(scan.runs["scan_ok"])
    assert {n: t["status"] for n, t in ok.items() if t["status"] != "succeeded"} == {}
    assert scan.runs["scan_ok"]["variables"]["one"] == 1
    assert scan.runs["scan_ok"]["variables"]["two"] == 2
    failed = tasks_of(scan.runs["scan_fail"])
    assert {n for n, t in failed.items() if t["status"] != "failed"} == set(), failed
    assert "connection 'pgbad'" in failed["pg_no_database"]["error"]
    assert ":***@" in failed["pg_no_database"]["error"]
    assert "cannot log in with ***" in failed["py_worker_fails"]["error"]
    # each run (piped, then --json) alerted through the notifier that answers; the one down was given up
    assert len(scan.deliveries) == 4, scan.deliveries


def test_the_password_reached_the_tasks_that_asked_for_it(scan: Scan) -> None:
    # the runs really carried the secret: a scan that finds nothing proves something
    logs = scan.outputs[f"logs {scan.runs['scan_ok']['id']}"].decode()
    assert "pw=***" in logs
    assert "url=postgresql+psycopg://postgres:***@" in logs
    assert "the password is ***" in logs
    assert all(d["auth"] is None or PASSWORD not in d["auth"] for d in scan.deliveries)


def test_every_output_scanned(scan: Scan) -> None:
    names = set(scan.outputs)
    for expected in ("runs --json", "server log", "store file flowstage.db", "token create"):
        assert expected in names
    for record in scan.runs.values():
        run_id = record["id"]
        for what in (f"show {run_id} --json", f"logs {run_id} --json", f"GET /runs/{run_id}", f"GET /runs/{run_id}/events"):
            assert what in names, what
            assert scan.outputs[what].strip(), what


@pytest.mark.parametrize("form", list(FORMS))
def test_the_password_appears_in_no_output(scan: Scan, form: str) -> None:
    needle = FORMS[form]
    leaks = [
        f"{where}: ...{data[max(0, data.index(needle) - 120) : data.index(needle) + 40]!r}..."
        for where, data in scan.outputs.items()
        if needle in data
    ]
    assert leaks == [], f"the password ({form}) leaked into: {leaks}"


def test_the_password_is_not_in_the_environment_of_the_test_runner(scan: Scan) -> None:
    # the scan's secret lives only in the environment given to the CLI, never in the test process
    assert PASSWORD not in os.environ.values()
