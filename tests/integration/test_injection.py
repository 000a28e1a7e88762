"""Variables carrying SQL, shell or template injection are bound or escaped, never executed (SPEC §8).

Each hostile value goes in through `--var x=...` and out through every kind that takes variables:
SQL `params:` (SQLite, DuckDB, and PostgreSQL / MariaDB), a shell command (as a whole word) and its
`env:`, a python task's `with:` (child process and in-process), an http task's JSON body and query
`params:`, a `wait_for: {sql:}` sensor's `params:` and a sub-workflow's `variables:`. One run per
value serves the tests of that value; each test checks that the value arrived verbatim and that
nothing else happened: the campaigns table is still there and no `pwned` file appeared.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from tests.conftest import Project
from tests.records import record_of, tasks_of

PAYLOADS = {
    "sql_quote": "x'; DROP TABLE campaigns; --",
    "subshell": "$(touch pwned)",
    "semicolon": "; touch pwned",
    "backticks": "`touch pwned`",
    "jinja_math": "{{ 7*7 }}",
    "jinja_mro": "{{ ''.__class__.__mro__ }}",
    "url": "http://127.0.0.1:1/x?a=1&b=2#f/../../etc/passwd",
    "newline": "x\ntouch pwned",
}

WORKFLOW = """
name: inject
variables: {x: "", base: ""}
stages:
  - name: setup
    tasks:
      - name: setup
        connection: shop
        sql: CREATE TABLE campaigns (id INTEGER PRIMARY KEY, name VARCHAR(200)); INSERT INTO campaigns VALUES (1, :name)
        params: {name: "{{ var.x }}"}
  - name: use
    tasks:
      - name: sql_echo
        connection: shop
        sql: SELECT :v AS v, COUNT(*) AS n FROM campaigns WHERE name = :v
        params: {v: "{{ var.x }}"}
        save: {sql_value: v, sql_matches: n}
      - name: duck_echo
        sql: SELECT :v AS v
        params: {v: "{{ var.x }}"}
        save: duck_value
      - name: shell_word
        shell: printf '%s\\n' {{ var.x }} > shell_word.txt
      - name: shell_env
        shell: printf '%s\\n' "$PAYLOAD" > shell_env.txt
        env: {PAYLOAD: "{{ var.x }}"}
      - name: python_child
        python: tasks/echo.py:echo
        with: {value: "{{ var.x }}"}
        save: python_child
      - name: python_in_process
        python: tasks/echo.py:echo
        in_process: true
        with: {value: "<{{ var.x }}>"}
        save: python_in_process
      - name: http_call
        http:
          base_url: "{{ var.base }}"
          url: /echo
          method: POST
          json: {value: "{{ var.x }}", nested: ["{{ var.x }}"]}
          params: {q: "{{ var.x }}"}
        save: http_answer
      - name: sensor
        wait_for:
          sql: SELECT COUNT(*) FROM campaigns WHERE name = :v
          connection: shop
          params: {v: "{{ var.x }}"}
        poke: 0.1s
        timeout: 20s
        save: sensor_value
      - name: sub
        workflow: child
        variables: {x: "{{ var.x }}"}
        save: sub_variables
  - name: check
    tasks:
      - name: still_there
        connection: shop
        sql: SELECT COUNT(*) FROM campaigns
        save: campaigns_left
"""

CHILD = """
name: child
variables: {x: ""}
tasks:
  - name: child_shell
    shell: printf '%s\\n' {{ var.x }} > child_word.txt
  - name: child_sql
    sql: SELECT :v AS v
    params: {v: "{{ var.x }}"}
    save: child_value
"""

ECHO = """
def echo(value):
    return [type(value).__name__, value]
"""


class EchoServer:
    """An HTTP server on 127.0.0.1 that records each request and answers it as JSON."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                url = urlsplit(self.path)
                seen = {"method": "POST", "path": url.path, "raw_query": url.query, "query": parse_qs(url.query), "json": body}
                server.requests.append(seen)
                answer = json.dumps({"json": body, "query": seen["query"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@dataclass
class Injected:
    payload: str
    project: Project
    record: dict[str, Any]
    requests: list[dict[str, Any]]
    cwd_pwned_before: bool

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return tasks_of(self.record)

    @property
    def variables(self) -> dict[str, Any]:
        return dict(self.record["variables"])


@pytest.fixture(scope="module")
def echo_server() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture(scope="module", params=list(PAYLOADS.values()), ids=list(PAYLOADS))
def injected(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, echo_server: EchoServer) -> Injected:
    """One run of the `inject` workflow with `x` set to a hostile value."""
    root = tmp_path_factory.mktemp("inject") / "proj"
    root.mkdir()
    project = Project(root)
    project.write("flowstage.yaml", "connections:\n  shop: sqlite:///shop.db\n")
    project.write("workflows/inject.yaml", WORKFLOW)
    project.write("workflows/child.yaml", CHILD)
    project.write("tasks/echo.py", ECHO)
    payload = str(request.param)
    cwd_pwned_before = Path("pwned").exists()
    echo_server.requests.clear()
    result = project.cli("run", "inject", "--var", f"x={payload}", "--var", f"base={echo_server.url}", "--json")
    assert result.code == 0, result
    return Injected(payload, project, record_of(result), list(echo_server.requests), cwd_pwned_before)


def test_run_succeeds_and_campaigns_table_is_still_there(injected: Injected) -> None:
    assert injected.record["status"] == "succeeded"
    assert all(t["status"] == "succeeded" for t in injected.record["tasks"]), injected.record["tasks"]
    assert injected.variables["campaigns_left"] == 1
    assert injected.variables["x"] == injected.payload
    engine = sa.create_engine(f"sqlite:///{injected.project.root / 'shop.db'}")
    try:
        with engine.connect() as conn:
            names = conn.execute(sa.text("SELECT name FROM campaigns")).scalars().all()
    finally:
        engine.dispose()
    assert names == [injected.payload]


def test_no_command_hidden_in_the_value_ran(injected: Injected) -> None:
    assert list(injected.project.root.rglob("pwned")) == []
    assert Path("pwned").exists() is injected.cwd_pwned_before


def test_sql_params_are_bound_and_come_back_unchanged(injected: Injected) -> None:
    variables = injected.variables
    assert variables["sql_value"] == injected.payload
    assert variables["sql_matches"] == 1
    assert variables["duck_value"] == injected.payload


def test_shell_command_gets_the_value_as_one_literal_word(injected: Injected) -> None:
    assert (injected.project.root / "shell_word.txt").read_text() == injected.payload + "\n"


def test_shell_env_carries_the_value_verbatim(injected: Injected) -> None:
    assert (injected.project.root / "shell_env.txt").read_text() == injected.payload + "\n"


def test_python_task_receives_the_exact_string(injected: Injected) -> None:
    assert injected.variables["python_child"] == ["str", injected.payload]
    assert injected.variables["python_in_process"] == ["str", f"<{injected.payload}>"]


def test_http_json_body_and_query_params_carry_the_value_verbatim(injected: Injected) -> None:
    assert len(injected.requests) == 1
    seen = injected.requests[0]
    assert seen["path"] == "/echo"
    assert seen["json"] == {"value": injected.payload, "nested": [injected.payload]}
    assert seen["query"] == {"q": [injected.payload]}
    assert injected.variables["http_answer"]["json"]["value"] == injected.payload


def test_wait_for_sql_params_are_bound(injected: Injected) -> None:
    sensor = injected.tasks["sensor"]
    assert sensor["status"] == "succeeded"
    assert injected.variables["sensor_value"] == 1
    # found on the first check: the bound value matched the stored name exactly
    assert sensor["metrics"]["checks"] == 1


def test_sub_workflow_variables_reach_the_child_run_verbatim(injected: Injected) -> None:
    sub = injected.tasks["sub"]
    assert sub["status"] == "succeeded"
    assert injected.variables["sub_variables"]["child_value"] == injected.payload
    assert injected.variables["sub_variables"]["x"] == injected.payload
    child = injected.project.cli("show", str(sub["metrics"]["sub_run_id"]), "--json")
    assert child.code == 0, child
    child_record = record_of(child)
    assert child_record["parent_run_id"] == injected.record["id"]
    assert child_record["variables"]["x"] == injected.payload
    assert (injected.project.root / "child_word.txt").read_text() == injected.payload + "\n"


def test_recorded_task_variables_hold_the_value_unrendered(injected: Injected) -> None:
    for name in ("sql_echo", "shell_word", "python_child", "http_call"):
        assert injected.tasks[name]["variables"]["x"] == injected.payload, name
    assert injected.tasks["sub"]["variables"]["x"] == injected.payload


@pytest.mark.parametrize(
    "backend",
    [pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mysql", marks=pytest.mark.mysql)],
)
def test_sql_params_on_server_databases_bind_every_hostile_value(
    project: Project, request: pytest.FixtureRequest, backend: str
) -> None:
    url = request.getfixturevalue("pg_schema_url" if backend == "postgres" else "mysql_db_url")
    names = [f"p{i}" for i in range(len(PAYLOADS))]
    items = ", ".join(f"var.{n}" for n in names)
    project.write(
        "workflows/server.yaml",
        f"""
        name: server
        stages:
          - name: setup
            tasks:
              - name: setup
                connection: db
                sql: CREATE TABLE campaigns (id INTEGER PRIMARY KEY, name VARCHAR(200))
          - name: echo
            tasks:
              - name: insert
                for_each: "{{{{ [{items}] }}}}"
                connection: db
                sql: INSERT INTO campaigns VALUES (:id, :name)
                params: {{id: "{{{{ task.instance }}}}", name: "{{{{ task.item }}}}"}}
          - name: read
            tasks:
              - name: echo
                for_each: "{{{{ [{items}] }}}}"
                connection: db
                sql: SELECT name FROM campaigns WHERE name = :v
                params: {{v: "{{{{ task.item }}}}"}}
                save: echoed
        """,
    )
    args = [arg for n, value in zip(names, PAYLOADS.values(), strict=True) for arg in ("--var", f"{n}={value}")]
    result = project.cli("run", "server", *args, "--json", env=project.env(FLOWSTAGE_CONN_DB=url))

    assert result.code == 0, result
    record = record_of(result)
    # each value found its own row: bound as data, compared as data
    assert record["variables"]["echoed"] == list(PAYLOADS.values())
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT name FROM campaigns ORDER BY id")).scalars().all()
    finally:
        engine.dispose()
    assert stored == list(PAYLOADS.values())
    assert list(project.root.rglob("pwned")) == []


def test_template_in_sql_text_is_refused_before_anything_runs(project: Project) -> None:
    # params: are the way in; a template written in SQL text is a validation error, never pasted
    project.write("flowstage.yaml", "connections:\n  shop: sqlite:///shop.db\n")
    project.write(
        "workflows/sensor.yaml",
        """
        name: sensor
        tasks:
          - name: setup
            connection: shop
            sql: CREATE TABLE campaigns (name VARCHAR(200))
          - name: sense
            after: [setup]
            wait_for:
              sql: SELECT COUNT(*) FROM campaigns WHERE name = '{{ var.x }}'
              connection: shop
            poke: 0.2s
            timeout: 1s
          - name: query
            connection: shop
            sql: SELECT '{{ var.x }}'
        """,
    )
    payload = "x'; COMMIT; DROP TABLE campaigns; SELECT 1; --"
    result = project.cli("run", "sensor", "--var", f"x={payload}", "--json")

    assert result.code == 2, result
    assert "sensor.yaml:9:" in result.err
    assert "sensor.yaml:15:" in result.err
    assert "templates are not rendered in SQL text" in result.err
    assert "Traceback" not in result.err
    assert not (project.root / "shop.db").exists()


# --------------------------------------------------------------------------- saved values

SAVED_PAYLOADS = [
    *PAYLOADS.values(),
    "'); DROP TABLE campaigns; --",
    "1; DROP TABLE campaigns",
    "{% for i in range(3) %}{{ i }}{% endfor %}",
    "{{ run.id }}",
    "a' || (SELECT name FROM campaigns) || '",
    "&& touch pwned ||",
    "| touch pwned",
    "> pwned",
    "../../pwned",
]

SAVED_WORKFLOW = """
name: saved
variables: {payloads: [], base: ""}
stages:
  - name: setup
    tasks:
      - name: setup
        connection: shop
        sql: >-
          CREATE TABLE campaigns (id INTEGER PRIMARY KEY, name VARCHAR(200)); INSERT INTO campaigns VALUES (1, 'keep');
          CREATE TABLE payloads (id INTEGER, v TEXT)
  - name: store
    tasks:
      - name: store
        for_each: "{{ var.payloads }}"
        connection: shop
        sql: INSERT INTO payloads VALUES (:i, :v)
        params: {i: "{{ task.instance }}", v: "{{ task.item }}"}
  - name: read
    tasks:
      # the hostile values come back from the database, saved as variables
      - name: read_rows
        connection: shop
        sql: SELECT v FROM payloads ORDER BY id
        save_rows: rows
      - name: read_first
        connection: shop
        sql: SELECT v, (SELECT COUNT(*) FROM payloads) AS n FROM payloads ORDER BY id LIMIT 1
        save: {first: v, stored: n}
  - name: use
    tasks:
      - name: sql_param
        for_each: "{{ var.rows }}"
        connection: shop
        sql: SELECT :v AS v, COUNT(*) AS n FROM payloads WHERE v = :v
        params: {v: "{{ task.item.v }}"}
        save: sql_echo
      - name: duck_param
        for_each: "{{ var.rows }}"
        sql: SELECT :v AS v
        params: {v: "{{ task.item.v }}"}
        save: duck_echo
      - name: shell_word
        for_each: "{{ var.rows }}"
        shell: printf '%s\\n' {{ task.item.v }} > shell_{{ task.instance }}.txt
      - name: shell_in_text
        shell: echo first={{ var.first }}. > shell_first.txt
      - name: template
        for_each: "{{ var.rows }}"
        python: tasks/echo.py:echo
        in_process: true
        with: {value: "<{{ task.item.v }}>"}
        save: templated
      - name: http_params
        for_each: "{{ var.rows }}"
        http:
          base_url: "{{ var.base }}"
          url: "/echo"
          method: POST
          json: {value: "{{ task.item.v }}"}
          params: {q: "{{ task.item.v }}"}
        save: http_echo
      - name: sub
        workflow: child
        variables: {x: "{{ var.first }}"}
        save: sub_variables
  - name: check
    tasks:
      - name: still_there
        connection: shop
        sql: SELECT COUNT(*) FROM campaigns
        save: campaigns_left
"""


def test_saved_sql_values_flow_into_later_tasks_as_data_never_as_code(project: Project, echo_server: EchoServer) -> None:
    project.write("flowstage.yaml", "connections:\n  shop: sqlite:///shop.db\n")
    project.write("workflows/saved.yaml", SAVED_WORKFLOW)
    project.write("workflows/child.yaml", CHILD)
    project.write("tasks/echo.py", ECHO)
    echo_server.requests.clear()
    payloads = json.dumps(SAVED_PAYLOADS)

    result = project.cli("run", "saved", "--var", f"payloads={payloads}", "--var", f"base={echo_server.url}", "--json")

    assert result.code == 0, result
    record = record_of(result)
    variables = record["variables"]
    n = len(SAVED_PAYLOADS)
    assert [row["v"] for row in variables["rows"]] == SAVED_PAYLOADS
    assert variables["first"] == SAVED_PAYLOADS[0]
    assert variables["stored"] == n
    # 0 executed: the table is still there with its one row, no file was made by a payload
    assert variables["campaigns_left"] == 1
    assert list(project.root.rglob("pwned")) == []
    assert not (project.root.parent / "pwned").exists()
    # SQL: bound, each value found itself among the stored ones
    assert variables["sql_echo"] == SAVED_PAYLOADS
    assert variables["duck_echo"] == SAVED_PAYLOADS
    # shell: one literal word each, and inside a longer command text
    for i, payload in enumerate(SAVED_PAYLOADS):
        assert (project.root / f"shell_{i}.txt").read_text() == payload + "\n", payload
    assert (project.root / "shell_first.txt").read_text() == f"first={SAVED_PAYLOADS[0]}.\n"
    # templates: a saved value is rendered once, as a value; the template it holds is never evaluated
    assert variables["templated"] == [["str", f"<{p}>"] for p in SAVED_PAYLOADS]
    # http: the JSON body and the query parameters carry the values verbatim
    seen = sorted((r["json"]["value"], r["query"]["q"][0]) for r in echo_server.requests)
    assert seen == sorted((p, p) for p in SAVED_PAYLOADS)
    # a sub-workflow receives it as a variable, and its shell and SQL tasks take it as data
    assert variables["sub_variables"]["child_value"] == SAVED_PAYLOADS[0]
    assert (project.root / "child_word.txt").read_text() == SAVED_PAYLOADS[0] + "\n"
    engine = sa.create_engine(f"sqlite:///{project.root / 'shop.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT name FROM campaigns")).scalars().all() == ["keep"]
            assert conn.execute(sa.text("SELECT v FROM payloads ORDER BY id")).scalars().all() == SAVED_PAYLOADS
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "payload",
    ["$(touch pwned)", "x'; DROP TABLE campaigns; --", "{{ 7*7 }}", "http://127.0.0.1:1/?a=b#c", "../../pwned"],
)
def test_a_hostile_value_in_an_http_url_is_never_executed(project: Project, echo_server: EchoServer, payload: str) -> None:
    # how a value is encoded in a URL's path is not asserted here (URL templates are being made to
    # percent-encode their values); what is asserted is that nothing the value holds ran anywhere
    project.write(
        "workflows/url.yaml",
        """
        name: url
        variables: {x: "", base: ""}
        tasks:
          - name: call
            http: {base_url: "{{ var.base }}", url: "/echo/{{ var.x }}", method: POST, json: {}}
          - name: after
            after: {call: completion}
            shell: echo done > done.txt
        """,
    )
    echo_server.requests.clear()
    result = project.cli("run", "url", "--var", f"x={payload}", "--var", f"base={echo_server.url}", "--json")

    assert result.code in (0, 1), result
    assert "Traceback" not in result.err
    assert (project.root / "done.txt").read_text() == "done\n"
    assert list(project.root.rglob("pwned")) == []
    for seen in echo_server.requests:
        assert seen["path"].startswith("/"), seen
        assert "49" not in seen["path"] or "49" in payload, seen  # {{ 7*7 }} was not evaluated
