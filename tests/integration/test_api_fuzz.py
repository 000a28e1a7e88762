"""The API answers as its OpenAPI document says, under generated requests (schemathesis) over real HTTP.

A real server with auth on and an admin token (`flowstage token create --role admin`), a workflow
deployed and one run of it ended (log lines, events, a catalog table), so the routes have
something to answer about: half the time a generated path names that workflow, run or table.
`schemathesis run` reads the served `/api/v1/openapi.json` and calls every operation with
requests generated from its schema, valid and invalid (the coverage phase's boundary values, then
a few random ones), seeded so a failure comes back on the next run. Each answer must be no 5xx,
and have a status code, a content type and a body that the document declares for its operation.

Starting runs is bounded: `POST /workflows/{name}/runs` is called on a name never deployed (its
body is still checked, then a 404), and `POST /runs/{id}/resume` on ids of no run or of the run
that succeeded (409), so the fuzzing starts no run. Event streams are read up to their first event.

schemathesis runs as its command line (`schemathesis run`): its pytest loader of a fixture's
schema does not work with the pytest of this suite.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.integration.test_api import Server, deploy, serve, wait_status

WORKFLOW = """
name: fuzzed
variables: {who: world}
tasks:
  - {name: greet, shell: "echo hello {{ var.who }}"}
  - {name: crawl_orders, crawl: {path: data/*.csv, table: raw.orders}, after: [greet]}
"""
SEED = 20_260_101
MAX_EXAMPLES = 15
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance")
#: the workflow name `POST /workflows/{name}/runs` is called with: never deployed, so no run starts
NOWHERE = "never-deployed"
#: how long the stream of every run's events is read: after a cursor nothing comes until a ping (15 s)
STREAM_SECONDS = 1


@dataclass
class Fuzzed:
    server: Server
    project: Project
    token: str
    run_id: str


def _config(origin: str, fuzzed: Fuzzed) -> str:
    """The schemathesis.toml of the run; the token comes from the environment, never a file or argv."""
    checks = "".join(f"{name}.enabled = true\n" for name in CHECKS)
    return f"""
color = false
seed = {SEED}
base-url = "{origin}"
workers = 1
request-timeout = 10
max-stream-events = 1
headers = {{ Authorization = "Bearer ${{FUZZ_TOKEN}}" }}

[generation]
max-examples = {MAX_EXAMPLES}
database = "none"

[phases.stateful]
enabled = false

[checks]
enabled = false
{checks}
[dictionaries]
workflows = {{ values = ["fuzzed"] }}
runs = {{ values = ["{fuzzed.run_id}"] }}
tables = {{ values = ["raw.orders"] }}

[parameters]
"path.name" = {{ dictionary = "workflows", probability = 0.5 }}
"path.run_id" = {{ dictionary = "runs", probability = 0.5 }}

[[operations]]
include-path = "/api/v1/catalog/{{name}}"
parameters = {{ "path.name" = {{ dictionary = "tables", probability = 0.5 }} }}

[[operations]]
include-path = "/api/v1/workflows/{{name}}/runs"
include-method = "POST"
parameters = {{ "path.name" = "{NOWHERE}" }}

[[operations]]
include-path = "/api/v1/events"
request-timeout = {STREAM_SECONDS}
"""


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp("fuzz") / "proj"
    root.mkdir()
    (root / "flowstage.yaml").write_text("{}\n")
    project = Project(root)
    project.write("data/orders.csv", "id,amount\n1,2.5\n2,NA\n")
    created = project.cli("token", "create", "--role", "admin", "--name", "fuzz")
    assert created.code == 0, created.err
    token = created.out.strip().splitlines()[-1]
    with serve(project, root.parent / "server.log") as server:
        server.client.headers["Authorization"] = f"Bearer {token}"
        assert deploy(server.client, WORKFLOW).status_code == 201
        started = server.client.post("/workflows/fuzzed/runs", json={"variables": {"who": "fuzz"}})
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        wait_status(server.client, run_id, "succeeded")
        assert server.client.get("/catalog/raw.orders").status_code == 200
        yield Fuzzed(server, project, token, run_id)


def test_every_operation_answers_as_the_openapi_document_declares(fuzzed: Fuzzed, tmp_path: Path) -> None:
    client = fuzzed.server.client
    origin = f"{client.base_url.scheme}://{client.base_url.host}:{client.base_url.port}"
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(origin, fuzzed))
    junit = tmp_path / "junit.xml"
    schemathesis = str(Path(sys.executable).with_name("schemathesis"))
    ran = subprocess.run(
        [
            schemathesis,
            "--config-file",
            str(config),
            "run",
            f"{origin}/api/v1/openapi.json",
            "--report",
            "junit",
            "--report-junit-path",
            str(junit),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=fuzzed.project.env(FUZZ_TOKEN=fuzzed.token),
        check=False,
    )
    assert fuzzed.token not in ran.stdout + ran.stderr
    assert ran.returncode == 0, ran.stdout + ran.stderr
    paths = client.get("/openapi.json").json()["paths"]
    declared = {f"{method.upper()} {path}" for path, methods in paths.items() for method in methods}
    tested = {case.get("name") for case in ET.parse(junit).getroot().iter("testcase")}
    assert tested == declared, ran.stdout
    assert [run["id"] for run in client.get("/runs").json()["items"]] == [fuzzed.run_id], "the fuzzing started no run"
    assert "Traceback" not in fuzzed.server.output()  # nor failed where no status shows it (inside an event stream)


def test_cursors_and_versions_beyond_the_store_s_integers_answer_422_not_a_crash(fuzzed: Fuzzed) -> None:
    client = fuzzed.server.client
    huge = str(2**64)
    for answer in (
        client.get(f"/runs/{fuzzed.run_id}/logs", params={"after": huge}),
        client.get("/events", params={"after": huge}),
        client.get(f"/runs/{fuzzed.run_id}/events", params={"after": huge}),
        client.get("/events", headers={"Last-Event-ID": huge}),
        client.post("/workflows/fuzzed/rollback", json={"version": 2**31}),
    ):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in fuzzed.server.output()


def test_every_route_but_health_declares_the_problems_of_its_token_check(fuzzed: Fuzzed) -> None:
    refusals = {"401", "403", "429"}  # no or a bad token, a role too low, too many failed logins
    paths = fuzzed.server.client.get("/openapi.json").json()["paths"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            declared = set(operation["responses"])
            if path == "/api/v1/health":
                assert not declared & refusals, path
                continue
            assert refusals <= declared, f"{method.upper()} {path}"
            for status in refusals:
                assert list(operation["responses"][status]["content"]) == ["application/problem+json"], f"{method} {path}"
