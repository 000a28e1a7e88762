"""The run state machine as a table: `(status, input) -> (status, effects)`, pure and total.

Every status change of a task or a run goes through `task_transition` / `run_transition`; a pair
missing from the table is an `IllegalTransition`, so a final state can only be left by an explicit
resume, and a succeeded task never runs again. The runner (engine/runner.py) is the thin driver:
it feeds inputs in (an outcome, a timer, a cancel request, a decision) and carries the effects out.

Task transitions (effects in brackets; `decide` = re-decide the tasks that depend on it):

=========================  ===============================================================
from                       input -> to [effects]
=========================  ===============================================================
pending                    start -> running [submit]; skip -> skipped [decide];
                           fail -> failed [decide]; succeed -> succeeded [decide]
                           (a fan-out of no items); cancel -> cancelled [decide]
running                    start -> running [submit] (another copy or attempt);
                           succeed -> succeeded [decide]; fail -> failed [kill, decide];
                           time_out -> timed_out [kill, decide]; retry -> retrying [retry];
                           retry_copy -> running [retry] (one copy of a fan-out waits);
                           cancel -> cancelled [kill, decide];
                           stop_timed_out -> timed_out [kill, decide]; resume -> pending
                           (its runner died)
retrying                   start -> running [submit]; fail -> failed [decide];
                           cancel -> cancelled [decide]; stop_timed_out -> cancelled [decide];
                           resume -> pending
failed, timed_out,         resume -> pending
cancelled, skipped
succeeded                  (nothing: a succeeded task is never run again)
=========================  ===============================================================

Run transitions: running -> succeeded | failed | cancelled | timed_out on finish; a runner that
is gone shows a running run as interrupted (lose_runner); failed, cancelled, timed_out and
interrupted runs resume to running; an interrupted run can also be ended from outside (cancel,
fail) when nobody will resume it.
"""

from __future__ import annotations

from enum import Enum

from msgspec import Struct

from flowstage.model.statuses import RunStatus, TaskStatus


class TaskInput(str, Enum):
    START = "start"  # an attempt (or a copy's attempt) starts
    SKIP = "skip"  # its condition can no longer hold, or `if:` is false
    SUCCEED = "succeed"  # every copy succeeded (and `save:` could be stored)
    FAIL = "fail"  # failed for good: no retry left, or a failure no retry can mend
    TIME_OUT = "time_out"  # its last attempt timed out, no retry left
    RETRY = "retry"  # an attempt failed or timed out; a retry is left
    RETRY_COPY = "retry_copy"  # one copy of a fan-out failed; that copy will be retried
    CANCEL = "cancel"  # the run is cancelled
    STOP_TIMED_OUT = "stop_timed_out"  # the run timed out
    RESUME = "resume"  # an explicit resume of the run

    def __str__(self) -> str:
        return self.value


class Effect(str, Enum):
    SUBMIT = "submit"  # hand an attempt to the executor
    KILL = "kill"  # kill the task's attempts still in flight
    SCHEDULE_RETRY = "schedule_retry"  # start the next attempt after the retry delay
    DECIDE = "decide"  # re-decide the tasks that depend on this one

    def __str__(self) -> str:
        return self.value


class RunInput(str, Enum):
    SUCCEED = "succeed"
    FAIL = "fail"
    CANCEL = "cancel"
    TIME_OUT = "time_out"
    LOSE_RUNNER = "lose_runner"  # no heartbeat, or its process is gone
    RESUME = "resume"

    def __str__(self) -> str:
        return self.value


class IllegalTransition(ValueError):
    """A status change the state machine does not allow (a bug in the caller, never user input)."""


class Transition(Struct, frozen=True):
    status: TaskStatus
    effects: tuple[Effect, ...] = ()


S, In, E = TaskStatus, TaskInput, Effect
_DECIDE = (E.DECIDE,)
_KILL_DECIDE = (E.KILL, E.DECIDE)

TASK_TABLE: dict[tuple[TaskStatus, TaskInput], Transition] = {
    (S.PENDING, In.START): Transition(S.RUNNING, (E.SUBMIT,)),
    (S.PENDING, In.SKIP): Transition(S.SKIPPED, _DECIDE),
    (S.PENDING, In.FAIL): Transition(S.FAILED, _DECIDE),
    (S.PENDING, In.SUCCEED): Transition(S.SUCCEEDED, _DECIDE),
    (S.PENDING, In.CANCEL): Transition(S.CANCELLED, _DECIDE),
    (S.RUNNING, In.START): Transition(S.RUNNING, (E.SUBMIT,)),
    (S.RUNNING, In.SUCCEED): Transition(S.SUCCEEDED, _DECIDE),
    (S.RUNNING, In.FAIL): Transition(S.FAILED, _KILL_DECIDE),
    (S.RUNNING, In.TIME_OUT): Transition(S.TIMED_OUT, _KILL_DECIDE),
    (S.RUNNING, In.RETRY): Transition(S.RETRYING, (E.SCHEDULE_RETRY,)),
    (S.RUNNING, In.RETRY_COPY): Transition(S.RUNNING, (E.SCHEDULE_RETRY,)),
    (S.RUNNING, In.CANCEL): Transition(S.CANCELLED, _KILL_DECIDE),
    (S.RUNNING, In.STOP_TIMED_OUT): Transition(S.TIMED_OUT, _KILL_DECIDE),
    (S.RUNNING, In.RESUME): Transition(S.PENDING),
    (S.RETRYING, In.START): Transition(S.RUNNING, (E.SUBMIT,)),
    (S.RETRYING, In.FAIL): Transition(S.FAILED, _DECIDE),
    (S.RETRYING, In.CANCEL): Transition(S.CANCELLED, _DECIDE),
    (S.RETRYING, In.STOP_TIMED_OUT): Transition(S.CANCELLED, _DECIDE),
    (S.RETRYING, In.RESUME): Transition(S.PENDING),
    (S.FAILED, In.RESUME): Transition(S.PENDING),
    (S.TIMED_OUT, In.RESUME): Transition(S.PENDING),
    (S.CANCELLED, In.RESUME): Transition(S.PENDING),
    (S.SKIPPED, In.RESUME): Transition(S.PENDING),
}

R = RunStatus
RUN_TABLE: dict[tuple[RunStatus, RunInput], RunStatus] = {
    (R.RUNNING, RunInput.SUCCEED): R.SUCCEEDED,
    (R.RUNNING, RunInput.FAIL): R.FAILED,
    (R.RUNNING, RunInput.CANCEL): R.CANCELLED,
    (R.RUNNING, RunInput.TIME_OUT): R.TIMED_OUT,
    (R.RUNNING, RunInput.LOSE_RUNNER): R.INTERRUPTED,
    (R.INTERRUPTED, RunInput.CANCEL): R.CANCELLED,
    (R.INTERRUPTED, RunInput.FAIL): R.FAILED,
    (R.INTERRUPTED, RunInput.RESUME): R.RUNNING,
    (R.FAILED, RunInput.RESUME): R.RUNNING,
    (R.CANCELLED, RunInput.RESUME): R.RUNNING,
    (R.TIMED_OUT, RunInput.RESUME): R.RUNNING,
}

#: the run input that ends a run with each final status
FINISH: dict[RunStatus, RunInput] = {
    R.SUCCEEDED: RunInput.SUCCEED,
    R.FAILED: RunInput.FAIL,
    R.CANCELLED: RunInput.CANCEL,
    R.TIMED_OUT: RunInput.TIME_OUT,
}


def task_transition(status: TaskStatus, event: TaskInput) -> Transition:
    """Where `event` takes a task in `status`, and what must follow."""
    found = TASK_TABLE.get((status, event))
    if found is None:
        raise IllegalTransition(f"a {status} task cannot {event}")
    return found


def run_transition(status: RunStatus, event: RunInput) -> RunStatus:
    """Where `event` takes a run in `status`."""
    found = RUN_TABLE.get((status, event))
    if found is None:
        raise IllegalTransition(f"a {status} run cannot {event}")
    return found


__all__ = [
    "FINISH",
    "RUN_TABLE",
    "TASK_TABLE",
    "Effect",
    "IllegalTransition",
    "RunInput",
    "TaskInput",
    "Transition",
    "run_transition",
    "task_transition",
]
