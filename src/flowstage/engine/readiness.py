"""Readiness: which tasks may be decided now, and what the stage barrier and conditions say of them.

The driver asks `candidates()` for the tasks whose answer may have changed, and `decide(name)`
for each; it tells `ended(name)` when a task reaches a final status. A task is re-decided only
when its answer can change (an explicit predecessor ended, the last one of them ended, or its
stage opened), so a run of n tasks costs O(n + edges) decisions, and a stage's default condition
is worked out once per stage.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from flowstage.engine.decisions import Action, Decision, Requirement, StageTask, decide, is_handler, stage_verdict
from flowstage.engine.plan import Plan
from flowstage.model.conditions import SATISFIED_BY, When
from flowstage.model.statuses import TASK_FAILED, TASK_FINAL, TaskStatus


class Readiness:
    """The stage barrier and the conditions of one run's plan, over the statuses `status` reads."""

    def __init__(self, plan: Plan, status: Callable[[str], TaskStatus]) -> None:
        self.plan = plan
        self.status = status
        self.handler = {
            name: node.requires is not None and is_handler(c for _, c in node.requires) for name, node in plan.nodes.items()
        }
        # explicit predecessors not final yet: a task is re-decided only when its answer may change
        self.unresolved = {
            name: sum(1 for p, _ in node.requires if status(p) not in TASK_FINAL)
            for name, node in plan.nodes.items()
            if node.requires
        }
        self.remaining = [sum(1 for n in names if status(n) not in TASK_FINAL) for names in plan.stages]
        self.stage_open = [False] * len(plan.stages)
        self._opened = 0  # stages before this one are open: the barrier never looks at them again
        self.stage_default: dict[int, Decision] = {}
        self.to_evaluate: deque[str] = deque()

    def open_stages(self) -> None:
        """Open every stage whose predecessors are all final (the barrier), queueing its tasks."""
        k = self._opened
        while k < len(self.plan.stages):
            if not self.stage_open[k]:
                self.stage_open[k] = True
                self.to_evaluate.extend(self.plan.stages[k])
            if self.remaining[k] > 0:
                break
            k += 1
        self._opened = k

    def candidates(self) -> Iterator[str]:
        """Tasks of open stages whose answer may have changed (more may be added while iterating)."""
        while self.to_evaluate:
            name = self.to_evaluate.popleft()
            if self.stage_open[self.plan.nodes[name].stage]:
                yield name

    def decide(self, name: str) -> Decision:
        node = self.plan.nodes[name]
        if node.requires is not None:
            return decide([Requirement(p, c, self.status(p)) for p, c in node.requires], node.when)
        if node.stage == 0:
            return Decision(Action.RUN)
        if node.stage not in self.stage_default:
            # the nearest earlier stage with main-line tasks decides (stages of handlers hand on)
            k = node.stage - 1
            while k > 0 and all(self.handler[n] for n in self.plan.stages[k]):
                k -= 1
            before = [(self.plan.stage_names[k], [self._stage_task(n) for n in self.plan.stages[k]])]
            self.stage_default[node.stage] = stage_verdict(before)
        return self.stage_default[node.stage]

    def _stage_task(self, name: str) -> StageTask:
        status = self.status(name)
        caught = status in TASK_FAILED and any(self.status(c) is TaskStatus.SUCCEEDED for c in self.plan.catchers.get(name, ()))
        return StageTask(name, status, self.handler[name], caught)

    def ended(self, name: str) -> None:
        """`name` reached a final status: re-decide what its answer may change; open the next stage."""
        status = self.status(name)
        stage = self.plan.nodes[name].stage
        self.remaining[stage] -= 1
        for succ, cond in self.plan.successors.get(name, ()):
            left = self.unresolved[succ] = self.unresolved[succ] - 1
            satisfied = status in SATISFIED_BY[cond]
            if left == 0 or satisfied is (self.plan.nodes[succ].when is When.ANY):
                self.to_evaluate.append(succ)
        if self.remaining[stage] == 0:
            self.open_stages()

    def clear(self) -> None:
        self.to_evaluate.clear()


__all__ = ["Readiness"]
