"""The registries the application layer chooses from: executors by URL scheme, notifiers by kind.

An executor factory is called as ``factory(url, project=..., workflow=...)`` and returns an
`ExecutorPort`; `local` and `dask` are built in, others come from the ``flowstage.executors``
entry-point group. Notifiers (``flowstage.notifiers``) are looked up by the kind
named in flowstage.yaml. Dataflow engines live in `flowstage.data.engine.ENGINES`, task kinds in
`flowstage.tasks.TASK_KINDS`: the same `Registry`, one per extension point.
"""

from __future__ import annotations

from typing import Any

from flowstage.errors import DefinitionError
from flowstage.model.workflow import Workflow
from flowstage.plugins import Registry
from flowstage.settings import Project

EXECUTORS = Registry(
    "flowstage.executors",
    {"local": "flowstage.app.registry:local_executor", "dask": "flowstage.app.registry:dask_executor"},
    what="executor",
)
_notifiers: Registry | None = None


def _notifier_registry() -> Registry:
    """`NOTIFIERS`, made on first use: a run without alerts never imports the notifiers."""
    global _notifiers
    if _notifiers is None:
        from flowstage.notifiers.config import BUILTIN_NOTIFIERS

        _notifiers = Registry("flowstage.notifiers", BUILTIN_NOTIFIERS, what="notifier")
    return _notifiers


def __getattr__(name: str) -> Any:
    """``NOTIFIERS``: the notifier kinds' registry (made on first use)."""
    if name == "NOTIFIERS":
        return _notifier_registry()
    raise AttributeError(f"module 'flowstage.app.registry' has no attribute {name!r}")


def local_executor(url: str, *, project: Project, workflow: Workflow) -> Any:
    """The local executor: a pool of `max_parallel` slots, with the run's connections and catalog."""
    from flowstage.executors.local import LocalExecutor
    from flowstage.tasks import RunResources

    return LocalExecutor(
        RunResources.for_project(project),
        max_workers=workflow.preferences.max_parallel,
        interpreters=python_interpreters(workflow),
    )


def python_interpreters(workflow: Workflow) -> list[str]:
    """The interpreters the workflow's child-process python tasks ask for ("" for the default)."""
    default = workflow.default_python() or ""
    found: list[str] = []
    for _stage, task in workflow.all_tasks():
        spec = task.spec
        if spec.kind == "python" and not getattr(spec, "in_process", False) and not getattr(spec, "fresh_process", False):
            found.append(getattr(spec, "interpreter", None) or default)
    return list(dict.fromkeys(found))


def dask_executor(url: str, *, project: Project, workflow: Workflow) -> Any:
    """Attempts on the Dask cluster whose scheduler `url` names (``dask://host:port``)."""
    from flowstage.executors.dask import DaskExecutor
    from flowstage.tasks import RunResources

    return DaskExecutor(url, RunResources.for_project(project), max_workers=workflow.preferences.max_parallel)


def notifiers_for(project: Project) -> dict[str, Any]:
    """The project's notifiers by name, from flowstage.yaml's `notifiers:` (DefinitionError when wrong)."""
    from flowstage.notifiers.config import notifiers_from_config

    where = str(project.config_file) if project.config_file is not None else "flowstage.yaml"
    return notifiers_from_config(project.config, where=where, kinds=_notifier_registry(), root=project.root)


def executor_for(project: Project, workflow: Workflow, override: str | None = None) -> Any:
    """The executor the run asks for (`--executor`, FLOWSTAGE_EXECUTOR, flowstage.yaml; default local)."""
    url = override or project.executor or "local"
    scheme = url.split("://", 1)[0] if "://" in url else url
    try:
        factory = EXECUTORS.get(scheme)
    except LookupError as exc:
        raise DefinitionError(f"executor {url!r} is not available ({exc})") from None
    return factory(url, project=project, workflow=workflow)


__all__ = ["EXECUTORS", "dask_executor", "executor_for", "local_executor", "notifiers_for"]
