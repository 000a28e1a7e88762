"""Building an attempt: the template context, rendered specs, fan-out items, saved values.

Pure functions of a task, the run's variables and the attempt's place (number, copy, item):
the runner calls them and turns their answers into events.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from msgspec import Struct
from pydantic import BaseModel, ValidationError

from flowstage.errors import RunError, VariableError
from flowstage.model import templates
from flowstage.model.kinds import KindSpec
from flowstage.model.workflow import Task

_PLAIN = (str, int, float, bool)
_SUMMED = ("rows_read", "rows_written", "bytes_read", "bytes_written", "cpu_seconds")


class RunInfo(Struct):
    """What templates know of the run (`run.*`)."""

    id: str
    workflow: str
    version: int | None
    logical_time: datetime
    root: str
    host: str = ""

    def context(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workflow": self.workflow,
            "version": self.version,
            "date": self.logical_time.date().isoformat(),
            "logical_time": self.logical_time.isoformat(),
        }


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data (unknown objects become their text)."""
    if value is None or type(value) in _PLAIN:
        return value  # what JSON gives back unchanged: no round trip (most results are None or empty)
    if not value and type(value) in (dict, list):
        return type(value)()
    try:
        return json.loads(json.dumps(value, default=str))
    except ValueError as exc:  # a number past 4,300 digits inside it: no text can hold it
        raise RunError(f"the result cannot be stored: {exc.args[0].split(';')[0]}") from None
    except TypeError:
        return str(value)


def aggregate(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of a task's copies: counts summed, memory the peak."""
    out: dict[str, Any] = {}
    for m in metrics:
        for key in _SUMMED:
            if isinstance(m.get(key), int | float):
                out[key] = out.get(key, 0) + m[key]
        if isinstance(m.get("memory_mb"), int | float):
            out["memory_mb"] = max(out.get("memory_mb", 0), m["memory_mb"])
    return out


def _field(spec: KindSpec, name: str) -> Any:
    value = getattr(spec, name)
    return value.model_dump(by_alias=True) if isinstance(value, BaseModel) else value


def needs_render(task: Task) -> bool:
    """Whether an attempt of `task` must render templates (most tasks have none)."""
    return (
        task.if_ is not None
        or templates.contains_template(task.with_)
        or templates.contains_template(task.variables)
        or any(templates.contains_template(_field(task.spec, f)) for f in task.spec.template_fields)
        or bool(task.variables)
    )


def revalidate(spec: KindSpec, data: dict[str, Any]) -> KindSpec:
    """The spec with rendered values, validated again (a rendered URL must still be a URL)."""
    try:
        return type(spec).model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise VariableError(f"after rendering templates, {where}: {first['msg']}") from None


def context(
    info: RunInfo,
    task: Task,
    stage: str,
    variables: dict[str, Any],
    attempt: int,
    fan: tuple[int | None, int, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(template context, resolved variables, the task's own rendered variables).

    `fan` is (copy, copies, item) for a fanned-out task.
    """
    task_ctx: dict[str, Any] = {"name": task.name, "attempt": attempt, "stage": stage}
    if fan is not None:
        copy, copies, item = fan
        task_ctx.update({"instance": copy, "instances": copies, "item": item})
    scope = dict(variables)
    ctx = {"var": scope, "run": info.context(), "task": task_ctx}
    own: dict[str, Any] = {}
    if task.variables:
        own = templates.render(task.variables, ctx)
        scope.update(own)
    return ctx, scope, own


def render(task: Task, ctx: dict[str, Any]) -> tuple[dict[str, Any], KindSpec]:
    """The attempt's keyword arguments and spec, templates rendered (shell values quoted, URL values encoded)."""
    kwargs = templates.render(task.with_, ctx)
    spec = task.spec
    if spec.template_fields:
        data = spec.model_dump(by_alias=True)
        for name in spec.template_fields:
            if spec.kind == "http":  # a URL's values are percent-encoded for the part of the URL they land in
                url = templates.render_url(data[name].pop("url"), ctx)
                data[name] = {**templates.render(data[name], ctx), "url": url}
            else:
                data[name] = templates.render(data[name], ctx, shell=(name == spec.kind == "shell"))
        spec = revalidate(spec, data)
    return kwargs, spec


def fan_items(task: Task, ctx: dict[str, Any] | None) -> list[Any]:
    """The copies of a task: its `for_each` items, `instances` indexes, or one plain copy."""
    if task.for_each is not None:
        rendered = templates.render(task.for_each, ctx or {})
        if not isinstance(rendered, list | tuple):
            raise RunError(f"for_each: expected a list, got {type(rendered).__name__} {rendered!r}"[:300])
        return list(rendered)
    if task.instances is not None:
        return list(range(task.instances))
    return [None]


#: the most a saved value may take, serialized as JSON (larger fails the task)
SAVED_VALUE_LIMIT = 1024 * 1024


def check_saved_size(value: Any, what: str = "save:") -> None:
    """Raise RunError when JSON data `value` is larger than a saved value may be."""
    if type(value) is int and value.bit_length() > 14_300:  # past what JSON (and Python) turn into text
        raise RunError(f"{what} the result is a number of more than 4,300 digits, which cannot be saved: save it as text")
    if value is None or type(value) in (int, float, bool):
        return
    try:
        size = len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else len(json.dumps(value).encode())
    except ValueError as exc:  # a number past 4,300 digits inside it
        raise RunError(f"{what} the result cannot be saved: {exc.args[0].split(';')[0]}") from None
    if size > SAVED_VALUE_LIMIT:
        raise RunError(
            f"{what} the result is {size:,} bytes as JSON, more than a saved value may hold ({SAVED_VALUE_LIMIT:,} bytes):"
            " keep large data in a table or a file and save its name"
        )


def saved_values(task: Task, value: Any, *, fan: bool) -> dict[str, Any]:
    """What `save:` keeps of a task's result (at most `SAVED_VALUE_LIMIT` bytes as JSON)."""
    save = task.save
    if save is None:
        return {}
    value = jsonable(value)
    check_saved_size(value)
    if isinstance(save, str):
        return {save: value}
    if fan:
        raise RunError("save: of a fanned-out task keeps the list of results: use `save: name`")
    if not isinstance(value, dict):
        raise RunError(f"save: needs a mapping result to pick {sorted(save.values())}, got {type(value).__name__}")
    missing = [k for k in save.values() if k not in value]
    if missing:
        raise RunError(f"save: the result has no key {missing[0]!r} (keys: {', '.join(map(str, value))})")
    return {var: value[key] for var, key in save.items()}


__all__ = [
    "SAVED_VALUE_LIMIT",
    "RunInfo",
    "aggregate",
    "check_saved_size",
    "context",
    "fan_items",
    "jsonable",
    "needs_render",
    "render",
    "revalidate",
    "saved_values",
]
