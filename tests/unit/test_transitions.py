"""The run state machine's table (SPEC §2.5): every status against every input, exhaustively."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowstage.engine.transitions import (
    RUN_TABLE,
    TASK_TABLE,
    Effect,
    IllegalTransition,
    RunInput,
    TaskInput,
    run_transition,
    task_transition,
)
from flowstage.model.statuses import RUN_FINAL, TASK_FINAL, RunStatus, TaskStatus

S, In, E = TaskStatus, TaskInput, Effect

# (from, input) -> (to, effects); every pair not listed here must be refused
EXPECTED: dict[tuple[TaskStatus, TaskInput], tuple[TaskStatus, set[Effect]]] = {
    (S.PENDING, In.START): (S.RUNNING, {E.SUBMIT}),
    (S.PENDING, In.SKIP): (S.SKIPPED, {E.DECIDE}),
    (S.PENDING, In.FAIL): (S.FAILED, {E.DECIDE}),
    (S.PENDING, In.SUCCEED): (S.SUCCEEDED, {E.DECIDE}),
    (S.PENDING, In.CANCEL): (S.CANCELLED, {E.DECIDE}),
    (S.RUNNING, In.START): (S.RUNNING, {E.SUBMIT}),
    (S.RUNNING, In.SUCCEED): (S.SUCCEEDED, {E.DECIDE}),
    (S.RUNNING, In.FAIL): (S.FAILED, {E.KILL, E.DECIDE}),
    (S.RUNNING, In.TIME_OUT): (S.TIMED_OUT, {E.KILL, E.DECIDE}),
    (S.RUNNING, In.RETRY): (S.RETRYING, {E.SCHEDULE_RETRY}),
    (S.RUNNING, In.RETRY_COPY): (S.RUNNING, {E.SCHEDULE_RETRY}),
    (S.RUNNING, In.CANCEL): (S.CANCELLED, {E.KILL, E.DECIDE}),
    (S.RUNNING, In.STOP_TIMED_OUT): (S.TIMED_OUT, {E.KILL, E.DECIDE}),
    (S.RUNNING, In.RESUME): (S.PENDING, set()),
    (S.RETRYING, In.START): (S.RUNNING, {E.SUBMIT}),
    (S.RETRYING, In.FAIL): (S.FAILED, {E.DECIDE}),
    (S.RETRYING, In.CANCEL): (S.CANCELLED, {E.DECIDE}),
    (S.RETRYING, In.STOP_TIMED_OUT): (S.CANCELLED, {E.DECIDE}),
    (S.RETRYING, In.RESUME): (S.PENDING, set()),
    (S.FAILED, In.RESUME): (S.PENDING, set()),
    (S.TIMED_OUT, In.RESUME): (S.PENDING, set()),
    (S.CANCELLED, In.RESUME): (S.PENDING, set()),
    (S.SKIPPED, In.RESUME): (S.PENDING, set()),
}

ALL_PAIRS = list(itertools.product(TaskStatus, TaskInput))


@pytest.mark.parametrize(("status", "move"), ALL_PAIRS, ids=[f"{s}-{m}" for s, m in ALL_PAIRS])
def test_every_task_status_and_input_is_allowed_exactly_as_the_table_says(status: TaskStatus, move: TaskInput) -> None:
    expected = EXPECTED.get((status, move))
    if expected is None:
        with pytest.raises(IllegalTransition, match=f"a {status} task cannot {move}"):
            task_transition(status, move)
        return
    step = task_transition(status, move)
    assert (step.status, set(step.effects)) == expected


def test_the_table_holds_nothing_beyond_the_expected_transitions() -> None:
    assert set(TASK_TABLE) == set(EXPECTED)


def test_a_succeeded_task_can_never_be_moved_not_even_by_a_resume() -> None:
    for move in TaskInput:
        with pytest.raises(IllegalTransition):
            task_transition(S.SUCCEEDED, move)


def test_final_tasks_are_left_only_by_a_resume() -> None:
    for status, move in TASK_TABLE:
        if status in TASK_FINAL:
            assert move is In.RESUME


def test_every_transition_to_a_final_status_redecides_the_dependents() -> None:
    for (status, _), step in TASK_TABLE.items():
        if step.status in TASK_FINAL and status not in TASK_FINAL:
            assert E.DECIDE in step.effects
        if E.SUBMIT in step.effects:
            assert step.status is S.RUNNING


RUN_EXPECTED = {
    (RunStatus.RUNNING, RunInput.SUCCEED): RunStatus.SUCCEEDED,
    (RunStatus.RUNNING, RunInput.FAIL): RunStatus.FAILED,
    (RunStatus.RUNNING, RunInput.CANCEL): RunStatus.CANCELLED,
    (RunStatus.RUNNING, RunInput.TIME_OUT): RunStatus.TIMED_OUT,
    (RunStatus.RUNNING, RunInput.LOSE_RUNNER): RunStatus.INTERRUPTED,
    (RunStatus.INTERRUPTED, RunInput.CANCEL): RunStatus.CANCELLED,
    (RunStatus.INTERRUPTED, RunInput.FAIL): RunStatus.FAILED,
    (RunStatus.INTERRUPTED, RunInput.RESUME): RunStatus.RUNNING,
    (RunStatus.FAILED, RunInput.RESUME): RunStatus.RUNNING,
    (RunStatus.CANCELLED, RunInput.RESUME): RunStatus.RUNNING,
    (RunStatus.TIMED_OUT, RunInput.RESUME): RunStatus.RUNNING,
}
RUN_PAIRS = list(itertools.product(RunStatus, RunInput))


@pytest.mark.parametrize(("status", "move"), RUN_PAIRS, ids=[f"{s}-{m}" for s, m in RUN_PAIRS])
def test_every_run_status_and_input_is_allowed_exactly_as_the_table_says(status: RunStatus, move: RunInput) -> None:
    expected = RUN_EXPECTED.get((status, move))
    if expected is None:
        with pytest.raises(IllegalTransition):
            run_transition(status, move)
    else:
        assert run_transition(status, move) is expected
    assert set(RUN_TABLE) == set(RUN_EXPECTED)


def test_a_succeeded_run_is_never_resumed() -> None:
    with pytest.raises(IllegalTransition):
        run_transition(RunStatus.SUCCEEDED, RunInput.RESUME)
    assert all(status not in RUN_FINAL or move is RunInput.RESUME for status, move in RUN_TABLE)


@given(st.lists(st.sampled_from(list(TaskInput)), max_size=30))
def test_any_sequence_of_inputs_stays_inside_the_table(moves: list[TaskInput]) -> None:
    """Folding random inputs: each accepted step is a table entry; a final status is left only by resume."""
    status = S.PENDING
    for move in moves:
        try:
            step = task_transition(status, move)
        except IllegalTransition:
            assert (status, move) not in TASK_TABLE
            continue
        assert (status, move) in TASK_TABLE
        if status in TASK_FINAL:
            assert move is In.RESUME
            assert step.status is S.PENDING
        status = step.status
