"""Load a workflow file into a validated `Workflow`, with every problem at ``file:line:col``.

Three passes: YAML 1.2 parsing with positions (`yamlsource`), the pydantic model (types, keys,
kinds), then the graph (names, references, stages, cycles) and template syntax. They run with the
garbage collector paused: what they build lives on as the workflow, and collection passes over a
workflow of 100,000 tasks while it grows would cost more than building it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from flowstage.errors import DefinitionError, Problem
from flowstage.model import templates
from flowstage.model.workflow import NAME_PATTERN, TASK_NAME_PATTERN, Task, Workflow, did_you_mean
from flowstage.model.yamlsource import Source, collector_paused, parse


def load(path: str | Path, *, notifiers: Collection[str] | None = None) -> Workflow:
    """Read and validate the workflow file at `path`; `notifiers`: the project's, that alerts may name."""
    from flowstage.files import read_definition

    return load_text(read_definition(path, "workflow file"), str(path), notifiers=notifiers)


def load_text(text: str, file: str = "<input>", *, notifiers: Collection[str] | None = None) -> Workflow:
    """Validate workflow text (YAML or JSON)."""
    with collector_paused():
        source = parse(text, file)
        return from_source(source, notifiers=notifiers)


#: what a value of each pattern-checked key must look like, in words (a test checks every pattern is here)
PATTERN_WORDS: dict[str, str] = {
    NAME_PATTERN: "must start with a lowercase letter and use only a-z, 0-9, _ and -",
    TASK_NAME_PATTERN: "must start with a letter or _ and use only letters, digits, _ and -",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "must start with a letter or _ and use only letters, digits and _",
    r"^(?i:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)$": "is not an HTTP method: one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
    r"^(csv|parquet|json)$": "is not a file format: one of csv, parquet, json",
}

#: what a value of each type is called, for pydantic's type errors
_TYPE_WORDS: dict[str, str] = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "none_required": "null",
}


def _shown(value: Any) -> str:
    """A value as the file wrote it: text in double quotes, a list or a mapping by what it is."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    try:
        text = str(value)
    except ValueError:  # an integer past Python's 4,300 digits
        return "a number of more than 4,300 digits"
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


def _words(err: dict[str, Any]) -> str | None:
    """Pydantic's error in the words of a workflow file (None: its own message is clear)."""
    etype = str(err["type"])
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if etype in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[etype]}, got {_shown(value)}"
    if etype in ("enum", "literal_error"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"{_shown(value)} is not one of {', '.join(choices)}{hint}"
    if etype == "string_pattern_mismatch":
        return f"{_shown(value)} {PATTERN_WORDS.get(str(ctx.get('pattern')), 'is not valid here')}"
    limits = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if etype in limits:
        words, key = limits[etype]
        return f"must be {words} {ctx.get(key)}, got {_shown(value)}"
    if etype in ("too_short", "string_too_short"):
        least = ctx.get("min_length", 1)
        unit = "character" if etype == "string_too_short" else "item"
        return "must not be empty" if least == 1 else f"needs at least {least} {unit}s, got {ctx.get('actual_length')}"
    if etype in ("too_long", "string_too_long"):
        unit = "characters" if etype == "string_too_long" else "items"
        return f"may hold at most {ctx.get('max_length')} {unit}"
    return None


def _pydantic_problems(source: Source, exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    errors: list[dict[str, Any]] = [dict(err, loc=_data_path(source.data, err["loc"])) for err in exc.errors(include_url=False)]
    # a union reports a type mismatch for each branch that does not fit: keep the branch that does,
    # or that got furthest into the value (`save: {x: 3}` is a mapping whose value is not text)
    real = [tuple(e["loc"]) for e in errors if not str(e["type"]).endswith("_type")]
    deeper = [tuple(e["loc"]) for e in errors]
    errors = [
        e
        for e in errors
        if not (
            str(e["type"]).endswith("_type")
            and (
                any(r[: len(e["loc"])] == tuple(e["loc"]) for r in real)
                or any(len(d) > len(e["loc"]) and d[: len(e["loc"])] == tuple(e["loc"]) for d in deeper)
            )
        )
    ]
    # ...and when no branch fits, one line says what each would have taken
    expected: dict[tuple[Any, ...], list[str]] = {}
    for e in errors:
        if e["type"] in _TYPE_WORDS:
            words = expected.setdefault(tuple(e["loc"]), [])
            if _TYPE_WORDS[e["type"]] not in words:
                words.append(_TYPE_WORDS[e["type"]])
    for err in errors:
        loc = list(err["loc"])
        message = err["msg"]
        etype = err["type"]
        ctx = err.get("ctx") or {}
        if etype == "extra_forbidden":
            key = loc[-1] if loc else "?"
            parent = tuple(loc[:-1])
            choices = _choices_at(parent, source.data, _root_model(exc.title))
            hint = did_you_mean(str(key), choices)
            if not hint:  # say where it is and what is known there
                hint = f" under {_dotted(list(parent))}" if parent else ""
                hint += f"; known keys: {', '.join(choices)}" if choices else ""
            message = f"unknown key '{key}'{hint}"
        elif etype == "missing":
            message = f"missing required key '{loc[-1]}'"
            loc = loc[:-1]
            if loc:
                message = f"{_dotted(loc)}: {message}"
        elif "key" in ctx:
            loc = [*loc, ctx["key"]]
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        elif message.startswith("Assertion failed, "):
            message = message[len("Assertion failed, ") :]
        elif etype in _TYPE_WORDS and len(expected.get(tuple(loc), [])) > 1:
            message = f"expected {' or '.join(expected[tuple(loc)])}, got {_shown(err.get('input'))}"
        else:
            message = _words(err) or message
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


def _choices_at(parent: tuple[Any, ...], data: Any, root: type[BaseModel] = Workflow) -> list[str]:
    """The keys the mapping at `parent` may hold, found by walking the model along the data."""
    current: Any = root  # a model, or the annotation of the value at the path so far
    node = data
    for part in parent:
        model = _as_model(current)
        if model is None:
            current = _item(current)
        else:
            fields = _fields_by_key(model)
            spec = _task_spec(model, node)
            if part in fields:
                current = fields[part]
            elif spec is not None and part in _fields_by_key(spec):
                current = _fields_by_key(spec)[part]
            else:
                return []
        node = node[part] if isinstance(node, dict | list) and _has(node, part) else None
    model = _as_model(current)
    if model is None:
        return []
    keys = [k for k in _fields_by_key(model) if k != "spec"]
    spec = _task_spec(model, node)
    if spec is not None:
        keys += [k for k in _fields_by_key(spec) if k not in keys]
    return keys


def _root_model(title: str) -> type[BaseModel]:
    """The model a validation error's title names: a workflow, or a dataflow package."""
    from flowstage.model.dataflow import Package

    return Package if title == Package.__name__ else Workflow


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(part, int) and 0 <= part < len(node)


def _fields_by_key(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by the key a file writes (the alias, else the name), to their annotations."""
    return {f.alias or name: f.annotation for name, f in model.model_fields.items()}


def _task_spec(model: Any, node: Any) -> type[BaseModel] | None:
    """For a task's mapping, the spec model of its kind (the kind key it holds)."""
    from flowstage.model.kinds import kind_spec

    if model is not Task or not isinstance(node, dict):
        return None
    return next((found for key in node if (found := kind_spec(str(key))) is not None), None)


def _as_model(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation is (through Annotated, Optional and unions), or None."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _as_model(args[0])
    if origin in (list, tuple, set, dict) or origin is None:
        return None
    return next((m for m in map(_as_model, args) if m is not None), None)


def _item(annotation: Any) -> Any:
    """The annotation of an item (of a list) or a value (of a mapping) the annotation holds."""
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _item(args[0])
    if origin in (list, tuple, set, dict):
        return args[-1] if args else None
    if origin is None:
        return None
    return next((i for i in map(_item, args) if _as_model(i) is not None), None)


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
