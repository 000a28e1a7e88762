"""Load a workflow file into a validated `Workflow`, with every problem at ``file:line:col``.

Three passes: YAML 1.2 parsing with positions (`yamlsource`), the pydantic model (types, keys,
kinds), then the graph (names, references, stages, cycles) and template syntax. They run with the
garbage collector paused: what they build lives on as the workflow, and collection passes over a
workflow of 100,000 tasks while it grows would cost more than building it.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from flowstage.errors import DefinitionError, Problem
from flowstage.model import templates
from flowstage.model.workflow import Task, Workflow, did_you_mean
from flowstage.model.yamlsource import Source, collector_paused, parse

_TOP_KEYS = tuple(Workflow.model_fields)


def load(path: str | Path, *, notifiers: Collection[str] | None = None) -> Workflow:
    """Read and validate the workflow file at `path`; `notifiers`: the project's, that alerts may name."""
    from flowstage.files import read_definition

    return load_text(read_definition(path, "workflow file"), str(path), notifiers=notifiers)


def load_text(text: str, file: str = "<input>", *, notifiers: Collection[str] | None = None) -> Workflow:
    """Validate workflow text (YAML or JSON)."""
    with collector_paused():
        source = parse(text, file)
        return from_source(source, notifiers=notifiers)


def _pydantic_problems(source: Source, exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    errors: list[dict[str, Any]] = [dict(err, loc=_data_path(source.data, err["loc"])) for err in exc.errors(include_url=False)]
    # a union reports a type mismatch for each branch that does not fit: keep the branch that does
    real = [tuple(e["loc"]) for e in errors if not str(e["type"]).endswith("_type")]
    errors = [
        e for e in errors if not (str(e["type"]).endswith("_type") and any(r[: len(e["loc"])] == tuple(e["loc"]) for r in real))
    ]
    for err in errors:
        loc = list(err["loc"])
        message = err["msg"]
        etype = err["type"]
        ctx = err.get("ctx") or {}
        if etype == "extra_forbidden":
            key = loc[-1] if loc else "?"
            parent = tuple(loc[:-1])
            choices = _choices_at(parent)
            message = f"unknown key '{key}'{did_you_mean(str(key), choices)}"
        elif etype == "missing":
            message = f"missing required key '{loc[-1]}'"
            loc = loc[:-1]
        elif "key" in ctx:
            loc = [*loc, ctx["key"]]
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        elif message.startswith("Assertion failed, "):
            message = message[len("Assertion failed, ") :]
        if etype not in ("extra_forbidden", "missing") and "key" not in ctx and loc:
            message = f"{_dotted(loc)}: {message}"
        marker = (tuple(loc), message)
        if marker in seen:
            continue
        seen.add(marker)
        problems.append(source.problem(tuple(loc), message))
    return problems


def _data_path(data: Any, loc: tuple[Any, ...]) -> list[Any]:
    """`loc` without pydantic's union-branch and validator labels: only keys that exist in the data."""
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            out.append(part)
            node = node[part]
        elif (
            i == len(loc) - 1
            and isinstance(node, dict)
            and isinstance(part, str)
            and part not in ("spec",)
            and not _is_label(part)
        ):
            out.append(part)  # a missing or unknown key: keep its name
    return out


def _is_label(part: str) -> bool:
    return (
        part in ("str", "int", "float", "bool", "none", "list", "dict")
        or "[" in part
        or part.startswith("function-")
        or part[:1].isupper()
    )


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _choices_at(parent: tuple[Any, ...]) -> list[str]:
    from flowstage.model.workflow import Alert, Preferences, Stage, Trigger

    if not parent:
        return list(_TOP_KEYS)
    last = next((p for p in reversed(parent) if isinstance(p, str)), "")
    by_key: dict[str, type[BaseModel]] = {
        "preferences": Preferences,
        "trigger": Trigger,
        "alerts": Alert,
        "stages": Stage,
    }
    model = by_key.get(str(last))
    if model is None:
        return []
    fields: dict[str, Any] = model.model_fields
    return [f.alias or name for name, f in fields.items()]


def from_source(source: Source, *, notifiers: Collection[str] | None = None) -> Workflow:
    data = source.data
    if not isinstance(data, dict):
        raise DefinitionError([source.problem((), "a workflow file is a mapping (name, stages or tasks, ...)")])
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(_pydantic_problems(source, exc)) from None
    problems = check_graph(workflow, source, notifiers=notifiers)
    if problems:
        raise DefinitionError(problems)
    return workflow


def _task_path(workflow: Workflow, stage: int, index: int) -> tuple[Any, ...]:
    if workflow.tasks is not None:
        return ("tasks", index)
    return ("stages", stage, "tasks", index)


def check_graph(workflow: Workflow, source: Source | None = None, *, notifiers: Collection[str] | None = None) -> list[Problem]:
    """Names, references, stage order, cycles and templates: every problem found.

    `notifiers` (the names flowstage.yaml defines) are what the alerts may notify; None skips
    that check (a file looked at without its project).
    """

    def problem(path: tuple[Any, ...], message: str) -> Problem:
        if source is None:
            return Problem(f"{_dotted(list(path))}: {message}")
        return source.problem(path, message)

    problems: list[Problem] = []
    where: dict[str, tuple[int, int]] = {}
    if workflow.stages is not None:
        stage_seen: set[str] = set()
        for si, stage in enumerate(workflow.stages):
            if stage.name in stage_seen:
                problems.append(problem(("stages", si, "name"), f"duplicate stage name '{stage.name}'"))
            stage_seen.add(stage.name)
    positions: list[tuple[int, int, Task]] = []
    if workflow.tasks is not None:
        positions = [(0, i, t) for i, t in enumerate(workflow.tasks)]
    else:
        positions = [(si, i, t) for si, s in enumerate(workflow.stages or []) for i, t in enumerate(s.tasks)]
    for si, i, task in positions:
        if task.name in where:
            problems.append(problem((*_task_path(workflow, si, i), "name"), f"duplicate task name '{task.name}'"))
        else:
            where[task.name] = (si, i)
    stage_names = workflow.stage_names()
    for si, i, task in positions:
        path = _task_path(workflow, si, i)
        for pred in task.after or {}:
            at = (*path, "after", pred)
            if pred == task.name:
                problems.append(problem(at, f"task '{task.name}' cannot come after itself"))
            elif pred not in where:
                problems.append(problem(at, f"unknown task '{pred}' in after{did_you_mean(pred, list(where))}"))
            elif workflow.stages is not None and where[pred][0] >= si:
                ps = where[pred][0]
                rel = "the same stage" if ps == si else f"a later stage ('{stage_names[ps]}')"
                problems.append(problem(at, f"'{pred}' is in {rel}; after: may only name tasks of earlier stages"))
        problems.extend(_template_problems(task, path, problem))
    known = sorted(notifiers) if notifiers is not None else None
    for ai, alert in enumerate(workflow.alerts):
        if alert.task is not None and alert.task not in where:
            problems.append(
                problem(("alerts", ai, "task"), f"unknown task '{alert.task}'{did_you_mean(alert.task, list(where))}")
            )
        for ni, name in enumerate(alert.notify if known is not None else ()):
            if known is not None and name not in known:
                listed = ", ".join(known) or "none: define them under notifiers: in flowstage.yaml"
                message = f"unknown notifier '{name}'{did_you_mean(name, known)} (known: {listed})"
                problems.append(problem(("alerts", ai, "notify", ni), message))
    if workflow.tasks is not None and not problems:
        cycle = find_cycle({t.name: list(t.after or {}) for t in workflow.tasks})
        if cycle:
            si, i = where[cycle[0]]
            problems.append(problem((*_task_path(workflow, si, i), "after"), "cycle: " + " -> ".join(cycle)))
    return problems


def _template_problems(task: Task, path: tuple[Any, ...], problem: Any) -> list[Problem]:
    out: list[Problem] = []
    if task.if_ is not None:
        msg = templates.expression_error(task.if_)
        if msg:
            out.append(problem((*path, "if"), msg))

    def walk(value: Any, at: tuple[Any, ...]) -> None:
        if isinstance(value, str):
            msg = templates.syntax_error(value)
            if msg:
                out.append(problem(at, msg))
        elif isinstance(value, list):
            for n, v in enumerate(value):
                walk(v, (*at, n))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*at, k))

    walk(task.with_, (*path, "with"))
    walk(task.variables, (*path, "variables"))
    if task.for_each is not None:
        walk(task.for_each, (*path, "for_each"))
    for field in task.spec.template_fields:
        walk(getattr(task.spec, field), (*path, field))
    for where, text in _sql_texts(task):
        if templates.has_template(text):
            out.append(problem((*path, *where), "templates are not rendered in SQL text: bind values with params: and :name"))
    package = _field(task.spec, "dataflow")
    if package is not None and not isinstance(package, str):
        from flowstage.model.dataflow import check_references

        for where, message in check_references(package):
            out.append(problem((*path, "dataflow", *where), message))
    return out


def _sql_texts(task: Task) -> list[tuple[tuple[Any, ...], str]]:
    """The SQL texts of a task (sql:, a sensor's sql:): never rendered, only bound."""
    out: list[tuple[tuple[Any, ...], str]] = []
    sql = _field(task.spec, "sql")
    if isinstance(sql, str):
        out.append((("sql",), sql))
    target = _field(task.spec, "wait_for")
    if target is not None and isinstance(getattr(target, "sql", None), str):
        out.append((("wait_for", "sql"), target.sql))
    return out


def _field(model: BaseModel, name: str) -> Any:
    """`model.name`, or None for a model without that field (pydantic's miss costs an exception)."""
    return getattr(model, name) if name in _fields_of(type(model)) else None


_model_fields: dict[type[BaseModel], frozenset[str]] = {}


def _fields_of(model: type[BaseModel]) -> frozenset[str]:
    found = _model_fields.get(model)
    if found is None:
        found = _model_fields[model] = frozenset(model.model_fields)
    return found


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One cycle of `graph` (node -> predecessors) as a path ``[a, b, a]``, or None.

    The path follows the edges (each node is a predecessor of the next) and starts at the node
    that comes first in `graph` (the first task of the cycle in the file). A predecessor that is
    not a node of `graph` is ignored (an unknown name is reported on its own).
    """
    from graphlib import CycleError, TopologicalSorter

    sorter = TopologicalSorter({node: [p for p in preds if p in graph] for node, preds in graph.items()})
    try:
        sorter.prepare()
    except CycleError as exc:
        found: list[str] = exc.args[1][:-1]
        order = {node: i for i, node in enumerate(graph)}
        first = min(range(len(found)), key=lambda i: order[found[i]])
        path = found[first:] + found[:first]
        return [*path, path[0]]
    return None
