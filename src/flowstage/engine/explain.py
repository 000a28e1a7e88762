"""Why a task ran, waited or was skipped: the decisions of a run, traced back to their root causes.

Pure, like `decisions`: given a run's plan and its tasks' statuses, `why` asks the same questions
the runner asked (`Readiness.decide`) and follows every condition that did not hold back through
the tasks it names, until it reaches a task that ended by itself (it failed, timed out, was
cancelled) or was skipped by its own `if:`. `flowstage explain` and the API show the result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flowstage.engine.decisions import Action, holds
from flowstage.engine.plan import Plan
from flowstage.engine.readiness import Readiness
from flowstage.model.conditions import Condition, When
from flowstage.model.statuses import TASK_FAILED, TaskStatus

_RAN = frozenset(
    {
        TaskStatus.RUNNING,
        TaskStatus.RETRYING,
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.TIMED_OUT,
    }
)


@dataclass(frozen=True)
class Check:
    """One condition asked of a predecessor, and whether it held (None: not decided yet)."""

    task: str
    condition: str  # success | failure | completion | skipped, or "stage" for a stage's default
    status: str
    held: bool | None
    caught: bool = False


@dataclass
class Step:
    """One task's decision: what happened to it, why, and the steps that explain its causes."""

    task: str
    status: str
    verdict: str  # ran | skipped | waits | cancelled | pending
    because: str
    when: str | None = None
    checks: list[Check] = field(default_factory=list)
    causes: list[Step] = field(default_factory=list)
    root: bool = False  # the chain ends here: the task ended by itself or its `if:` was false

    def to_dict(self) -> dict[str, object]:
        return {
            "task": self.task,
            "status": self.status,
            "verdict": self.verdict,
            "because": self.because,
            "when": self.when,
            "checks": [
                {"task": c.task, "condition": c.condition, "status": c.status, "held": c.held, "caught": c.caught}
                for c in self.checks
            ],
            "root_cause": self.root,
            "causes": [c.to_dict() for c in self.causes],
        }


def why(
    plan: Plan,
    status: Callable[[str], TaskStatus],
    name: str,
    *,
    reasons: Mapping[str, str | None] | None = None,
    errors: Mapping[str, str | None] | None = None,
    ended: Mapping[str, float | None] | None = None,
    decided: Mapping[str, float | None] | None = None,
) -> Step:
    """The decision taken for `name`, with the chain of decisions behind it.

    With `ended` (when each task reached its final status) and `decided` (when each task was
    started or skipped), every condition is judged as it stood when its task was decided: a
    failure caught only later still skipped what was decided before the catch.
    """
    readiness = Readiness(plan, status)
    readiness.open_stages()  # the barrier as it stands: stages whose predecessors all ended are open
    return _Tracer(plan, status, readiness, reasons or {}, errors or {}, ended or {}, decided or {}).step(name, set())


class _Tracer:
    def __init__(
        self,
        plan: Plan,
        status: Callable[[str], TaskStatus],
        readiness: Readiness,
        reasons: Mapping[str, str | None],
        errors: Mapping[str, str | None],
        ended: Mapping[str, float | None],
        decided: Mapping[str, float | None],
    ) -> None:
        self.plan = plan
        self.status = status
        self.readiness = readiness
        self.reasons = reasons
        self.errors = errors
        self.ended = ended
        self.decided = decided

    def status_at(self, name: str, at: float | None) -> TaskStatus:
        """`name`'s status as it stood at `at` (None: now): not final yet if it ended later."""
        s = self.status(name)
        end = self.ended.get(name)
        if at is not None and end is not None and end > at:
            return TaskStatus.RUNNING
        return s

    def caught(self, name: str, at: float | None = None) -> bool:
        return self.status_at(name, at) in TASK_FAILED and any(
            self.status_at(c, at) is TaskStatus.SUCCEEDED for c in self.plan.catchers.get(name, ())
        )

    def checks(self, name: str) -> tuple[list[Check], str | None]:
        """The conditions of `name` against its predecessors as they stood when it was decided, and its `when`."""
        node = self.plan.nodes[name]
        at = self.decided.get(name)
        if node.requires is not None:
            out = []
            for p, c in node.requires:
                s = self.status_at(p, at)
                out.append(Check(p, str(c), str(s), holds(c, s), self.caught(p, at)))
            return out, str(node.when)
        if node.stage == 0:
            return [], None
        k = self._deciding_stage(node.stage)
        out = []
        for n in self.plan.stages[k]:
            if self.readiness.handler[n]:
                continue  # a catch or a finally is not on the main line
            s = self.status_at(n, at)
            caught = self.caught(n, at)
            out.append(Check(n, "stage", str(s), True if caught else holds(Condition.SUCCESS, s), caught))
        return out, None

    def _deciding_stage(self, stage: int) -> int:
        """The nearest earlier stage with main-line tasks (a stage of handlers hands the verdict on)."""
        k = stage - 1
        while k > 0 and all(self.readiness.handler[n] for n in self.plan.stages[k]):
            k -= 1
        return k

    def step(self, name: str, seen: set[str]) -> Step:
        seen = seen | {name}
        node = self.plan.nodes[name]
        s = self.status(name)
        checks, when = self.checks(name)
        if_ = node.task.if_
        reason = self.reasons.get(name)
        if s is TaskStatus.SKIPPED and reason and reason.startswith("if:"):
            return Step(name, str(s), "skipped", reason, when, checks, root=True)
        if s is TaskStatus.SKIPPED:
            failing = [c for c in checks if c.held is False]
            if when == str(When.ANY):
                because = reason or "no condition held"
            else:
                because = reason or "a condition could no longer hold"
            causes = [
                self.step(c.task, seen) for c in failing if c.task not in seen and self.status(c.task) is not TaskStatus.SUCCEEDED
            ]
            if not failing and node.requires is None and node.stage > 0:
                because = reason or f"stage '{self.plan.stage_names[self._deciding_stage(node.stage)]}' did not pass"
            return Step(name, str(s), "skipped", because, when, checks, causes)
        if s in _RAN:
            because = self._ran_because(name, checks, when)
            if if_ is not None:
                because += f"; if: {if_} was true"
            step = Step(name, str(s), "ran", because, when, checks)
            if s in TASK_FAILED:
                step.root = True
                error = self.errors.get(name)
                step.because += f"; it {'timed out' if s is TaskStatus.TIMED_OUT else 'failed'}" + (f": {error}" if error else "")
                if self.caught(name):
                    catchers = [c for c in self.plan.catchers.get(name, ()) if self.status(c) is TaskStatus.SUCCEEDED]
                    step.because += f" (caught by {', '.join(catchers)})"
            return step
        if s is TaskStatus.CANCELLED:
            return Step(name, str(s), "cancelled", reason or "the run was cancelled before it ended", when, checks, root=True)
        decision = self.readiness.decide(name)
        if decision.action is Action.WAIT or (node.requires is None and not self.readiness.stage_open[node.stage]):
            because = decision.reason or "waits for the stage before it"
            causes = [self.step(c.task, seen) for c in checks if c.held is None and c.task not in seen]
            return Step(name, str(s), "waits", because, when, checks, causes)
        return Step(name, str(s), "pending", reason or "not decided yet", when, checks)

    def _ran_because(self, name: str, checks: list[Check], when: str | None) -> str:
        node = self.plan.nodes[name]
        if node.requires is None and node.stage == 0:
            return "it is in the first stage" if self.plan.staged else "it has no `after:`: it starts at once"
        if node.requires is None:
            stage = self.plan.stage_names[self._deciding_stage(node.stage)]
            return f"stage '{stage}' passed (every main-line task succeeded or was caught)"
        held = [f"{c.task}={c.condition} ({c.task} {c.status})" for c in checks if c.held]
        if when == str(When.ANY):
            return "any condition may hold: " + ", ".join(held) if held else "when: any"
        return "every condition held: " + ", ".join(held)


__all__ = ["Check", "Step", "why"]
