"""Passwords in connection and store URLs never leave the process (SPEC §1): masked as ``***``.

A task on a connection whose URL carries a password fails (wrong database, wrong port, wrong
password); the failure must be clear, and the password must appear nowhere: not in `run` output
(piped or `--json`), `show`, `logs`, `runs`, nor in the bytes of the SQLite run store and its WAL.
The connections point at unreachable places, so these tests need no database service.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Project
from tests.records import record_of, tasks_of

PASSWORD = "S3cretPw0rd"

WORKFLOW = """
name: secret
preferences: {log_level: debug}
tasks:
  - name: query
    connection: shop
    sql: SELECT 1
  - name: sense
    wait_for: {sql: SELECT 1, connection: shop}
    poke: 0.1s
    timeout: 60s  # a bound only: the connection fails at once
  - name: report
    after: {query: failure}
    shell: echo query failed as expected
"""


def assert_hidden(secrets: list[str], where: str, text: str | bytes) -> None:
    for secret in secrets:
        needle: str | bytes = secret.encode() if isinstance(text, bytes) else secret
        assert needle not in text, f"{secret!r} leaked into {where}"


def store_bytes(project: Project) -> dict[str, bytes]:
    """Every file of the SQLite run store: the database, its WAL and shared memory, if present."""
    state = project.root / ".flowstage"
    return {p.name: p.read_bytes() for p in sorted(state.glob("flowstage.db*")) if p.is_file()}


@pytest.mark.parametrize(
    ("url", "secrets", "clue", "configured_in"),
    [
        pytest.param(
            f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/nonexistent_db_x",
            [PASSWORD],
            "nonexistent_db_x",
            "env",
            id="postgres-unknown-database-env",
        ),
        pytest.param(
            f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/x",
            [PASSWORD],
            "cannot be opened",
            "flowstage.yaml",
            id="postgres-wrong-port-yaml",
        ),
        pytest.param(
            f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:1/test", [PASSWORD], "cannot be opened", "env", id="mysql-wrong-port-env"
        ),
        pytest.param(
            "postgresql+psycopg://postgres:S3cret%40Pw0rd%2F@127.0.0.1:1/x",
            ["S3cret%40Pw0rd%2F", "S3cret@Pw0rd/"],
            "cannot be opened",
            "flowstage.yaml",
            id="postgres-url-encoded-password-yaml",
        ),
    ],
)
def test_connection_password_appears_nowhere_when_the_task_fails(
    project: Project, url: str, secrets: list[str], clue: str, configured_in: str
) -> None:
    project.write("workflows/secret.yaml", WORKFLOW)
    if configured_in == "env":
        env = project.env(FLOWSTAGE_CONN_SHOP=url)
    else:
        project.write("flowstage.yaml", f"connections:\n  shop: '{url}'\n")
        env = project.env()

    piped = project.cli("run", "secret", env=env)
    as_json = project.cli("run", "secret", "--json", env=env)

    assert piped.code == 1, piped
    assert as_json.code == 1, as_json
    record = record_of(as_json)
    tasks = tasks_of(record)
    query = tasks["query"]
    assert query["status"] == "failed"
    assert "connection 'shop'" in query["error"]
    assert clue in query["error"]
    assert ":***@" in query["error"]
    assert tasks["sense"]["status"] == "failed"
    assert "connection 'shop'" in tasks["sense"]["error"]
    assert tasks["report"]["status"] == "succeeded"

    outputs = {
        "run stdout": piped.out,
        "run stderr": piped.err,
        "run --json stdout": as_json.out,
        "run --json stderr": as_json.err,
    }
    run_id = record["id"]
    for args in (("show", run_id), ("logs", run_id), ("logs", run_id, "--json")):
        shown = project.cli(*args, env=env)
        assert shown.code == 0, shown
        outputs[" ".join(args)] = shown.out + shown.err
    runs = project.cli("runs", "--json", env=env)
    outputs["runs --json"] = runs.out + runs.err
    assert "cannot be opened" in outputs[f"logs {run_id}"]
    assert "cannot be opened" in outputs[f"show {run_id}"]
    for where, text in outputs.items():
        assert_hidden(secrets, where, text)
    files = store_bytes(project)
    assert "flowstage.db" in files
    for name, data in files.items():
        assert_hidden(secrets, name, data)


@pytest.mark.parametrize(
    "store",
    [
        f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/x",
        f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/nonexistent_db_x",
    ],
    ids=["wrong-port", "unknown-database"],
)
def test_store_password_appears_nowhere_when_the_store_is_unreachable(project: Project, store: str) -> None:
    project.write(
        "workflows/hello.yaml",
        """
        name: hello
        tasks:
          - name: hi
            shell: echo hi
        """,
    )
    env = project.env(FLOWSTAGE_STORE=store)

    for args in (("run", "hello"), ("run", "hello", "--json"), ("runs",), ("show", "20260101000000abcdef")):
        result = project.cli(*args, env=env)
        assert result.code == 3, (args, result)
        assert "store" in result.err
        assert "***" in result.err
        assert "Traceback" not in result.err
        assert_hidden([PASSWORD], " ".join(args), result.out + result.err)
    assert not Path(project.root / ".flowstage" / "flowstage.db").exists()


def test_a_password_in_task_output_and_tracebacks_is_masked(project: Project) -> None:
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/x"
    project.write("flowstage.yaml", f"connections:\n  shop: '{url}'\n")
    project.write("secret.txt", url)
    project.write(
        "tasks/leaky.py",
        """
        def fail():
            url = open("secret.txt").read()
            print("connecting to", url, "with", url.split(":")[2].split("@")[0])
            raise RuntimeError("cannot use " + url)
        """,
    )
    project.write(
        "workflows/leaky.yaml",
        """
        name: leaky
        tasks:
          - {name: py, python: "tasks/leaky.py:fail"}
          - {name: sh, shell: "cat secret.txt; cat secret.txt >&2"}
        """,
    )

    ran = project.cli("run", "leaky", "--json")

    assert ran.code == 1, ran
    record = record_of(ran)
    py = tasks_of(record)["py"]
    assert py["status"] == "failed"
    assert "RuntimeError: cannot use postgresql+psycopg://postgres:***@127.0.0.1:1/x" in py["error"]
    logs = project.cli("logs", record["id"])
    assert "connecting to postgresql+psycopg://postgres:***@127.0.0.1:1/x with ***" in logs.out
    assert "Traceback" in logs.out  # the traceback is logged, masked
    assert logs.out.count("postgres:***@127.0.0.1:1/x") >= 4  # both shell streams too
    for where, text in {"run": ran.out + ran.err, "logs": logs.out + logs.err}.items():
        assert_hidden([PASSWORD], where, text)
    for name, data in store_bytes(project).items():
        assert_hidden([PASSWORD], name, data)


def test_credentials_written_in_a_task_url_are_masked_in_the_stored_run_and_resume_uses_them(project: Project) -> None:
    import base64

    from tests.integration.test_http_urls import RecordingServer

    with RecordingServer(failures=1) as server:
        url = server.base.replace("http://", f"http://robot:{PASSWORD}@") + "/items?token=Tok3nValue&page=1"
        project.write(
            "workflows/call.yaml",
            f"""
            name: call
            tasks:
              - name: fetch
                http: {{url: "{url}"}}
            """,
        )
        first = project.cli("run", "workflows/call.yaml", "--json")
        assert first.code == 1, first
        run_id = record_of(first)["id"]
        stored = store_bytes(project)
        resumed = project.cli("resume", run_id, "--json")

    assert resumed.code == 0, resumed
    assert tasks_of(record_of(resumed))["fetch"]["status"] == "succeeded"
    basic = "Basic " + base64.b64encode(f"robot:{PASSWORD}".encode()).decode()
    assert server.authorizations == [basic, basic]  # the resumed attempt had the credentials as written
    assert server.paths == ["/items?token=Tok3nValue&page=1"] * 2
    for name, data in {**stored, **store_bytes(project)}.items():
        assert_hidden([PASSWORD, "Tok3nValue"], name, data)
    shown = project.cli("show", run_id, "--json")
    assert_hidden([PASSWORD, "Tok3nValue"], "show --json", shown.out + shown.err)
