"""Task kinds, one module each: ``run(job, log, handle) -> Outcome``.

Built-in kinds are imported on first use; third-party kinds come from the `flowstage.task_kinds`
entry-point group (a class with `spec` and a `run(job, log, handle)` method).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from flowstage.engine.ports import AttemptJob, Outcome
from flowstage.tasks._process import ProcessHandle

_BUILTIN = {"python": "flowstage.tasks.python", "shell": "flowstage.tasks.shell"}

Runner = Callable[[AttemptJob, Callable[[int, str], None], ProcessHandle], Outcome]


def runner_for(kind: str) -> Runner:
    module = _BUILTIN.get(kind)
    if module is not None:
        fn: Runner = importlib.import_module(module).run
        return fn
    from importlib.metadata import entry_points

    for ep in entry_points(group="flowstage.task_kinds"):
        cls: Any = ep.load()
        if getattr(cls.spec, "kind", None) == kind:
            plugin: Runner = cls().run
            return plugin
    raise LookupError(f"no runner for task kind {kind!r}")
