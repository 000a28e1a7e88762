"""The web UI over real HTTP, without a browser: every page answers, sign-in keeps the token in an
HttpOnly SameSite=Strict cookie, a cross-site request cannot act with it, a viewer gets no buttons."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx

from tests.conftest import FLOWSTAGE, Project
from tests.integration.test_api import GATED, HELLO, Server, deploy, serve, start, wait_status

CRAWL = """
name: crawl
tasks:
  - name: crawl_orders
    crawl: {path: data/orders.csv, table: raw.orders}
"""


def _token(project: Project, role: str) -> str:
    made = subprocess.run(
        [*FLOWSTAGE, "token", "create", "--role", role],
        cwd=project.root,
        env=project.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def _site(server: Server) -> httpx.Client:
    root = str(server.client.base_url).removesuffix("/api/v1").removesuffix("/api/v1/")
    return httpx.Client(base_url=root, timeout=30)


def test_every_page_answers_html_with_the_workflow_run_and_catalog_it_shows(project: Project, tmp_path: Path) -> None:
    project.write("data/orders.csv", "id,amount\n1,2.5\n")
    with serve(project, tmp_path / "server.log") as server, _site(server) as site:
        api = server.client
        assert deploy(api, HELLO).status_code == 201
        assert deploy(api, CRAWL).status_code == 201
        run_id = start(api, "hello")
        wait_status(api, run_id, "succeeded")
        wait_status(api, start(api, "crawl"), "succeeded")
        assert deploy(api, HELLO.replace("echo HELLO", "echo HELLO AGAIN")).status_code == 201

        home = site.get("/")
        assert home.status_code == 200
        assert home.headers["content-type"].startswith("text/html")
        assert 'href="/workflows/hello"' in home.text
        assert f'href="/runs/{run_id}"' in home.text  # the previous runs as dots
        filtered = site.get("/", params={"q": "crawl"}, headers={"HX-Request": "true"})
        assert "/workflows/crawl" in filtered.text
        assert "/workflows/hello" not in filtered.text
        assert "<html" not in filtered.text  # a fragment for htmx

        page = site.get("/workflows/hello")
        assert page.status_code == 200
        assert 'id="graph-data"' in page.text
        assert "Roll back to v1" in page.text  # auth off: whoever calls is admin
        assert 'data-testid="start-run"' in page.text
        diff = site.get("/workflows/hello/diff", params={"a": 1, "b": 2})
        assert "echo HELLO AGAIN" in diff.text
        assert 'class="d-changed"' in diff.text

        run = site.get(f"/runs/{run_id}")
        assert run.status_code == 200
        assert f'data-run="{run_id}"' in run.text
        assert "greet" in run.text
        detail = site.get(f"/runs/{run_id}/tasks/on_error")
        assert "needs greet=failure" in detail.text or "skipped" in detail.text
        raw = site.get(f"/runs/{run_id}/logs.txt")
        assert raw.headers["content-disposition"].startswith("attachment")
        assert "hello world" in raw.text

        assert "raw.orders" in site.get("/catalog").text
        table = site.get("/catalog/raw.orders")
        assert "amount" in table.text
        assert "Schema history" in table.text

        editor = site.get("/workflows/hello/edit")
        assert "echo HELLO AGAIN" in editor.text  # the text as deployed, not re-serialised

        missing = site.get("/runs/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        assert "no run" in missing.text

        for asset in ("/static/app.css", "/static/app.js", "/static/graph.js", "/static/run.js", "/static/editor-page.js"):
            assert site.get(asset).status_code == 200, asset


def test_validate_answers_located_problems_or_the_graph_it_would_draw(project: Project, tmp_path: Path) -> None:
    with serve(project, tmp_path / "server.log") as server:
        bad = server.client.post(
            "/validate",
            content="name: x\ntasks:\n  - {name: a, shell: echo, bogus: 1}\n",
            headers={"Content-Type": "application/yaml"},
        )
        assert bad.status_code == 200
        body = bad.json()
        assert body["valid"] is False
        assert body["problems"][0]["line"] == 3
        assert "bogus" in body["problems"][0]["message"]
        good = server.client.post("/validate", content=HELLO, headers={"Content-Type": "application/yaml"})
        assert good.json()["valid"] is True
        ids = {n["data"]["id"] for n in good.json()["graph"]["nodes"]}
        assert {"greet", "shout", "on_error", "stage:0", "stage:1"} <= ids


def test_sign_in_keeps_the_token_in_a_strict_http_only_cookie_and_a_viewer_gets_no_buttons(
    project: Project, tmp_path: Path
) -> None:
    viewer = _token(project, "viewer")
    operator = _token(project, "operator")
    with serve(project, tmp_path / "server.log") as server, _site(server) as site:
        admin = {"Authorization": f"Bearer {_token(project, 'admin')}", "Content-Type": "application/yaml"}
        assert server.client.post("/workflows", content=GATED.lstrip(), headers=admin).status_code == 201
        assert site.get("/").status_code == 303
        assert site.get("/").headers["location"].startswith("/login")
        origin = str(site.base_url).rstrip("/")
        refused = site.post("/login", data={"token": "fs_forged", "next": "/"}, headers={"Origin": origin})
        assert refused.status_code == 303
        assert "failed=1" in refused.headers["location"]

        signed = site.post("/login", data={"token": viewer, "next": "/workflows/gated"}, headers={"Origin": origin})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert re.search(r"SameSite=strict", cookie, re.I)
        page = site.get("/workflows/gated")
        assert page.status_code == 200
        assert "data-post" not in page.text
        assert 'data-testid="start-run"' not in page.text
        assert 'data-testid="new-workflow"' not in page.text

        site.cookies.clear()
        site.post("/login", data={"token": operator, "next": "/"}, headers={"Origin": origin})
        # the cookie acts from the server's own pages only
        cross = site.post("/api/v1/workflows/gated/runs", json={}, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403
        same = site.post("/api/v1/workflows/gated/runs", json={}, headers={"Origin": origin})
        assert same.status_code == 202, same.text
        assert site.get(f"/runs/{same.json()['id']}").status_code == 200
        assert site.post(f"/api/v1/runs/{same.json()['id']}/cancel", headers={"Origin": origin}).status_code == 202
