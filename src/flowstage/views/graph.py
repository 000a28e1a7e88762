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


def _text(plan: Plan, statuses: Mapping[str, str] | None) -> str:
    width = max((len(n) for n in plan.nodes), default=4)
    swidth = max((len(s) for s in plan.stage_names), default=5)
    lines = []
    for node in plan.nodes.values():
        line = f"{plan.stage_names[node.stage]:<{swidth}}  {node.name:<{width}}"
        if statuses is not None:
            line += f"  {statuses.get(node.name, 'pending'):<10}"
        if node.requires is None:
            deps = f"after stage {plan.stage_names[node.stage - 1]}" if node.stage > 0 else ""
        elif node.requires:
            joined = ", ".join(f"{p}={c}" for p, c in node.requires)
            deps = f"after {joined}" + (f" (when {node.when.value})" if len(node.requires) > 1 else "")
        else:
            deps = ""
        lines.append((line + "  " + deps).rstrip())
    return "\n".join(lines) + "\n"


def _mid(name: str) -> str:
    return "n_" + name.replace("-", "_")


def _mermaid(plan: Plan, statuses: Mapping[str, str] | None) -> str:
    out = ["flowchart LR"]
    for si, stage in enumerate(plan.stages):
        if plan.staged:
            out.append(f'  subgraph s{si}["{plan.stage_names[si]}"]')
        for name in stage:
            label = name if statuses is None else f"{name}<br/>{statuses.get(name, 'pending')}"
            out.append(f'    {_mid(name)}["{label}"]')
        if plan.staged:
            out.append("  end")
    for a, b, c in plan.edges():
        arrow = "-->" if str(c) == "success" else f"-- {c} -->"
        out.append(f"  {_mid(a)} {arrow} {_mid(b)}")
    if statuses is not None:
        for name in plan.nodes:
            color = _COLORS.get(statuses.get(name, "pending"), "#e0e0e0")
            out.append(f"  style {_mid(name)} fill:{color}")
    return "\n".join(out) + "\n"


def _dot_id(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def _dot(plan: Plan, statuses: Mapping[str, str] | None, title: str) -> str:
    out = [f"digraph {_dot_id(title)} {{", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fillcolor="#ffffff"];']
    for si, stage in enumerate(plan.stages):
        indent = "  "
        if plan.staged:
            out.append(f"  subgraph cluster_{si} {{")
            out.append(f"    label={_dot_id(plan.stage_names[si])};")
            indent = "    "
        for name in stage:
            attrs = [f"label={_dot_id(name if statuses is None else name + chr(10) + statuses.get(name, 'pending'))}"]
            if statuses is not None:
                attrs.append(f'fillcolor="{_COLORS.get(statuses.get(name, "pending"), "#ffffff")}"')
            out.append(f"{indent}{_dot_id(name)} [{', '.join(attrs)}];")
        if plan.staged:
            out.append("  }")
    styles = {"success": "solid", "failure": "dashed", "completion": "dotted", "skipped": "dotted"}
    for a, b, c in plan.edges():
        label = "" if str(c) == "success" else f', label="{c}"'
        out.append(f"  {_dot_id(a)} -> {_dot_id(b)} [style={styles[str(c)]}{label}];")
    out.append("}")
    return "\n".join(out) + "\n"


def render(plan: Plan, fmt: str = "text", statuses: Mapping[str, str] | None = None) -> str:
    """The graph in `fmt`; `svg` needs Graphviz's `dot` on PATH."""
    if fmt == "text":
        return _text(plan, statuses)
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
