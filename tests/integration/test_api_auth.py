"""The API refuses a missing, forged, expired, revoked or too-weak token (SPEC §5.2, §8), over real HTTP.

One table: every route against every kind of caller. Auth is on because tokens exist; the
tokens are made through the store's token port, as `flowstage token create` makes them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstage.api.auth import FAILED_LOGINS_WINDOW, MAX_FAILED_LOGINS
from flowstage.settings import load_project
from flowstage.stores.sql.store import SqlRunStore
from tests.conftest import Project
from tests.integration.test_api import HELLO, Server, serve

ROUTES: list[tuple[str, str, str, dict[str, Any]]] = [
    # method, path, role needed, request options
    ("GET", "/workflows", "viewer", {}),
    ("GET", "/workflows/hello", "viewer", {}),
    ("GET", "/workflows/hello/versions", "viewer", {}),
    ("GET", "/workflows/hello/graph", "viewer", {}),
    ("GET", "/runs", "viewer", {}),
    ("GET", "/runs/{run}", "viewer", {}),
    ("GET", "/runs/{run}/logs", "viewer", {}),
    ("GET", "/catalog", "viewer", {}),
    ("GET", "/backfills", "viewer", {}),
    ("GET", "/backfills/bf-none", "viewer", {}),
    ("POST", "/workflows/hello/runs", "operator", {"json": {"variables": {}}}),
    ("POST", "/runs/{run}/resume", "operator", {}),
    ("POST", "/runs/{run}/cancel", "operator", {}),
    ("POST", "/workflows/hello/backfills", "operator", {"json": {"from": "2026-01-01", "to": "2026-01-02"}}),
    ("POST", "/backfills/bf-none/pause", "operator", {}),
    ("POST", "/backfills/bf-none/resume", "operator", {}),
    ("POST", "/backfills/bf-none/cancel", "operator", {}),
    ("POST", "/workflows", "admin", {"content": HELLO.lstrip("\n"), "headers": {"Content-Type": "application/yaml"}}),
    ("POST", "/workflows/hello/rollback", "admin", {"json": {"version": 1}}),
]
CALLERS = ["none", "forged", "expired", "revoked", "viewer", "operator", "admin"]
RANK = {"viewer": 0, "operator": 1, "admin": 2}


def expected(caller: str, needed: str) -> str:
    if caller in ("none", "forged", "expired", "revoked"):
        return "401"
    return "allowed" if RANK[caller] >= RANK[needed] else "403"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str], str, Project]]:
    root = tmp_path_factory.mktemp("auth") / "proj"
    root.mkdir()
    # the table refuses dozens of requests from one address: far fewer than this
    (root / "flowstage.yaml").write_text("server: {max_failed_logins: 1000}\n")
    project = Project(root)
    project.write("workflows/hello.yaml", HELLO)
    assert project.cli("deploy", "workflows").code == 0
    ran = project.cli("run", "hello", "--json")
    assert ran.code == 0, ran.err
    run_id = json.loads(ran.out)["id"]
    store = SqlRunStore(load_project(root=root).store_url)
    now = time.time()
    try:
        secrets = {role: store.tokens.create(role=role, name=role, at=now)[1] for role in ("viewer", "operator", "admin")}
        secrets["expired"] = store.tokens.create(role="admin", name="old", expires_at=now - 10, at=now - 100)[1]
        revoked, secret = store.tokens.create(role="admin", name="gone", at=now)
        store.tokens.revoke(revoked.id, at=now)
        secrets["revoked"] = secret
        prefix, _, rest = secrets["admin"].rpartition("_")
        secrets["forged"] = prefix + "_" + ("A" if rest[0] != "A" else "B") + rest[1:]
    finally:
        store.close()
    with serve(project, root.parent / "server.log") as server:
        yield server, secrets, run_id, project


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path", "needed", "options"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_every_route_asks_for_its_role(
    setup: tuple[Server, dict[str, str], str, Project], method: str, path: str, needed: str, options: dict[str, Any], caller: str
) -> None:
    server, secrets, run_id, _ = setup
    headers = dict(options.get("headers", {}))
    if caller != "none":
        headers["Authorization"] = f"Bearer {secrets[caller]}"
    answer = server.client.request(method, path.format(run=run_id), **{**options, "headers": headers})
    want = expected(caller, needed)
    if want == "allowed":
        assert answer.status_code not in (401, 403), answer.text
        assert answer.status_code < 500, answer.text
    else:
        assert answer.status_code == int(want), answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        if want == "401":
            assert answer.headers.get("www-authenticate") == "Bearer"


def test_health_needs_no_token_and_no_secret_reaches_an_answer_or_the_log(
    setup: tuple[Server, dict[str, str], str, Project],
) -> None:
    server, secrets, _, _ = setup
    assert server.client.get("/health").status_code == 200
    for secret in secrets.values():
        refused = server.client.get("/workflows", headers={"Authorization": f"Bearer {secret}x"})
        assert refused.status_code == 401
        assert secret not in refused.text
    log = server.output()
    assert "refused GET /api/v1/workflows" in log
    for secret in secrets.values():
        assert secret not in log


def test_the_server_listens_elsewhere_than_loopback_only_with_auth(project: Project, tmp_path: Path) -> None:
    refused = project.cli("server", "--host", "0.0.0.0", "--port", "1")
    assert refused.code == 2
    assert "create a token first" in refused.err
    assert "Traceback" not in refused.err


def test_an_address_is_refused_with_429_after_ten_failed_logins_even_with_a_good_token(project: Project, tmp_path: Path) -> None:
    store = SqlRunStore(load_project(root=project.root).store_url)
    try:
        _, secret = store.tokens.create(role="viewer", name="ci", at=time.time())
    finally:
        store.close()
    wrong = {"Authorization": f"Bearer {secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"}
    good = {"Authorization": f"Bearer {secret}"}
    with serve(project, tmp_path / "server.log") as server:
        client = server.client
        for _ in range(MAX_FAILED_LOGINS + 2):  # successful requests never count
            assert client.get("/runs", headers=good).status_code == 200
        for attempt in range(MAX_FAILED_LOGINS):
            refused = client.get("/runs", headers=wrong if attempt % 2 else {})
            assert refused.status_code == 401, (attempt, refused.text)
        for headers in (wrong, good, {}):  # no token is even looked at
            limited = client.get("/workflows", headers=headers)
            assert limited.status_code == 429, limited.text
            assert limited.headers["content-type"].startswith("application/problem+json")
            body = limited.json()
            assert (body["status"], body["title"]) == (429, "Too many requests")
            assert "try again in" in body["detail"]
            assert 1 <= int(limited.headers["retry-after"]) <= FAILED_LOGINS_WINDOW
        assert client.get("/health").status_code == 200
    log = server.output()
    assert log.count("refused GET /api/v1/runs from 127.0.0.1") == MAX_FAILED_LOGINS
    assert log.count("client 127.0.0.1 limited: 10 failed token checks within 60s") == 1
    assert secret not in log
    assert secret[:-1] not in log


def test_a_wrong_max_failed_logins_setting_is_refused_before_the_server_starts(project: Project) -> None:
    project.write("flowstage.yaml", "server: {max_failed_logins: 0}\n")
    refused = project.cli("server", "--port", "1")
    assert refused.code == 2, refused.err
    assert "max_failed_logins" in refused.err
    assert "Traceback" not in refused.err


def test_a_wrong_orphans_setting_is_refused_before_the_server_starts(project: Project) -> None:
    project.write("flowstage.yaml", "server: {orphans: maybe}\n")
    refused = project.cli("server", "--port", "1")
    assert refused.code == 2, refused.err
    assert "flowstage.yaml:1:10: server.orphans: expected resume or fail" in refused.err
    assert "Traceback" not in refused.err


def test_an_unreachable_store_stops_the_server_before_it_starts_with_exit_3(project: Project) -> None:
    refused = project.cli(
        "server", "--port", "1", env=project.env(FLOWSTAGE_STORE="postgresql+psycopg://flowstage@127.0.0.1:1/none")
    )
    assert refused.code == 3, refused.err
    assert "is unreachable" in refused.err
    assert "Traceback" not in refused.err
