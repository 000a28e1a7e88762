"""The pure decisions: when a task runs, waits or is skipped, and what a run's status is (SPEC §2.2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstage.engine.decisions import (
    Action,
    Decision,
    Requirement,
    decide,
    decide_stage_default,
    holds,
    run_status,
    uncaught_failures,
)
from flowstage.engine.plan import compile_plan
from flowstage.model import Condition, RunStatus, Stage, Task, TaskStatus, When, Workflow
from flowstage.model.statuses import TASK_FINAL

S = TaskStatus
C = Condition

# Every condition against every predecessor state. None: not decided yet (the predecessor is not final).
HOLDS_TABLE: list[tuple[Condition, TaskStatus, bool | None]] = [
    (C.SUCCESS, S.PENDING, None),
    (C.SUCCESS, S.RUNNING, None),
    (C.SUCCESS, S.RETRYING, None),
    (C.SUCCESS, S.SUCCEEDED, True),
    (C.SUCCESS, S.FAILED, False),
    (C.SUCCESS, S.TIMED_OUT, False),
    (C.SUCCESS, S.SKIPPED, False),
    (C.SUCCESS, S.CANCELLED, False),
    (C.FAILURE, S.PENDING, None),
    (C.FAILURE, S.RUNNING, None),
    (C.FAILURE, S.RETRYING, None),
    (C.FAILURE, S.SUCCEEDED, False),
    (C.FAILURE, S.FAILED, True),
    (C.FAILURE, S.TIMED_OUT, True),
    (C.FAILURE, S.SKIPPED, False),
    (C.FAILURE, S.CANCELLED, False),
    (C.COMPLETION, S.PENDING, None),
    (C.COMPLETION, S.RUNNING, None),
    (C.COMPLETION, S.RETRYING, None),
    (C.COMPLETION, S.SUCCEEDED, True),
    (C.COMPLETION, S.FAILED, True),
    (C.COMPLETION, S.TIMED_OUT, True),
    (C.COMPLETION, S.SKIPPED, False),
    (C.COMPLETION, S.CANCELLED, False),
    (C.SKIPPED, S.PENDING, None),
    (C.SKIPPED, S.RUNNING, None),
    (C.SKIPPED, S.RETRYING, None),
    (C.SKIPPED, S.SUCCEEDED, False),
    (C.SKIPPED, S.FAILED, False),
    (C.SKIPPED, S.TIMED_OUT, False),
    (C.SKIPPED, S.SKIPPED, True),
    (C.SKIPPED, S.CANCELLED, False),
]


def test_holds_table_covers_every_condition_and_every_state() -> None:
    assert {(c, s) for c, s, _ in HOLDS_TABLE} == {(c, s) for c in Condition for s in TaskStatus}


@pytest.mark.parametrize(("condition", "status", "expected"), HOLDS_TABLE, ids=lambda v: str(v))
def test_condition_holds_only_once_the_predecessor_is_final(
    condition: Condition, status: TaskStatus, expected: bool | None
) -> None:
    assert holds(condition, status) is expected


@pytest.mark.parametrize(("condition", "status", "expected"), HOLDS_TABLE, ids=lambda v: str(v))
def test_single_predecessor_decision_follows_the_table(condition: Condition, status: TaskStatus, expected: bool | None) -> None:
    want = {True: Action.RUN, False: Action.SKIP, None: Action.WAIT}[expected]
    for when in When:
        assert decide([Requirement("p", condition, status)], when).action is want


def req(task: str, condition: Condition, status: TaskStatus) -> Requirement:
    return Requirement(task, condition, status)


# (requirements, when, action, reason)
DECIDE_TABLE: list[tuple[str, list[Requirement], When, Action, str]] = [
    ("no predecessors run at once", [], When.ALL, Action.RUN, ""),
    ("no predecessors run at once (any)", [], When.ANY, Action.RUN, ""),
    (
        "all: every condition holds",
        [req("a", C.SUCCESS, S.SUCCEEDED), req("b", C.FAILURE, S.TIMED_OUT), req("c", C.SKIPPED, S.SKIPPED)],
        When.ALL,
        Action.RUN,
        "",
    ),
    (
        "all: skipped as soon as one cannot hold, others still running",
        [req("a", C.SUCCESS, S.RUNNING), req("extract", C.SUCCESS, S.FAILED), req("c", C.SUCCESS, S.PENDING)],
        When.ALL,
        Action.SKIP,
        "needs extract=success; extract failed",
    ),
    (
        "all: waits while nothing is impossible",
        [req("a", C.SUCCESS, S.SUCCEEDED), req("b", C.SUCCESS, S.RUNNING), req("c", C.COMPLETION, S.RETRYING)],
        When.ALL,
        Action.WAIT,
        "waits for b, c",
    ),
    (
        "all: skipped predecessor explains itself",
        [req("extract", C.SUCCESS, S.SKIPPED)],
        When.ALL,
        Action.SKIP,
        "needs extract=success; extract was skipped",
    ),
    (
        "all: cancelled predecessor explains itself",
        [req("load", C.COMPLETION, S.CANCELLED)],
        When.ALL,
        Action.SKIP,
        "needs load=completion; load was cancelled",
    ),
    (
        "all: a failure edge is not taken after a success",
        [req("load", C.FAILURE, S.SUCCEEDED)],
        When.ALL,
        Action.SKIP,
        "needs load=failure; load succeeded",
    ),
    (
        "all: timed out predecessor explains itself",
        [req("load", C.SUCCESS, S.TIMED_OUT)],
        When.ALL,
        Action.SKIP,
        "needs load=success; load timed out",
    ),
    (
        "any: runs as soon as one holds, others still running",
        [req("a", C.SUCCESS, S.RUNNING), req("b", C.FAILURE, S.FAILED), req("c", C.SUCCESS, S.PENDING)],
        When.ANY,
        Action.RUN,
        "",
    ),
    (
        "any: runs when one holds though others cannot",
        [req("a", C.SUCCESS, S.FAILED), req("b", C.SUCCESS, S.SUCCEEDED)],
        When.ANY,
        Action.RUN,
        "",
    ),
    (
        "any: waits while one may still hold",
        [req("a", C.SUCCESS, S.FAILED), req("b", C.SUCCESS, S.RETRYING)],
        When.ANY,
        Action.WAIT,
        "waits for any of a, b",
    ),
    (
        "any: skipped when none can hold",
        [req("a", C.FAILURE, S.SUCCEEDED), req("b", C.FAILURE, S.SKIPPED)],
        When.ANY,
        Action.SKIP,
        "needs any of a=failure, b=failure; a succeeded, b was skipped",
    ),
]


@pytest.mark.parametrize(
    ("requirements", "when", "action", "reason"), [r[1:] for r in DECIDE_TABLE], ids=[r[0] for r in DECIDE_TABLE]
)
def test_decide_runs_when_certain_skips_when_impossible_and_waits_otherwise(
    requirements: list[Requirement], when: When, action: Action, reason: str
) -> None:
    assert decide(requirements, when) == Decision(action, reason)


def test_decide_defaults_to_all() -> None:
    reqs = [req("a", C.SUCCESS, S.SUCCEEDED), req("b", C.SUCCESS, S.FAILED)]
    assert decide(reqs) == decide(reqs, When.ALL)
    assert decide(reqs).action is Action.SKIP


STAGE_DEFAULT_TABLE: list[tuple[str, list[tuple[str, TaskStatus]], Decision]] = [
    ("an empty stage lets the next one run", [], Decision(Action.RUN)),
    ("every task succeeded", [("a", S.SUCCEEDED), ("b", S.SUCCEEDED)], Decision(Action.RUN)),
    ("a task still running", [("a", S.SUCCEEDED), ("b", S.RUNNING)], Decision(Action.WAIT, "waits for stage 'load'")),
    (
        "a failed task skips the stage",
        [("a", S.SUCCEEDED), ("b", S.FAILED), ("c", S.PENDING)],
        Decision(Action.SKIP, "needs every task of stage 'load' to succeed; b failed"),
    ),
    (
        "a skipped task skips the stage",
        [("a", S.SKIPPED)],
        Decision(Action.SKIP, "needs every task of stage 'load' to succeed; a was skipped"),
    ),
    (
        "a cancelled task skips the stage",
        [("a", S.CANCELLED)],
        Decision(Action.SKIP, "needs every task of stage 'load' to succeed; a was cancelled"),
    ),
]


@pytest.mark.parametrize(("statuses", "expected"), [r[1:] for r in STAGE_DEFAULT_TABLE], ids=[r[0] for r in STAGE_DEFAULT_TABLE])
def test_stage_default_needs_every_task_of_the_previous_stage_to_succeed(
    statuses: list[tuple[str, TaskStatus]], expected: Decision
) -> None:
    assert decide_stage_default("load", statuses) == expected


# --------------------------------------------------------------------------- properties of decide

SATISFYING = {
    C.SUCCESS: S.SUCCEEDED,
    C.FAILURE: S.FAILED,
    C.COMPLETION: S.TIMED_OUT,
    C.SKIPPED: S.SKIPPED,
}
NOT_FINAL = [S.PENDING, S.RUNNING, S.RETRYING]

requirement_lists = st.lists(
    st.builds(
        Requirement,
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.sampled_from(list(Condition)),
        st.sampled_from(list(TaskStatus)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None, database=None)
@given(requirements=requirement_lists, when=st.sampled_from(list(When)))
def test_decide_agrees_with_holds_for_all_and_any(requirements: list[Requirement], when: When) -> None:
    answers = [holds(r.condition, r.status) for r in requirements]
    action = decide(requirements, when).action
    if when is When.ALL:
        expected = Action.SKIP if False in answers else Action.RUN if all(answers) else Action.WAIT
    else:
        expected = Action.RUN if True in answers else Action.SKIP if all(a is False for a in answers) else Action.WAIT
    assert action is expected


@settings(max_examples=300, deadline=None, database=None)
@given(requirements=requirement_lists, when=st.sampled_from(list(When)), data=st.data())
def test_a_run_or_skip_decision_never_changes_as_predecessors_end(
    requirements: list[Requirement], when: When, data: st.DataObject
) -> None:
    first = decide(requirements, when)
    later = [
        Requirement(
            r.task, r.condition, data.draw(st.sampled_from(sorted(TASK_FINAL))) if r.status not in TASK_FINAL else r.status
        )
        for r in requirements
    ]
    final = decide(later, when)
    assert final.action is not Action.WAIT  # every predecessor final: always decided
    if first.action is not Action.WAIT:
        assert final.action is first.action


@settings(max_examples=300, deadline=None, database=None)
@given(requirements=requirement_lists, when=st.sampled_from(list(When)))
def test_decide_waits_only_while_both_outcomes_are_still_possible(requirements: list[Requirement], when: When) -> None:
    if decide(requirements, when).action is not Action.WAIT:
        return
    assert any(r.status in NOT_FINAL for r in requirements)
    to_run = [
        Requirement(r.task, r.condition, SATISFYING[r.condition] if r.status in NOT_FINAL else r.status) for r in requirements
    ]
    to_skip = [Requirement(r.task, r.condition, S.CANCELLED if r.status in NOT_FINAL else r.status) for r in requirements]
    assert decide(to_run, when).action is Action.RUN
    assert decide(to_skip, when).action is Action.SKIP


@settings(max_examples=200, deadline=None, database=None)
@given(requirements=requirement_lists, when=st.sampled_from(list(When)))
def test_every_skip_and_wait_names_a_reason(requirements: list[Requirement], when: When) -> None:
    decision = decide(requirements, when)
    if decision.action is Action.RUN:
        assert decision.reason == ""
    else:
        assert decision.reason
        assert any(r.task in decision.reason for r in requirements)


# --------------------------------------------------------------------------- run status

RUN_STATUS_TABLE: list[tuple[str, dict[str, TaskStatus], dict[str, list[str]], dict[str, bool], RunStatus]] = [
    ("every task succeeded", {"a": S.SUCCEEDED, "b": S.SUCCEEDED}, {}, {}, RunStatus.SUCCEEDED),
    ("skipped tasks do not fail a run", {"a": S.SUCCEEDED, "b": S.SKIPPED}, {}, {}, RunStatus.SUCCEEDED),
    ("an uncaught failure fails the run", {"a": S.FAILED, "b": S.SKIPPED}, {}, {}, RunStatus.FAILED),
    ("an uncaught timeout fails the run", {"a": S.TIMED_OUT}, {}, {}, RunStatus.FAILED),
    ("a caught failure does not fail the run", {"a": S.FAILED, "h": S.SUCCEEDED}, {"a": ["h"]}, {}, RunStatus.SUCCEEDED),
    ("a caught timeout does not fail the run", {"a": S.TIMED_OUT, "h": S.SUCCEEDED}, {"a": ["h"]}, {}, RunStatus.SUCCEEDED),
    ("a handler that failed catches nothing", {"a": S.FAILED, "h": S.FAILED}, {"a": ["h"]}, {}, RunStatus.FAILED),
    ("a handler that was skipped catches nothing", {"a": S.FAILED, "h": S.SKIPPED}, {"a": ["h"]}, {}, RunStatus.FAILED),
    (
        "one succeeded handler among several catches",
        {"a": S.FAILED, "h1": S.SKIPPED, "h2": S.SUCCEEDED},
        {"a": ["h1", "h2"]},
        {},
        RunStatus.SUCCEEDED,
    ),
    (
        "a failed handler is itself a failure to catch",
        {"a": S.FAILED, "h": S.FAILED, "h2": S.SUCCEEDED},
        {"a": ["h"], "h": ["h2"]},
        {},
        RunStatus.FAILED,
    ),
    ("a cancelled task fails the run", {"a": S.SUCCEEDED, "b": S.CANCELLED}, {}, {}, RunStatus.FAILED),
    ("cancel flag wins over success", {"a": S.SUCCEEDED}, {}, {"cancelled": True}, RunStatus.CANCELLED),
    ("cancel flag wins over failure", {"a": S.FAILED}, {}, {"cancelled": True}, RunStatus.CANCELLED),
    ("run timeout flag wins over success", {"a": S.SUCCEEDED}, {}, {"timed_out": True}, RunStatus.TIMED_OUT),
    ("run timeout wins over cancel", {"a": S.CANCELLED}, {}, {"timed_out": True, "cancelled": True}, RunStatus.TIMED_OUT),
]


@pytest.mark.parametrize(
    ("statuses", "catchers", "flags", "expected"), [r[1:] for r in RUN_STATUS_TABLE], ids=[r[0] for r in RUN_STATUS_TABLE]
)
def test_run_status_fails_only_on_uncaught_failures(
    statuses: dict[str, TaskStatus], catchers: dict[str, list[str]], flags: dict[str, bool], expected: RunStatus
) -> None:
    assert run_status(statuses, catchers, **flags) is expected


def test_uncaught_failures_names_failed_and_timed_out_tasks_without_a_succeeded_catcher() -> None:
    statuses = {"a": S.FAILED, "b": S.TIMED_OUT, "c": S.FAILED, "h": S.SUCCEEDED, "k": S.FAILED}
    assert uncaught_failures(statuses, {"a": ["h"], "c": ["k"]}) == ["b", "c", "k"]


def _flat(*tasks: Task) -> Workflow:
    return Workflow(name="w", tasks=list(tasks))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (C.FAILURE, RunStatus.SUCCEEDED),  # a catch
        (C.COMPLETION, RunStatus.FAILED),  # a finally: catches nothing
    ],
)
def test_only_a_failure_edge_catches_a_failure(condition: Condition, expected: RunStatus) -> None:
    plan = compile_plan(
        _flat(Task(name="load", shell="false"), Task(name="cleanup", shell="true", after={"load": condition})),
    )
    assert run_status({"load": S.FAILED, "cleanup": S.SUCCEEDED}, plan.catchers) is expected


def test_stage_default_edges_catch_nothing() -> None:
    plan = compile_plan(
        Workflow(
            name="w",
            stages=[
                Stage(name="one", tasks=[Task(name="a", shell="false")]),
                Stage(name="two", tasks=[Task(name="b", shell="true")]),
            ],
        )
    )
    assert plan.catchers == {}
    assert run_status({"a": S.FAILED, "b": S.SKIPPED}, plan.catchers) is RunStatus.FAILED
