"""Alerts end to end: `flowstage run` of workflows with alert rules, notifying a real HTTP server on
loopback; what fired is recorded (`flowstage alerts`), a notifier that is down never fails a run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowstage.app.alerting import RunAlerts
from flowstage.model.loader import load_text
from flowstage.model.statuses import RunStatus
from flowstage.settings import load_project
from flowstage.stores.memory import MemoryRunStore
from tests.conftest import Project
from tests.integration.test_api import serve
from tests.integration.test_notifiers import HttpSink, _closed_port, serving_sink
from tests.records import wait_until

T0 = 1_800_000_000.0


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    with serving_sink() as sink:
        yield sink


ALLOCATE = """
def hold(mb):
    block = bytearray(int(mb) * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)
"""


def _config(project: Project, url: str) -> None:
    project.write("flowstage.yaml", f'notifiers:\n  ops: {{webhook: {{url: "{url}/hook", secret: s3cr3t-hmac}}}}\n')


def _bodies(sink: HttpSink) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in sink.received]


def test_a_failed_run_notifies_the_webhook_with_the_body_of_the_spec_and_records_it(
    project: Project, http_sink: HttpSink, tmp_path: Path
) -> None:
    _config(project, http_sink.url)
    project.write(
        "workflows/breaks.yaml",
        """
        name: breaks
        alerts:
          - {on: failed, notify: [ops]}
          - {on: succeeded, notify: [ops]}
        tasks:
          - {name: boom, shell: "echo the disk is full >&2; exit 3"}
        """,
    )
    result = project.cli("run", "breaks", "--json")
    assert result.code == 1
    run_id = json.loads(result.out)["id"]
    assert _bodies(http_sink) == [
        {
            "workflow": "breaks",
            "run_id": run_id,
            "status": "failed",
            "task": None,
            "alert": {"on": "failed", "notify": ["ops"]},
            "value": "failed",
        }
    ]
    assert http_sink.received[0].headers["x-flowstage-signature"].startswith("sha256=")
    listed = project.cli("alerts", "--run", run_id, "--json")
    assert listed.code == 0
    [record] = json.loads(listed.out)
    assert (record["notifier"], record["delivery"], record["tries"], record["status"]) == ("ops", "delivered", 1, "failed")
    with serve(project, tmp_path / "server.log") as server:
        answer = server.client.get(f"/runs/{run_id}/alerts")
        assert answer.status_code == 200
        assert [(a["notifier"], a["delivery"], a["alert"]) for a in answer.json()] == [
            ("ops", "delivered", {"on": "failed", "notify": ["ops"]})
        ]
        page = httpx.get(str(server.client.base_url).rstrip("/").removesuffix("/api/v1") + f"/runs/{run_id}", timeout=30)
        assert "<h3>Alerts</h3>" in page.text
        assert "delivered (1 try)" in page.text
    record = json.loads(project.cli("show", run_id, "--json").out)
    assert record["metrics"]["tasks"] == {"failed": 1}
    assert record["metrics"]["runtime_seconds"] >= 0
    shown = project.cli("show", run_id)
    assert "alert on failed: value failed -> ops delivered after 1 try" in shown.out
    assert "s3cr3t-hmac" not in listed.out + result.out + result.err + shown.out


def test_memory_of_a_task_fires_its_rule_only_above_the_threshold(project: Project, http_sink: HttpSink) -> None:
    _config(project, http_sink.url)
    project.write("tasks/mem.py", ALLOCATE)
    project.write(
        "workflows/memory.yaml",
        """
        name: memory
        variables: {mb: 50}
        alerts:
          - {metric: memory_mb, task: hold, op: ">", value: 200, notify: [ops]}
          - {metric: runtime_seconds, op: ">=", value: 0, notify: [ops]}
          - {metric: runtime_seconds, task: hold, op: ">", value: 3600, notify: [ops]}
        tasks:
          - {name: hold, python: "tasks/mem.py:hold", with: {mb: "{{ var.mb }}"}}
        """,
    )
    small = project.cli("run", "memory", "--json")
    assert small.code == 0, small
    assert [b["alert"].get("task") for b in _bodies(http_sink)] == [None]  # only the run's runtime rule
    http_sink.received.clear()
    big = project.cli("run", "memory", "--var", "mb=300", "--json")
    assert big.code == 0, big
    fired = {b["alert"]["metric"]: b for b in _bodies(http_sink)}
    assert set(fired) == {"memory_mb", "runtime_seconds"}
    assert fired["memory_mb"]["task"] == "hold"
    assert fired["memory_mb"]["value"] > 200
    assert fired["memory_mb"]["status"] == "succeeded"


def test_a_notifier_that_is_down_gets_three_tries_and_the_run_still_succeeds(project: Project) -> None:
    project.write("flowstage.yaml", f'notifiers:\n  ops: {{webhook: "http://127.0.0.1:{_closed_port()}/hook"}}\n')
    project.write(
        "workflows/fine.yaml",
        """
        name: fine
        alerts:
          - {on: completed, notify: [ops]}
        tasks:
          - {name: ok, shell: "true"}
        """,
    )
    result = project.cli("run", "fine", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["status"] == "succeeded"
    [record] = json.loads(project.cli("alerts", "--json").out)
    assert (record["delivery"], record["tries"]) == ("failed", 3)
    assert record["error"]


def test_every_folds_the_repeats_of_a_period_into_the_next_notification(project: Project, http_sink: HttpSink) -> None:
    _config(project, http_sink.url)
    project.write(
        "workflows/flaky.yaml",
        """
        name: flaky
        alerts:
          - {on: failed, notify: [ops], every: 30m}
        tasks:
          - {name: boom, shell: "exit 1"}
        """,
    )
    for _ in range(3):
        assert project.cli("run", "flaky").code == 1
    assert len(http_sink.received) == 1  # the first one; the next two fall in its period
    records = json.loads(project.cli("alerts", "--json").out)
    assert [r["delivery"] for r in records] == ["suppressed", "suppressed", "delivered"]


def test_after_its_period_a_rule_notifies_again_with_the_count_of_the_repeats_folded(
    project: Project, http_sink: HttpSink
) -> None:
    _config(project, http_sink.url)
    workflow = load_text(
        "name: flaky\nalerts:\n  - {on: failed, notify: [ops], every: 30m}\ntasks:\n  - {name: boom, shell: 'exit 1'}\n"
    )
    store = MemoryRunStore()
    now = [T0]
    for minute in (0, 5, 10, 31):  # the last one is past the 30 minutes after the first
        now[0] = T0 + minute * 60
        alerts = RunAlerts(load_project(root=project.root), workflow, run_id=f"r{minute}", store=store, clock=lambda: now[0])
        alerts.after_run(RunStatus.FAILED, {})
    bodies = _bodies(http_sink)
    assert [b["run_id"] for b in bodies] == ["r0", "r31"]
    assert "repeats" not in bodies[0]
    assert bodies[1]["repeats"] == 2
    assert [r.delivery for r in store.alerts.recent()] == ["delivered", "suppressed", "suppressed", "delivered"]
    assert store.alerts.recent()[0].repeats == 2


def test_a_dataflow_that_writes_no_row_fires_rows_written_and_a_slow_task_its_runtime_rule(
    project: Project, http_sink: HttpSink
) -> None:
    _config(project, http_sink.url)
    project.write("data/orders.csv", "id,status,amount\n1,paid,2.5\n2,open,4.0\n")
    project.write(
        "workflows/empty_load.yaml",
        """
        name: empty_load
        alerts:
          - {metric: rows_written, task: load, op: "==", value: 0, notify: [ops]}
          - {metric: runtime_seconds, task: slow, op: ">", value: 0.2, notify: [ops]}
        tasks:
          - name: load
            dataflow:
              name: load_none
              sources: {orders: {file: data/orders.csv}}
              steps:
                - from: orders
                - filter: "status = 'refunded'"
              sink: {file: out/refunded.parquet}
          - {name: slow, shell: "sleep 0.5"}
        """,
    )
    result = project.cli("run", "empty_load", "--json")
    assert result.code == 0, result
    fired = {b["task"]: b for b in _bodies(http_sink)}
    assert set(fired) == {"load", "slow"}
    assert fired["load"]["value"] == 0
    assert fired["slow"]["value"] > 0.2


def test_a_secret_of_a_notifier_reaches_neither_the_tasks_nor_the_logs(project: Project, http_sink: HttpSink) -> None:
    project.write("flowstage.yaml", 'notifiers:\n  ops: {webhook: {url: "${HOOK_URL}", secret: "${HOOK_SECRET}"}}\n')
    project.write(
        "workflows/leaky.yaml",
        """
        name: leaky
        alerts:
          - {on: failed, notify: [ops]}
        tasks:
          - {name: peek, shell: "env; exit 1"}
        """,
    )
    env = project.env(HOOK_URL=f"{http_sink.url}/hook?token=tok-777", HOOK_SECRET="hmac-888")
    result = project.cli("run", "leaky", "--json", env=env)
    assert result.code == 1
    run_id = json.loads(result.out)["id"]
    assert len(http_sink.received) == 1
    logs = project.cli("logs", run_id, env=env).out
    assert "HOOK_URL" not in logs  # the task's environment did not get them
    for secret in ("tok-777", "hmac-888"):
        assert secret not in logs + result.out + result.err + project.cli("alerts", "--json", env=env).out


def test_a_run_the_server_started_delivers_its_alerts_from_its_own_runner(project: Project, tmp_path: Path) -> None:
    project.write("flowstage.yaml", "notifiers:\n  file: {command: \"sh -c 'cat > delivered.json'\"}\n")
    failing = "name: detached_fail\nalerts:\n  - {on: failed, notify: [file]}\ntasks:\n  - {name: boom, shell: 'exit 2'}\n"
    with serve(project, tmp_path / "server.log") as server:
        answer = server.client.post("/workflows", content=failing, headers={"Content-Type": "application/yaml"})
        assert answer.status_code == 201, answer.text
        run_id = server.client.post("/workflows/detached_fail/runs", json={}).json()["id"]
        delivered = project.root / "delivered.json"
        wait_until(lambda: delivered.exists() and delivered.read_text().strip().endswith("}"), 60, "the runner to deliver")
        body = json.loads(delivered.read_text())
        assert (body["run_id"], body["status"], body["alert"]) == (run_id, "failed", {"on": "failed", "notify": ["file"]})
        wait_until(
            lambda: [a["delivery"] for a in server.client.get(f"/runs/{run_id}/alerts").json()] == ["delivered"], 30, "the record"
        )
        listed = server.client.get("/alerts", params={"workflow": "detached_fail"}).json()
        assert [(a["run_id"], a["notifier"], a["delivery"]) for a in listed] == [(run_id, "file", "delivered")]
        assert server.client.get("/alerts", params={"workflow": "other"}).json() == []
        page = httpx.get(str(server.client.base_url).rstrip("/").removesuffix("/api/v1") + "/alerts", timeout=30)
        assert f'href="/runs/{run_id}"' in page.text
        assert "on failed" in page.text
