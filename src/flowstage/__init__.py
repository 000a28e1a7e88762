"""flowstage: ETL workflows of stages and tasks, with conditions, variables and resumable runs.

The public Python API::

    from flowstage import Workflow, Stage, Task, load, run

    wf = load("workflows/daily.yaml")
    record = run(wf, variables={"region": "EU"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstage.errors import DefinitionError, FlowstageError
from flowstage.model.loader import load
from flowstage.model.workflow import Stage, Task, Workflow

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["DefinitionError", "FlowstageError", "Stage", "Task", "Workflow", "load", "run"]
__version__ = "0.1.0"


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
