"""The SQL store's write path: values encoded as `json.dumps` would, rows bound by position."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from flowstage.stores.sql import store


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, None, True, False], "c": {"d": "é\x00\ud800"}},
        [{"number": 1, "status": "running", "started_at": 1764700000.123456, "ended_at": None}],
        {"big": 2**70, "neg": -0.0, "inf": math.inf, "tiny": 5e-324},
        {"when": __import__("datetime").date(2026, 1, 2), "path": __import__("pathlib").Path("/x")},  # default=str
        "plain text",
        3,
    ],
)
def test_values_are_encoded_as_json_dumps_encodes_them(value: Any) -> None:
    assert store._ENCODE(value) == json.dumps(value, separators=(",", ":"), default=str)


def test_named_placeholders_become_positional_in_their_order() -> None:
    sql = "UPDATE t SET a = :a, b = :b_2 WHERE id = :id AND x = '::text'"
    assert store._qmark(sql) == "UPDATE t SET a = ?, b = ? WHERE id = ? AND x = '::text'"
    assert store._placeholders(sql) == ("a", "b_2", "id")
    assert store._placeholders(store._UPDATE_TASK)[-2:] == ("run_id", "name")
    assert len(store._placeholders(store._UPDATE_TASK)) == len(store._task_update(_task(), "r"))
    assert store._placeholders(store._INSERT_TASK)[:2] == ("run_id", "position")
    assert store._placeholders(store._INSERT_TASK)[-2:] == ("name", "stage")


def _task() -> Any:
    from flowstage.engine.ports import TaskRun

    return TaskRun(name="a", stage="main")


def test_a_large_run_reads_back_whole_with_its_keys_made_once_per_chunk(tmp_path: Any) -> None:
    from flowstage.engine.ports import Batch, TaskRun
    from flowstage.model.statuses import TaskStatus
    from flowstage.stores.base import NewRun

    sql = store.SqlRunStore(f"sqlite:///{tmp_path}/runs.db")
    try:
        n = store._CHUNK * 2 + 7
        tasks = [TaskRun(name=f"t{i}", stage="main") for i in range(n)]
        sql.create_run(
            NewRun(
                id="r1",
                workflow="w",
                version=None,
                definition={"name": "w"},
                variables={},
                overrides={},
                root="/",
                logical_time=1.0,
                started_at=1.0,
                runner_pid=1,
                runner_host="h",
                runner_started=1.0,
                tasks=tasks,
                source=None,
                parent_run_id=None,
            )
        )
        for i, t in enumerate(tasks):
            if i % 3:
                t.status = TaskStatus.SUCCEEDED
                t.metrics = {"runtime_seconds": i / 10, "attempts": 1}
                t.attempts = [{"number": 1, "status": "succeeded", "started_at": 1.0, "ended_at": 2.0, "error": None}]
                t.saved = {"value": i} if i % 5 == 0 else {}
        sql.record(Batch(run_id="r1", tasks=tasks))
        run = sql.get_run("r1")
        assert run is not None
        assert run.tasks == tasks
        first, second = run.tasks[1].attempts[0], run.tasks[2].attempts[0]
        assert all(a is b for a, b in zip(first, second, strict=True))  # one key object for the chunk
        assert run.tasks[0].metrics == {}
        assert run.tasks[0].metrics is not run.tasks[3].metrics
    finally:
        sql.close()
