"""The plan: a workflow compiled once per run into nodes, stages and edges.

Stage defaults (every task of the previous stage must succeed) are kept implicit rather than
expanded into edges: a 100 x 100 staged workflow would otherwise hold a million edges.
"""

from __future__ import annotations

from msgspec import Struct, field

from flowstage.engine import collector
from flowstage.model.conditions import Condition, When
from flowstage.model.workflow import Task, Workflow


class Node(Struct, frozen=True):
    name: str
    stage: int
    task: Task
    #: explicit predecessors and conditions; None means the stage default
    requires: tuple[tuple[str, Condition], ...] | None
    when: When


class Plan(Struct):
    workflow: Workflow
    nodes: dict[str, Node]
    stages: list[list[str]]
    stage_names: list[str]
    staged: bool
    #: explicit successors of each task, with the condition of the edge
    successors: dict[str, list[tuple[str, Condition]]] = field(default_factory=dict)
    #: tasks that depend on a task with a `failure` condition (they can catch it)
    catchers: dict[str, list[str]] = field(default_factory=dict)

    def edges(self) -> list[tuple[str, str, Condition]]:
        """Every edge (from, to, condition), stage defaults expanded."""
        out: list[tuple[str, str, Condition]] = []
        for node in self.nodes.values():
            if node.requires is None:
                if node.stage > 0:
                    out.extend((p, node.name, Condition.SUCCESS) for p in self.stages[node.stage - 1])
            else:
                out.extend((p, node.name, c) for p, c in node.requires)
        return out


def compile_plan(workflow: Workflow) -> Plan:
    """Compile a validated workflow into a plan."""
    with collector.paused():  # the plan lives as long as the run: nothing of it is garbage
        return _compile(workflow)


def _compile(workflow: Workflow) -> Plan:
    nodes: dict[str, Node] = {}
    staged = workflow.stages is not None
    stage_names = workflow.stage_names()
    stages: list[list[str]] = [[] for _ in stage_names]
    successors: dict[str, list[tuple[str, Condition]]] = {}
    catchers: dict[str, list[str]] = {}
    for stage, task in workflow.all_tasks():
        if task.after is not None:
            requires: tuple[tuple[str, Condition], ...] | None = tuple(task.after.items())
        elif staged:
            requires = None
        else:
            requires = ()
        if not staged and requires is None:
            requires = ()
        nodes[task.name] = Node(task.name, stage, task, requires, task.when)
        stages[stage].append(task.name)
        for pred, cond in requires or ():
            successors.setdefault(pred, []).append((task.name, cond))
            if cond is Condition.FAILURE:
                catchers.setdefault(pred, []).append(task.name)
    return Plan(workflow, nodes, stages, stage_names, staged, successors, catchers)
