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


def _task() -> Any:
    from flowstage.engine.ports import TaskRun

    return TaskRun(name="a", stage="main")
