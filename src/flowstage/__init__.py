"""flowstage: ETL workflows of stages and tasks, with conditions, variables and resumable runs.

The public Python API (docs/python-api.md)::

    from flowstage import Workflow, Stage, Task, load, run, save

    wf = Workflow(name="hello", tasks=[Task(name="hi", shell="echo hi")])
    record = run(wf, variables={"region": "EU"})      # the run record, as `flowstage show --json`
    wf = load("workflows/daily.yaml")
    save(wf.replace(description="nightly"), "workflows/daily.yaml")   # the file's comments kept
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstage.errors import DefinitionError, FlowstageError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from flowstage.model.loader import load
    from flowstage.model.roundtrip import save
    from flowstage.model.workflow import Stage, Task, Workflow

#: names imported on first use: `import flowstage` (and so every command) starts without the model
_LAZY = {
    "Stage": "flowstage.model.workflow",
    "Task": "flowstage.model.workflow",
    "Workflow": "flowstage.model.workflow",
    "load": "flowstage.model.loader",
    "save": "flowstage.model.roundtrip",
}

__all__ = ["DefinitionError", "FlowstageError", "Stage", "Task", "Workflow", "load", "run", "save"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowstage' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def run(
    workflow: Workflow,
    variables: Mapping[str, Any] | None = None,
    *,
    project: str | Path | None = None,
) -> dict[str, Any]:
    """Run `workflow` with the project's store (the current folder's by default).

    Returns the run record (SPEC §5.1): ``{"id", "workflow", "status", "tasks": [...], ...}``.
    """
    from pathlib import Path as _Path

    from flowstage.app.runs import open_store, start_run
    from flowstage.model.loader import check_graph
    from flowstage.settings import load_project
    from flowstage.views.records import run_record

    problems = check_graph(workflow)
    if problems:
        raise DefinitionError(problems)
    proj = load_project(root=_Path(project)) if project is not None else load_project()
    store = open_store(proj)
    try:
        stored = start_run(proj, workflow, store=store, variables=variables)
        return run_record(stored)
    finally:
        store.close()
