"""The attempt as a message: an AttemptSpec survives JSON and runs in a fresh process (what a remote worker does)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.model.kinds.dataflow import DataflowSpec
from flowstage.model.kinds.python import PythonSpec
from flowstage.model.kinds.shell import ShellSpec
from flowstage.model.kinds.sql import SqlSpec
from flowstage.model.statuses import TaskStatus
from tests.conftest import Project


def attempt(root: Path, task: str, spec: Any, **extra: Any) -> AttemptSpec:
    return AttemptSpec(
        run_id="r1",
        workflow="w",
        task=task,
        attempt=1,
        spec=spec,
        kwargs=extra.pop("kwargs", {}),
        variables={"region": "EU"},
        root=str(root),
        log_level=0,
        **extra,
    )


def run_in_fresh_process(spec: AttemptSpec, env: dict[str, str]) -> tuple[Outcome, list[dict[str, Any]]]:
    text = json.dumps(spec.to_message())  # nothing but JSON crosses
    proc = subprocess.run(
        [sys.executable, "-m", "flowstage.executors.worker"],
        input=text,
        capture_output=True,
        text=True,
        cwd=spec.root,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    outcomes = [line["outcome"] for line in lines if "outcome" in line]
    assert len(outcomes) == 1, lines
    return Outcome.from_message(outcomes[0]), lines


def test_an_attempt_message_round_trips_through_json_unchanged(tmp_path: Path) -> None:
    spec = attempt(
        tmp_path,
        "load",
        SqlSpec.model_validate({"sql": "SELECT :n", "params": {"n": 3}, "connection": "local"}),
        instance=2,
        item={"region": "EU"},
        timeout=5.0,
        deadline=1_900_000_000.0,
        save={"n": "n"},
        previous=[{"number": 1, "status": "failed"}],
    )
    back = AttemptSpec.from_message(json.loads(json.dumps(spec.to_message())))
    assert back == spec
    assert isinstance(back.spec, SqlSpec)
    outcome = Outcome(TaskStatus.TIMED_OUT, value=[1, "a"], error="slow", metrics={"rows_read": 2}, variables={"v": 1})
    assert Outcome.from_message(json.loads(json.dumps(outcome.to_message()))) == outcome
    lost = Outcome(TaskStatus.FAILED, error="worker_lost: gone", attempt_status="worker_lost")
    assert Outcome.from_message(json.loads(json.dumps(lost.to_message()))) == lost


def test_an_inline_dataflow_package_round_trips_through_its_message(tmp_path: Path) -> None:
    package = {
        "name": "totals",
        "sources": {"orders": {"file": "data/orders.csv"}},
        "steps": [
            {"from": "orders"},
            {"filter": "amount > :min"},
            {"aggregate": {"by": ["country"], "metrics": {"n": "count(*)"}}},
        ],
        "sink": {"file": "out/totals.parquet", "mode": "overwrite"},
    }
    spec = attempt(tmp_path, "totals", DataflowSpec.model_validate({"dataflow": package}))
    back = AttemptSpec.from_message(json.loads(json.dumps(spec.to_message())))
    assert back == spec


def test_an_unknown_kind_in_a_message_is_refused_by_name(tmp_path: Path) -> None:
    message = attempt(tmp_path, "t", ShellSpec(shell="true")).to_message()
    message["kind"] = "teleport"
    with pytest.raises(LookupError, match="teleport"):
        AttemptSpec.from_message(message)


def test_sql_shell_and_python_attempts_run_from_their_message_in_a_fresh_process(project: Project) -> None:
    project.write("flowstage.yaml", "connections:\n  local: sqlite:///local.db\n")
    project.write("tasks/calc.py", "def double(n):\n    print('doubling', n)\n    return n * 2\n")
    env = project.env()

    sql = attempt(
        project.root,
        "q",
        SqlSpec.model_validate({"sql": "SELECT :n * 7 AS v", "params": {"n": 6}, "connection": "local"}),
        save="v",
    )
    outcome, _ = run_in_fresh_process(sql, env)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert outcome.value == 42

    shell = attempt(project.root, "s", ShellSpec(shell="echo from-the-worker; exit 3"))
    outcome, lines = run_in_fresh_process(shell, env)
    assert outcome.status is TaskStatus.FAILED
    assert "code 3" in (outcome.error or "")
    assert any(line.get("log", [None, ""])[1] == "from-the-worker" for line in lines)
    assert any("process" in line for line in lines)

    python = attempt(project.root, "p", PythonSpec.model_validate({"python": "tasks/calc.py:double"}), kwargs={"n": 21})
    outcome, lines = run_in_fresh_process(python, env)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert outcome.value == 42
    assert any(line.get("log", [None, ""])[1] == "doubling 21" for line in lines)


def test_a_fresh_process_masks_secrets_in_what_it_reports(project: Project) -> None:
    project.write("flowstage.yaml", "connections:\n  pg: postgresql://app:s3cret-pw@127.0.0.1/shop\n")
    shell = attempt(
        project.root, "leak", ShellSpec.model_validate({"shell": "echo url=$URL; exit 1", "env": {"URL": {"connection": "pg"}}})
    )
    outcome, lines = run_in_fresh_process(shell, project.env())
    assert outcome.status is TaskStatus.FAILED
    text = json.dumps(lines)
    assert "s3cret-pw" not in text
    assert any("url=postgresql://app:***@127.0.0.1/shop" in line.get("log", [None, ""])[1] for line in lines)
