"""The workflow graph: static (design) or dynamic (with a run's statuses), as data or text.

Formats: ``text`` (one line per task with its stage), ``mermaid``, ``dot`` and ``svg`` (dot
rendered by Graphviz when it is installed).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from flowstage.engine.plan import Plan
from flowstage.errors import UsageError

FORMATS = ("text", "mermaid", "dot", "svg")

_COLORS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "timed_out": "#ef6c00",
    "skipped": "#9e9e9e",
    "cancelled": "#6d4c41",
    "running": "#1565c0",
    "retrying": "#f9a825",
    "pending": "#e0e0e0",
}


def graph_data(plan: Plan, statuses: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{"nodes": [{"id", "stage", "status"?}], "edges": [{"from", "to", "condition"}], "stages"}``."""
    nodes = []
    for node in plan.nodes.values():
        item: dict[str, Any] = {"id": node.name, "stage": plan.stage_names[node.stage], "kind": node.task.kind}
        if node.when.value != "all":
            item["when"] = node.when.value
        if statuses is not None:
            item["status"] = statuses.get(node.name, "pending")
        nodes.append(item)
    edges = [{"from": a, "to": b, "condition": str(c)} for a, b, c in plan.edges()]
    return {"nodes": nodes, "edges": edges, "stages": plan.stage_names}


def caught(plan: Plan, statuses: Mapping[str, str]) -> set[str]:
    """The failed tasks whose failure a catch (a `failure` edge) handled: a task that ran and succeeded."""
    failed = {n for n, s in statuses.items() if s in ("failed", "timed_out")}
    return {n for n in failed if any(statuses.get(c) == "succeeded" for c in plan.catchers.get(n, []))}


def shown_status(plan: Plan, statuses: Mapping[str, str], name: str) -> str:
    status = statuses.get(name, "pending")
    return f"{status} (caught)" if name in caught(plan, statuses) else status


def _text(plan: Plan, statuses: Mapping[str, str] | None, reasons: Mapping[str, str] | None = None) -> str:
    width = max((len(n) for n in plan.nodes), default=4)
    swidth = max((len(s) for s in plan.stage_names), default=5)
    handled = caught(plan, statuses) if statuses is not None else set()
    status_width = (
        max((len(statuses.get(n, "pending")) + (9 if n in handled else 0) for n in plan.nodes), default=7) if statuses else 0
    )
    lines = []
    for node in plan.nodes.values():
        line = f"{plan.stage_names[node.stage]:<{swidth}}  {node.name:<{width}}"
        if statuses is not None:
            status = statuses.get(node.name, "pending") + (" (caught)" if node.name in handled else "")
            line += f"  {status:<{status_width}}"
        if node.requires is None:
            deps = f"after stage {plan.stage_names[node.stage - 1]}" if node.stage > 0 else ""
        elif node.requires:
            joined = ", ".join(f"{p}={c}" for p, c in node.requires)
            deps = f"after {joined}" + (f" (when {node.when.value})" if len(node.requires) > 1 else "")
        else:
            deps = ""
        why = (reasons or {}).get(node.name)
        if why and statuses is not None and statuses.get(node.name) == "skipped":
            deps = (deps + f"  — {why}").strip()
        lines.append((line + "  " + deps).rstrip())
    return "\n".join(lines) + "\n"


def _mid(name: str) -> str:
    return "n_" + name.replace("-", "_")


def _explicit_edges(plan: Plan) -> list[tuple[str, str, str]]:
    """The edges a task's `after:` names; a stage's default dependency is drawn once, stage to stage."""
    return [(p, node.name, str(c)) for node in plan.nodes.values() for p, c in node.requires or ()]


def _stage_links(plan: Plan) -> list[tuple[int, int]]:
    """(stage before, stage) for each stage holding a task on the default dependency."""
    if not plan.staged:
        return []
    return [
        (si - 1, si) for si in range(1, len(plan.stages)) if any(plan.nodes[name].requires is None for name in plan.stages[si])
    ]


def _text_color(fill: str) -> str:
    """Black or white, whichever reads on `fill` (its relative luminance)."""
    r, g, b = (int(fill[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "#ffffff"


_LEGEND = ("succeeded", "failed", "skipped", "running", "pending")


def _mermaid(plan: Plan, statuses: Mapping[str, str] | None) -> str:
    title = plan.workflow.name + (" (run)" if statuses is not None else "")
    out = ["---", f"title: {title}", "---", "flowchart LR"]
    for si, stage in enumerate(plan.stages):
        if plan.staged:
            out.append(f'  subgraph s{si}["{plan.stage_names[si]}"]')
        for name in stage:
            label = name if statuses is None else f"{name}<br/>{shown_status(plan, statuses, name)}"
            out.append(f'    {_mid(name)}["{label}"]')
        if plan.staged:
            out.append("  end")
    for before, after in _stage_links(plan):
        out.append(f"  s{before} ==> s{after}")
    for a, b, c in _explicit_edges(plan):
        arrow = "-->" if c == "success" else f"-- {c} -->"
        out.append(f"  {_mid(a)} {arrow} {_mid(b)}")
    if statuses is not None:
        for name in plan.nodes:
            fill = _COLORS.get(statuses.get(name, "pending"), "#e0e0e0")
            out.append(f"  style {_mid(name)} fill:{fill},color:{_text_color(fill)}")
        out.append('  subgraph legend["legend"]')
        for status in _LEGEND:
            out.append(f'    legend_{status}["{status}"]')
        out.append("  end")
        for status in _LEGEND:
            fill = _COLORS[status]
            out.append(f"  style legend_{status} fill:{fill},color:{_text_color(fill)}")
    return "\n".join(out) + "\n"


def _dot_id(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def _dot(plan: Plan, statuses: Mapping[str, str] | None, title: str) -> str:
    label = title + (" (run)" if statuses is not None else "")
    out = [
        f"digraph {_dot_id(title)} {{",
        "  rankdir=LR;",
        "  compound=true;",
        f"  label={_dot_id(label)}; labelloc=t;",
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff"];',
    ]
    for si, stage in enumerate(plan.stages):
        indent = "  "
        if plan.staged:
            out.append(f"  subgraph cluster_{si} {{")
            out.append(f"    label={_dot_id(plan.stage_names[si])};")
            indent = "    "
        for name in stage:
            text = name if statuses is None else name + "\n" + shown_status(plan, statuses, name)
            attrs = [f"label={_dot_id(text)}"]
            if statuses is not None:
                fill = _COLORS.get(statuses.get(name, "pending"), "#ffffff")
                attrs.append(f'fillcolor="{fill}", fontcolor="{_text_color(fill)}"')
            out.append(f"{indent}{_dot_id(name)} [{', '.join(attrs)}];")
        if plan.staged:
            out.append("  }")
    styles = {"success": "solid", "failure": "dashed", "completion": "dotted", "skipped": "dotted"}
    for before, after in _stage_links(plan):  # one edge from stage to stage, drawn between the clusters
        tail, head = plan.stages[before][0], plan.stages[after][0]
        out.append(f"  {_dot_id(tail)} -> {_dot_id(head)} [ltail=cluster_{before}, lhead=cluster_{after}, penwidth=2];")
    for a, b, c in _explicit_edges(plan):
        edge_label = "" if c == "success" else f', label="{c}"'
        out.append(f"  {_dot_id(a)} -> {_dot_id(b)} [style={styles[c]}{edge_label}];")
    if statuses is not None:
        out.append('  subgraph cluster_legend { label="legend";')
        for status in _LEGEND:
            fill = _COLORS[status]
            out.append(f'    "legend {status}" [label="{status}", fillcolor="{fill}", fontcolor="{_text_color(fill)}"];')
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def render(
    plan: Plan, fmt: str = "text", statuses: Mapping[str, str] | None = None, reasons: Mapping[str, str] | None = None
) -> str:
    """The graph in `fmt` (with `statuses`: a run's; `reasons`: why each skipped task was); `svg`
    needs Graphviz's `dot` on PATH."""
    if fmt == "text":
        return _text(plan, statuses, reasons)
    if fmt == "mermaid":
        return _mermaid(plan, statuses)
    if fmt == "dot":
        return _dot(plan, statuses, plan.workflow.name)
    if fmt == "svg":
        dot = shutil.which("dot")
        if dot is None:
            raise UsageError(
                "--format svg needs Graphviz's `dot` on PATH (apt-get install graphviz); try --format dot or mermaid"
            )
        proc = subprocess.run(
            [dot, "-Tsvg"], input=_dot(plan, statuses, plan.workflow.name), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise UsageError(f"graphviz failed: {proc.stderr.strip()}")
        return proc.stdout
    raise UsageError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
