"""`engine.explain.why`: a task's decision traced back through its causes (pure, no store)."""

from __future__ import annotations

import pytest

from flowstage.engine.explain import why
from flowstage.engine.plan import compile_plan
from flowstage.model.statuses import TaskStatus as S
from flowstage.model.workflow import Stage, Task, Workflow


def _staged() -> Workflow:
    return Workflow(
        name="w",
        stages=[
            Stage(name="one", tasks=[Task(name="a", shell="false"), Task(name="b", shell="true")]),
            Stage(name="two", tasks=[Task(name="c", shell="true"), Task(name="catch", shell="true", after={"a": "failure"})]),
            Stage(name="three", tasks=[Task(name="d", shell="true")]),
            Stage(name="four", tasks=[Task(name="e", shell="true", after={"d": "success", "b": "success"}, when="any")]),
        ],
    )


def test_a_skip_propagated_down_the_stages_ends_at_the_failed_task() -> None:
    statuses = {"a": S.FAILED, "b": S.SUCCEEDED, "c": S.SKIPPED, "catch": S.SUCCEEDED, "d": S.SKIPPED, "e": S.SUCCEEDED}
    ended = {"a": 1.0, "b": 1.0, "c": 2.0, "catch": 3.0, "d": 4.0, "e": 5.0}

    step = why(
        compile_plan(_staged()),
        statuses.__getitem__,
        "d",
        ended=ended,
        decided={"c": 2.0, "catch": 2.0, "d": 4.0, "e": 4.5},
        errors={"a": "exit 1"},
    )

    assert (step.task, step.verdict) == ("d", "skipped")
    assert [c.task for c in step.checks] == ["c"]  # the handler `catch` is not on the main line
    (c,) = step.causes
    assert (c.task, c.verdict) == ("c", "skipped")
    (a,) = c.causes
    assert (a.task, a.verdict, a.root) == ("a", "ran", True)
    assert "exit 1" in a.because
    assert "caught by catch" in a.because


def test_any_ran_on_the_condition_that_held() -> None:
    statuses = {"a": S.FAILED, "b": S.SUCCEEDED, "c": S.SKIPPED, "catch": S.SUCCEEDED, "d": S.SKIPPED, "e": S.SUCCEEDED}

    step = why(compile_plan(_staged()), statuses.__getitem__, "e")

    assert step.verdict == "ran"
    assert step.when == "any"
    assert [(c.task, c.held) for c in step.checks] == [("d", False), ("b", True)]
    assert "b=success" in step.because


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (S.PENDING, "waits"),
        (S.RUNNING, "ran"),
        (S.CANCELLED, "cancelled"),
        (S.TIMED_OUT, "ran"),
    ],
)
def test_every_status_gets_a_verdict(status: S, verdict: str) -> None:
    wf = Workflow(name="w", tasks=[Task(name="a", shell="true"), Task(name="b", shell="true", after=["a"])])
    statuses = {"a": S.RUNNING if status is S.PENDING else S.SUCCEEDED, "b": status}

    step = why(compile_plan(wf), statuses.__getitem__, "b")

    assert step.verdict == verdict
    if verdict == "waits":
        assert [c.task for c in step.causes] == ["a"]
