"""Pure definitions: workflows, stages, tasks, conditions, statuses. No I/O beyond reading files.

The names below are imported on first use, so that a module of the model (statuses, conditions)
can be imported without building every pydantic model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowstage.model.conditions import Condition, When
    from flowstage.model.statuses import RunStatus, TaskStatus
    from flowstage.model.workflow import Alert, Preferences, Stage, Task, Trigger, Workflow

_LAZY = {
    "Condition": "flowstage.model.conditions",
    "When": "flowstage.model.conditions",
    "RunStatus": "flowstage.model.statuses",
    "TaskStatus": "flowstage.model.statuses",
    **dict.fromkeys(("Alert", "Preferences", "Stage", "Task", "Trigger", "Workflow"), "flowstage.model.workflow"),
}
__all__ = ["Alert", "Condition", "Preferences", "RunStatus", "Stage", "Task", "TaskStatus", "Trigger", "When", "Workflow"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowstage.model' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
