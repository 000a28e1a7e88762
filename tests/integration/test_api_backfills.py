"""Backfills by the REST API: start one for a deployed workflow, follow it to its end, pause and cancel refused once done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Project
from tests.integration.test_api import PROBLEM, serve
from tests.integration.test_backfill import HOURLY, MARK_PY, ON_DEMAND, side_effects
from tests.records import wait_until


def test_a_backfill_started_by_the_api_runs_each_logical_time_once_and_shows_its_times(project: Project, tmp_path: Path) -> None:
    project.write("tasks/mark.py", MARK_PY)
    project.write("workflows/hourly.yaml", HOURLY.format(tz="Europe/Paris"))
    project.write("workflows/manual.yaml", ON_DEMAND)
    assert project.cli("deploy", "workflows/").code == 0
    with serve(project, tmp_path / "server.log") as server:
        client = server.client
        started = client.post(
            "/workflows/hourly/backfills", json={"from": "2026-03-29T00:00", "to": "2026-03-29T04:00", "max_active": 2}
        )
        assert started.status_code == 202, started.text
        body: dict[str, Any] = started.json()
        assert (body["workflow"], body["version"], body["total"], body["max_active"]) == ("hourly", 1, 4, 2)
        assert [t["logical_time"] for t in body["times"]] == [
            "2026-03-29T00:00:00+01:00",
            "2026-03-29T01:00:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T04:00:00+02:00",
        ]

        def done() -> bool:
            return bool(client.get(f"/backfills/{body['id']}").json()["status"] == "done")

        wait_until(done, 60, "the backfill to be done")
        shown = client.get(f"/backfills/{body['id']}").json()
        assert shown["counts"] == {"succeeded": 4}
        assert all(t["run_id"] and t["status"] == "succeeded" for t in shown["times"])
        for t in shown["times"]:
            run = client.get(f"/runs/{t['run_id']}").json()
            assert run["status"] == "succeeded"
        listed = client.get("/backfills").json()
        assert [(b["id"], b["status"], b["total"]) for b in listed] == [(body["id"], "done", 4)]
        assert "times" not in listed[0]
        for action in ("pause", "resume", "cancel"):
            refused = client.post(f"/backfills/{body['id']}/{action}")
            assert refused.status_code == 409, (action, refused.text)
            assert refused.headers["content-type"].startswith(PROBLEM)
        for name, payload, status, detail in (
            ("hourly", {"from": "2026-01-02", "to": "2026-01-01"}, 422, "is before --from"),
            ("hourly", {"from": "soon", "to": "2026-01-01"}, 422, "not a date or time"),
            ("hourly", {"from": "2026-01-01", "to": "2026-01-02", "reprocess": "some"}, 422, "reprocess"),
            ("manual", {"from": "2026-01-01", "to": "2026-01-02"}, 422, "has no schedule"),
            ("nope", {"from": "2026-01-01", "to": "2026-01-02"}, 404, "no deployed workflow"),
        ):
            answer = client.post(f"/workflows/{name}/backfills", json=payload)
            assert answer.status_code == status, answer.text
            assert detail in answer.text
        assert client.get("/backfills/bf-none").status_code == 404
    assert len(side_effects(project)) == 4
