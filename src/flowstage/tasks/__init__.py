"""Task kinds, one module each: ``run(job, ctx) -> Outcome``.

Built-in kinds are imported on first use; third-party kinds come from the `flowstage.task_kinds`
entry-point group (a class with `spec` and a `run(job, ctx)` method).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from flowstage.connections import Connections
from flowstage.engine.ports import AttemptSpec, Outcome, Reports
from flowstage.plugins import Registry
from flowstage.settings import Project, SparkSettings
from flowstage.tasks._process import ProcessHandle

_BUILTIN = ("python", "shell", "sql", "http", "wait_for", "dataflow", "crawl", "spark")


class RunResources(Struct):
    """What tasks of one run share: the project root, its connections, the store's URL."""

    root: Path
    connections: Connections
    store_url: str = ""
    #: the data catalog (crawlers write it, dataflows read `{catalog: name}` sources from it)
    catalog: Any = None
    #: flowstage.yaml's `spark:` (Spark dataflows and `spark:` tasks)
    spark: SparkSettings = field(default_factory=SparkSettings)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_project(cls, project: Project) -> RunResources:
        """The resources of a run of `project`, built on the side that runs its attempts."""
        return cls(
            root=project.root,
            connections=Connections(project.connections, root=project.root),
            store_url=project.store_url,
            catalog=_LazyCatalog(project.store_url),
            spark=project.spark,
        )

    def close(self) -> None:
        self.connections.close()
        if isinstance(self.catalog, _LazyCatalog):
            self.catalog.close()


class _LazyCatalog:
    """The catalog in the run store, opened on first use (most runs crawl nothing), on its own connections."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._store: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._store is None:
            from flowstage.stores.sql.store import SqlRunStore

            self._store = SqlRunStore(self.store_url)
        return getattr(self._store.catalog, name)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class TaskContext(Struct):
    """What a task kind gets besides its attempt: where to report, its kill handle, the resources."""

    log: Callable[[int, str], None]
    handle: ProcessHandle
    resources: RunResources
    #: told the process group of a child process the attempt starts
    process: Callable[[int], None] = field(default=lambda _pid: None)
    #: told what the attempt waits for (shown as the task's reason); None when it no longer waits
    note: Callable[[str | None], None] = field(default=lambda _reason: None)
    #: told the id of a sub-run the attempt starts
    subrun: Callable[[str], None] = field(default=lambda _run_id: None)

    @classmethod
    def reporting_to(cls, reports: Reports, handle: ProcessHandle, resources: RunResources) -> TaskContext:
        return cls(reports.log, handle, resources, reports.process, reports.note, reports.subrun)


Runner = Callable[[AttemptSpec, TaskContext], Outcome]


def _plugin(cls: Any) -> Runner:
    run: Runner = cls().run
    return run


TASK_KINDS = Registry("flowstage.task_kinds", {kind: f"flowstage.tasks.{kind}:run" for kind in _BUILTIN}, what="task kind")


def runner_for(kind: str) -> Runner:
    """The `run(attempt, ctx)` of task kind `kind` (a plug-in's is its class's `run`)."""
    found = TASK_KINDS.get(kind)
    return _plugin(found) if isinstance(found, type) else found
