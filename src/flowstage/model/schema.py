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
    for model in list(defs):
        if model.endswith("Spec") or model == "KindSpec":
            del defs[model]
    return schema
