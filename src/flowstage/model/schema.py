"""The JSON Schema of workflow files, generated from the model (for editors)."""

from __future__ import annotations

import copy
from typing import Any

from flowstage.model.kinds import all_kinds
from flowstage.model.workflow import Task, Workflow


def workflow_schema() -> dict[str, Any]:
    """A draft 2020-12 schema: a task is one of the kinds, each with its own keys."""
    schema = Workflow.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "flowstage workflow"
    defs = schema.setdefault("$defs", {})
    task = Task.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    for name, sub in task.pop("$defs", {}).items():
        defs.setdefault(name, sub)
    common = {k: v for k, v in task["properties"].items() if k != "spec"}
    conditions = {"type": "string", "enum": ["success", "failure", "completion", "skipped"]}
    common["after"] = {
        "description": "predecessors: a name, a list of names (each must succeed), or {name: condition}",
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": conditions},
            {"type": "null"},
        ],
    }
    variants = []
    for kind, spec in sorted(all_kinds().items()):
        spec_schema = spec.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
        for name, sub in spec_schema.pop("$defs", {}).items():
            defs.setdefault(name, sub)
        props = copy.deepcopy(common)
        props.update(spec_schema.get("properties", {}))
        variants.append(
            {
                "title": f"{kind} task",
                "type": "object",
                "properties": props,
                "required": ["name", kind],
                "additionalProperties": False,
            }
        )
    defs["Task"] = {"title": "Task", "oneOf": variants}
    _durations_accept_numbers(schema)
    for model in list(defs):
        if model.endswith("Spec") or model == "KindSpec":
            del defs[model]
    return schema


def _durations_accept_numbers(node: Any) -> None:
    """Durations are text (`30s`, `1h30m`) or a number of seconds."""
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("examples") == ["30s", "5m", "1h30m"]:
            node.pop("type")
            node["anyOf"] = [{"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"}, {"type": "number", "minimum": 0}]
        for value in node.values():
            _durations_accept_numbers(value)
    elif isinstance(node, list):
        for value in node:
            _durations_accept_numbers(value)
