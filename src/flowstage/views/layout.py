"""The workflow graph laid out for the browser: stages as bands, tasks placed on the server.

A layout computed here is cheap (one pass over the plan), the same on every page load, and
keeps the browser's main thread free: the graph island draws given positions (cytoscape's
`preset` layout) and never runs a layout of its own.

- A staged workflow gets one column per stage, the stage as a band (a compound node) around its
  tasks. The stage's default dependency (every task of the stage before passed) is drawn once,
  band to band, never every task to every task; explicit `after:` edges go task to task,
  labelled with their condition, and a task with `when: any` is marked.
- A flat workflow (`tasks:`) gets one column per depth (its longest path from a task without
  predecessors).
- Past `COLLAPSE_AT` tasks the graph is collapsed: one node per stage (or depth) carrying its
  task count by status, so a 1,000-task workflow stays a handful of nodes; the task table is
  the full view.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from flowstage.engine.plan import Plan

COLLAPSE_AT = 150
COLUMN = 240
ROW = 64


def _columns(plan: Plan) -> list[list[str]]:
    """Tasks by column: the stages of a staged workflow, the depths of a flat one."""
    if plan.staged:
        return [list(names) for names in plan.stages]
    depth: dict[str, int] = {}
    for name in _topological(plan):
        requires = plan.nodes[name].requires or ()
        depth[name] = 1 + max((depth[p] for p, _ in requires), default=-1)
    columns: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in plan.nodes:  # file order within a column
        columns[depth[name]].append(name)
    return columns


def _topological(plan: Plan) -> list[str]:
    """Task names, each after its predecessors (the plan is validated: no cycle)."""
    seen: set[str] = set()
    order: list[str] = []
    for start in plan.nodes:
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            name, done = stack.pop()
            if done:
                order.append(name)
                continue
            if name in seen:
                continue
            seen.add(name)
            stack.append((name, True))
            stack.extend((p, False) for p, _ in (plan.nodes[name].requires or ()) if p not in seen)
    return order


def _label(plan: Plan, column: int) -> str:
    return plan.stage_names[column] if plan.staged else f"depth {column}"


def elements(
    plan: Plan,
    statuses: Mapping[str, str] | None = None,
    *,
    copies: Mapping[str, Mapping[str, int]] | None = None,
    notes: Mapping[str, str] | None = None,
    collapse_at: int = COLLAPSE_AT,
) -> dict[str, Any]:
    """Cytoscape elements with positions: ``{"collapsed", "nodes", "edges"}``.

    `statuses` (task name → status) makes it the dynamic view; without it every task is drawn
    without a status (the static view). `copies` (task name → status → count) gives a fanned-out
    task's copies by status: the task stays one node, carrying the counts.
    """
    columns = _columns(plan)
    if len(plan.nodes) > collapse_at:
        return _collapsed(plan, columns, statuses)
    tallest = max((len(c) for c in columns), default=0)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for index, names in enumerate(columns):
        band = f"stage:{index}"
        if plan.staged:
            nodes.append({"data": {"id": band, "label": _label(plan, index), "kind": "stage"}, "classes": "stage"})
        top = (tallest - len(names)) * ROW / 2
        for row, name in enumerate(names):
            node = plan.nodes[name]
            data: dict[str, Any] = {"id": name, "label": name, "kind": node.task.kind, "stage": _label(plan, index)}
            if plan.staged:
                data["parent"] = band
            if node.when.value == "any":
                data["any"] = True
            count = node.task.instances or 0
            if count > 1:
                data["copies"] = count
            elif node.task.for_each is not None:
                data["copies"] = "each"
            if copies is not None and copies.get(name):
                data["counts"] = dict(sorted(copies[name].items()))
            if notes is not None and notes.get(name):
                data["note"] = notes[name]
            classes = ["task"]
            if statuses is not None:
                data["status"] = statuses.get(name, "pending")
                classes.append(data["status"])
            if data.get("any"):
                classes.append("any")
            nodes.append({"data": data, "position": {"x": index * COLUMN, "y": top + row * ROW}, "classes": " ".join(classes)})
            for pred, condition in node.requires or ():
                edges.append(_edge(pred, name, str(condition)))
        if plan.staged and index > 0 and any(plan.nodes[n].requires is None for n in names):
            edges.append(_edge(f"stage:{index - 1}", band, "passed", classes="stage-edge"))
    return {"collapsed": False, "nodes": nodes, "edges": edges}


def _edge(source: str, target: str, condition: str, *, classes: str = "") -> dict[str, Any]:
    return {
        "data": {"id": f"{source}->{target}", "source": source, "target": target, "condition": condition},
        "classes": " ".join(filter(None, [classes, condition])),
    }


def _collapsed(plan: Plan, columns: list[list[str]], statuses: Mapping[str, str] | None) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for index, names in enumerate(columns):
        counts = Counter(statuses.get(n, "pending") for n in names) if statuses is not None else Counter()
        data: dict[str, Any] = {
            "id": f"stage:{index}",
            "label": f"{_label(plan, index)} ({len(names)} tasks)",
            "kind": "stage",
            "tasks": len(names),
            "counts": dict(sorted(counts.items())),
        }
        if statuses is not None:
            data["status"] = _worst(counts)
        nodes.append(
            {
                "data": data,
                "position": {"x": index * COLUMN, "y": 0},
                "classes": f"stage collapsed {data.get('status', '')}".strip(),
            }
        )
        if index > 0:
            edges.append(_edge(f"stage:{index - 1}", f"stage:{index}", "passed", classes="stage-edge"))
    return {"collapsed": True, "nodes": nodes, "edges": edges}


# what a collapsed stage shows first: trouble, then work under way, then the rest
_PRECEDENCE = ("failed", "timed_out", "cancelled", "running", "retrying", "pending", "skipped", "succeeded")


def _worst(counts: Counter[str]) -> str:
    return next((s for s in _PRECEDENCE if counts.get(s)), "pending")


__all__ = ["COLLAPSE_AT", "elements"]
