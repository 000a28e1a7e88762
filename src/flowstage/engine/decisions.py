"""Pure decisions: may a task run now, must it be skipped, what is a run's status.

No I/O here. `decide` is total over every condition and predecessor state, and every decision
carries the reason shown to users (``needs extract=success; extract failed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import Enum

from msgspec import Struct

from flowstage.model.conditions import SATISFIED_BY, Condition, When
from flowstage.model.statuses import TASK_FAILED, TASK_FINAL, RunStatus, TaskStatus


class Action(str, Enum):
    RUN = "run"
    WAIT = "wait"
    SKIP = "skip"


class Decision(Struct, frozen=True):
    action: Action
    reason: str = ""


class Requirement(Struct, frozen=True):
    """One predecessor, the condition asked of it, and its current status."""

    task: str
    condition: Condition
    status: TaskStatus


def holds(condition: Condition, status: TaskStatus) -> bool | None:
    """True / False once `status` is final, None while it is not."""
    if status not in TASK_FINAL:
        return None
    return status in SATISFIED_BY[condition]


def _describe(status: TaskStatus) -> str:
    return {
        TaskStatus.SUCCEEDED: "succeeded",
        TaskStatus.FAILED: "failed",
        TaskStatus.TIMED_OUT: "timed out",
        TaskStatus.SKIPPED: "was skipped",
        TaskStatus.CANCELLED: "was cancelled",
    }.get(status, str(status))


def decide(requirements: Sequence[Requirement], when: When = When.ALL) -> Decision:
    """Whether a task may run, must wait, or is skipped, given its predecessors."""
    if not requirements:
        return Decision(Action.RUN)
    answers = [holds(r.condition, r.status) for r in requirements]
    if when is When.ALL:
        for r, ok in zip(requirements, answers, strict=True):
            if ok is False:
                return Decision(Action.SKIP, f"needs {r.task}={r.condition}; {r.task} {_describe(r.status)}")
        if all(answers):
            return Decision(Action.RUN)
        return Decision(
            Action.WAIT, "waits for " + ", ".join(r.task for r, a in zip(requirements, answers, strict=True) if a is None)
        )
    if any(answers):
        return Decision(Action.RUN)
    if all(a is False for a in answers):
        needs = ", ".join(f"{r.task}={r.condition}" for r in requirements)
        got = ", ".join(f"{r.task} {_describe(r.status)}" for r in requirements)
        return Decision(Action.SKIP, f"needs any of {needs}; {got}")
    return Decision(Action.WAIT, "waits for any of " + ", ".join(r.task for r in requirements))


class StageTask(Struct, frozen=True):
    """A task of a finished stage as the next stage's default sees it."""

    name: str
    status: TaskStatus
    #: every condition of the task is `failure` or `completion`: a catch or a finally, not main line
    handler: bool = False
    #: it failed, and a task that depends on it with `failure` ran and succeeded
    caught: bool = False


def decide_stage_default(
    stage_name: str, statuses: Iterable[tuple[str, TaskStatus]], caught: frozenset[str] = frozenset()
) -> Decision:
    """The default condition over one stage's main-line tasks: each succeeded, or failed and was caught."""
    waiting: list[str] = []
    for name, status in statuses:
        if status in TASK_FAILED and name in caught:
            continue
        ok = holds(Condition.SUCCESS, status)
        if ok is False:
            return Decision(Action.SKIP, f"needs every task of stage '{stage_name}' to succeed; {name} {_describe(status)}")
        if ok is None:
            waiting.append(name)
    if waiting:
        return Decision(Action.WAIT, f"waits for stage '{stage_name}'")
    return Decision(Action.RUN)


def stage_verdict(stages: Sequence[tuple[str, Sequence[StageTask]]]) -> Decision:
    """The default condition of a stage's tasks, given the stages before it (oldest first).

    The stage just before decides by its main-line tasks; a stage of handlers only passes on the
    verdict of the stage before it, so a catch that was not needed never blocks what follows and a
    finally never lets the main line go on after an uncaught failure.
    """
    for name, tasks in reversed(stages):
        main = [t for t in tasks if not t.handler]
        if main:
            return decide_stage_default(name, ((t.name, t.status) for t in main), frozenset(t.name for t in main if t.caught))
    return Decision(Action.RUN)


def is_handler(conditions: Iterable[Condition]) -> bool:
    """A task whose every condition is `failure` or `completion` (and that has one) is a handler."""
    found = list(conditions)
    return bool(found) and all(c in (Condition.FAILURE, Condition.COMPLETION) for c in found)


def uncaught_failures(
    statuses: Mapping[str, TaskStatus],
    catchers: Mapping[str, Sequence[str]],
) -> list[str]:
    """Failed or timed-out tasks that no succeeded `failure` successor caught.

    `catchers[t]` lists the tasks that depend on `t` with a `failure` condition.
    """
    return [
        name
        for name, status in statuses.items()
        if status in TASK_FAILED and not any(statuses.get(c) is TaskStatus.SUCCEEDED for c in catchers.get(name, ()))
    ]


def run_status(
    statuses: Mapping[str, TaskStatus],
    catchers: Mapping[str, Sequence[str]],
    *,
    cancelled: bool = False,
    timed_out: bool = False,
) -> RunStatus:
    """The final status of a run whose tasks are all final."""
    if timed_out:
        return RunStatus.TIMED_OUT
    if cancelled:
        return RunStatus.CANCELLED
    if uncaught_failures(statuses, catchers):
        return RunStatus.FAILED
    if any(s is TaskStatus.CANCELLED for s in statuses.values()):
        return RunStatus.FAILED
    return RunStatus.SUCCEEDED
