"""Which alert rules fire, as a table: every `on:` against every final status, every operator, a
task's rule only for that task, a metric the task did not record never."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowstage.engine.alerts import FINAL, run_firings, task_firings
from flowstage.model.workflow import Alert

STATUSES = ["succeeded", "failed", "timed_out", "cancelled"]
EXPECTED_ON = {
    "failed": {"failed"},
    "succeeded": {"succeeded"},
    "timed_out": {"timed_out"},
    "cancelled": {"cancelled"},
    "completed": set(FINAL),
}


@pytest.mark.parametrize("on", sorted(EXPECTED_ON))
@pytest.mark.parametrize("status", STATUSES)
def test_an_on_rule_fires_on_its_status_and_completed_on_every_final_one(on: str, status: str) -> None:
    rule = Alert(on=on, notify=["ops"])
    fired = run_firings([rule], status, {})
    assert bool(fired) is (status in EXPECTED_ON[on])
    if fired:
        assert (fired[0].rule, fired[0].task, fired[0].value) == (0, None, status)


@pytest.mark.parametrize(
    ("op", "observed", "fires"),
    [
        (">", 300.5, True),
        (">", 200.0, False),
        (">=", 200.0, True),
        ("<", 50, True),
        ("<=", 200, True),
        ("==", 200, True),
        ("==", 201, False),
        ("!=", 201, True),
        ("!=", 200, False),
    ],
)
def test_a_metric_rule_compares_the_observed_value_with_its_operator(op: str, observed: float, fires: bool) -> None:
    rule = Alert(metric="memory_mb", task="load", op=op, value=200, notify=["ops"])  # type: ignore[arg-type]
    fired = task_firings([rule], "load", "succeeded", {"memory_mb": observed})
    assert bool(fired) is fires
    if fired:
        assert fired[0].value == observed


def test_a_task_rule_fires_for_its_task_only_and_never_for_a_skipped_one() -> None:
    rules = [
        Alert(on="failed", task="load", notify=["ops"]),
        Alert(on="failed", notify=["ops"]),
        Alert(metric="rows_written", task="load", op="==", value=0, notify=["ops"]),
    ]
    assert [f.rule for f in task_firings(rules, "load", "failed", {"rows_written": 0})] == [0, 2]
    assert task_firings(rules, "other", "failed", {"rows_written": 0}) == []
    assert task_firings(rules, "load", "skipped", {"rows_written": 0}) == []
    assert [f.rule for f in run_firings(rules, "failed", {})] == [1]


@pytest.mark.parametrize("observed", [None, "big", True])
def test_a_metric_the_task_did_not_record_never_fires(observed: Any) -> None:
    rule = Alert(metric="memory_mb", task="load", op="!=", value=1, notify=["ops"])
    metrics = {} if observed is None else {"memory_mb": observed}
    assert task_firings([rule], "load", "succeeded", metrics) == []


def test_the_run_runtime_rule_watches_the_run() -> None:
    rule = Alert(metric="runtime_seconds", op=">", value=600, notify=["ops"])
    assert run_firings([rule], "succeeded", {"runtime_seconds": 601})[0].value == 601
    assert run_firings([rule], "succeeded", {"runtime_seconds": 599}) == []


@given(status=st.sampled_from(STATUSES), value=st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_a_metric_rule_and_its_negation_never_both_fire(status: str, value: float) -> None:
    above = Alert(metric="runtime_seconds", op=">", value=10, notify=["ops"])
    not_above = Alert(metric="runtime_seconds", op="<=", value=10, notify=["ops"])
    fired = run_firings([above, not_above], status, {"runtime_seconds": value})
    assert len(fired) == 1
