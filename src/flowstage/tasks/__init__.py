"""Task kinds, one module each: ``run(job, ctx) -> Outcome``.

Built-in kinds are imported on first use; third-party kinds come from the `flowstage.task_kinds`
entry-point group (a class with `spec` and a `run(job, ctx)` method).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowstage.connections import Connections
from flowstage.engine.ports import AttemptSpec, Outcome, Reports
from flowstage.tasks._process import ProcessHandle

_BUILTIN = {
    kind: f"flowstage.tasks.{kind}" for kind in ("python", "shell", "sql", "http", "wait_for", "workflow", "dataflow", "crawl")
}


@dataclass
class RunResources:
    """What tasks of one run share: the project root, its connections, the store's URL."""

    root: Path
    connections: Connections
    store_url: str = ""
    #: starts (or resumes) a sub-run: (workflow ref, job, ctx) -> the ended child run
    subrun: Callable[[str, AttemptSpec, TaskContext], Any] | None = None
    #: the data catalog (crawlers write it, dataflows read `{catalog: name}` sources from it)
    catalog: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.connections.close()


@dataclass
class TaskContext:
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
