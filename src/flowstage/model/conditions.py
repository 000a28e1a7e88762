"""Conditions on predecessors (`after:`) and how several of them combine (`when:`)."""

from __future__ import annotations

from enum import Enum

from flowstage.model.statuses import TaskStatus


class Condition(str, Enum):
    SUCCESS = "success"
    FAILURE = "failure"  # failed or timed out: a catch
    COMPLETION = "completion"  # ran and ended: a finally, catches nothing
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


class When(str, Enum):
    ALL = "all"
    ANY = "any"

    def __str__(self) -> str:
        return self.value


# Which final predecessor states satisfy each condition. Cancelled satisfies none.
SATISFIED_BY: dict[Condition, frozenset[TaskStatus]] = {
    Condition.SUCCESS: frozenset({TaskStatus.SUCCEEDED}),
    Condition.FAILURE: frozenset({TaskStatus.FAILED, TaskStatus.TIMED_OUT}),
    Condition.COMPLETION: frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.TIMED_OUT}),
    Condition.SKIPPED: frozenset({TaskStatus.SKIPPED}),
}
