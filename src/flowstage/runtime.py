"""Where the engine, an executor and a store come together: start, resume and cancel runs.

This is the one composition point; the CLI, the API and the Python API call it.
"""

from __future__ import annotations

import getpass
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from flowstage.engine.plan import compile_plan
from flowstage.engine.ports import Event, TaskRun
from flowstage.engine.runner import RunInfo, Runner
from flowstage.errors import DefinitionError, NotFoundError, RunError, RunInterrupted, StoreError, UsageError
from flowstage.logging import NOTICE
from flowstage.model.statuses import RUN_RESUMABLE, RunStatus, TaskStatus
from flowstage.model.workflow import Workflow
from flowstage.settings import Project
from flowstage.stores.base import NewRun, RunStore, StoredRun

Observer = Callable[[Event, TaskRun | None], None]
STALE_HEARTBEAT_SECONDS = 30.0


def open_store(project: Project) -> RunStore:
    """The project's run store (migrated to the current schema)."""
    from flowstage.stores.sql.store import SqlRunStore

    return SqlRunStore(project.store_url)


def new_run_id() -> str:
    """A short, unique, roughly time-ordered id."""
    # 8 random hex digits: a scheduler may start a thousand runs within one second
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + secrets.token_hex(4)


_STARTED: dict[int, float] = {}


def _process_started() -> float:
    """This process's start time (with its pid, what tells a runner apart from a later process)."""
    pid = os.getpid()
    if pid not in _STARTED:  # keyed by pid: a forked child has its own
        import psutil

        _STARTED[pid] = float(psutil.Process(pid).create_time())
    return _STARTED[pid]


MAX_SUBRUN_DEPTH = 8


def _executor(project: Project, workflow: Workflow, override: str | None, depth: int = 0) -> Any:
    url = override or project.executor or "local"
    if url != "local":
        raise DefinitionError(f"executor {url!r} is not available; use 'local'")
    from flowstage.connections import Connections
    from flowstage.executors.local import LocalExecutor
    from flowstage.tasks import RunResources

    resources = RunResources(
        root=project.root,
        connections=Connections(project.connections),
        store_url=project.store_url,
        subrun=_subrun_starter(project, override, depth),
        catalog=_catalog(project),
    )
    return LocalExecutor(resources, max_workers=workflow.preferences.max_parallel)


def _flusher(project: Project, workflow: Workflow, executor: Any) -> Callable[[Callable[[int, str], None]], str | None] | None:
    """Auto flush after a successful run, on the run's own connections."""
    items = workflow.preferences.flush
    if not items:
        return None

    def flush(log: Callable[[int, str], None]) -> str | None:
        from flowstage.data.flush import refresh

        return refresh(items, executor.resources.connections, project.root, log)

    return flush


def _catalog(project: Project) -> Any:
    """The catalog in the project's run store (its own connections: crawls run in task threads)."""
    from flowstage.stores.sql.catalog import SqlCatalog
    from flowstage.stores.sql.store import SqlRunStore

    class _Lazy:
        _catalog: SqlCatalog | None = None

        def __getattr__(self, name: str) -> Any:
            if self._catalog is None:
                self._catalog = SqlCatalog(SqlRunStore(project.store_url))
            return getattr(self._catalog, name)

    return _Lazy()


def _subrun_starter(project: Project, executor: str | None, depth: int) -> Callable[..., StoredRun]:
    """How a `workflow:` task starts its sub-run (or resumes the one its previous attempt left)."""

    def start(ref: str, job: Any, ctx: Any) -> StoredRun:
        if depth >= MAX_SUBRUN_DEPTH:
            raise RunError(f"sub-workflows nest deeper than {MAX_SUBRUN_DEPTH} levels (a workflow calling itself?)")
        store = open_store(project)
        try:
            # the sub-run this copy's earlier attempt left (its id is recorded when it starts)
            mine = [a for a in job.previous if a.get("instance") == job.instance]
            earlier = [a.get("sub_run_id") or a.get("metrics", {}).get("sub_run_id") for a in mine]
            earlier_id = next((i for i in reversed(earlier) if i), None)
            if earlier_id is not None:
                previous = store.get_run(earlier_id)
                if previous is not None and effective_status(previous) in {s.value for s in RUN_RESUMABLE}:
                    ctx.subrun(earlier_id)
                    ctx.handle.on_kill(lambda: store.request_cancel(earlier_id, time.time()))
                    return resume_run(project, earlier_id, store=store, executor=executor, depth=depth + 1)
            found = resolve_workflow(project, ref, store=store)
            workflow = found.workflow

            def created(run_id: str) -> None:
                ctx.subrun(run_id)
                ctx.handle.on_kill(lambda: store.request_cancel(run_id, time.time()))
                ctx.log(NOTICE, f"sub-run {run_id} of {workflow.name} started")

            return start_run(
                project,
                workflow,
                store=store,
                variables=job.task_variables,
                version=found.version,
                source=found.source,
                executor=executor,
                parent_run_id=job.run_id,
                on_created=created,
                depth=depth + 1,
            )
        finally:
            store.close()

    return start


@contextmanager
def _signals_cancel() -> Iterator[None]:
    """SIGTERM (and SIGINT) cancel the run in progress instead of killing the runner."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one cancel: a second signal must not cut the shutdown short
        raise RunInterrupted()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_scope(workflow: Workflow, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The run's variables: the workflow's defaults under the run-time overrides."""
    return {**workflow.variables, **dict(overrides)}


def logical_datetime(workflow: Workflow, at: float) -> datetime:
    """A run's logical time as templates see it: in the trigger's time zone (so `run.date` is its local date)."""
    if workflow.trigger is not None and workflow.trigger.timezone.upper() != "UTC":
        from flowstage.engine.scheduling import zone

        return datetime.fromtimestamp(at, zone(workflow.trigger.timezone))
    return datetime.fromtimestamp(at, UTC)


@dataclass
class BegunRun:
    """A run recorded in the store (status running, tasks pending), ready to be driven to its end."""

    id: str
    runner: Runner
    store: RunStore


def begin_run(
    project: Project,
    workflow: Workflow,
    *,
    store: RunStore,
    variables: Mapping[str, Any] | None = None,
    version: int | None = None,
    source: str | None = None,
    executor: str | None = None,
    observer: Observer | None = None,
    parent_run_id: str | None = None,
    depth: int = 0,
    logical_time: datetime | float | None = None,
    run_id: str | None = None,
) -> BegunRun:
    """Record a new run of `workflow`; `drive` then runs it. `logical_time` defaults to now."""
    overrides = dict(variables or {})
    plan = compile_plan(workflow)
    run_id = run_id or new_run_id()
    now = time.time()
    if logical_time is None:
        logical_at = now
    elif isinstance(logical_time, datetime):
        logical_at = logical_time.timestamp()
    else:
        logical_at = float(logical_time)
    logical = logical_datetime(workflow, logical_at)
    scope = run_scope(workflow, overrides)
    tasks = [TaskRun(name=n.name, stage=plan.stage_names[n.stage]) for n in plan.nodes.values()]
    exe = _executor(project, workflow, executor, depth)
    store.create_run(
        NewRun(
            id=run_id,
            workflow=workflow.name,
            version=version,
            definition=workflow.to_dict(),
            variables=scope,
            overrides=overrides,
            root=str(project.root),
            logical_time=logical_at,
            started_at=now,
            runner_pid=os.getpid(),
            runner_host=socket.gethostname(),
            runner_started=_process_started(),
            tasks=tasks,
            source=source,
            parent_run_id=parent_run_id,
        )
    )
    info = RunInfo(run_id, workflow.name, version, logical, str(project.root), socket.gethostname())
    runner = Runner(
        plan=plan,
        info=info,
        store=store,
        executor=exe,
        variables=scope,
        observer=observer,
        on_success=_flusher(project, workflow, exe),
    )
    return BegunRun(run_id, runner, store)


def drive(run: BegunRun) -> StoredRun:
    """Run a begun run to its end and return the stored run."""
    with _signals_cancel():
        run.runner.run()
    return get_run(run.store, run.id)


def start_run(
    project: Project,
    workflow: Workflow,
    *,
    store: RunStore,
    variables: Mapping[str, Any] | None = None,
    version: int | None = None,
    source: str | None = None,
    executor: str | None = None,
    observer: Observer | None = None,
    on_created: Callable[[str], None] | None = None,
    parent_run_id: str | None = None,
    depth: int = 0,
    logical_time: datetime | float | None = None,
    run_id: str | None = None,
) -> StoredRun:
    """Run `workflow` to its end and return the stored run."""
    begun = begin_run(
        project,
        workflow,
        store=store,
        variables=variables,
        version=version,
        source=source,
        executor=executor,
        observer=observer,
        parent_run_id=parent_run_id,
        depth=depth,
        logical_time=logical_time,
        run_id=run_id,
    )
    if on_created is not None:
        on_created(begun.id)
    return drive(begun)


class _RunnerRecord(Protocol):
    runner_pid: int | None
    runner_host: str | None
    runner_started: float | None
    heartbeat_at: float | None


def kill_orphans(run: StoredRun) -> list[str]:
    """Kill what attempts of a dead runner left running on this host (their process groups)."""
    from flowstage.tasks._process import kill_group

    host = socket.gethostname()
    killed = []
    for task in run.tasks:
        for attempt in task.attempts:
            pid = int(attempt.get("pid") or 0)
            mine = attempt.get("status") == "running" and pid > 0 and attempt.get("host") == host
            if mine and kill_group(pid, float(attempt.get("started_at") or 0)):
                killed.append(f"{task.name}#{attempt.get('number')}")
    return killed


def runner_alive(run: _RunnerRecord, now: float | None = None) -> bool:
    """Whether the process that runs `run` still exists (or, elsewhere, still beats)."""
    now = time.time() if now is None else now
    if run.runner_host == socket.gethostname() and run.runner_pid:
        import psutil

        try:
            proc = psutil.Process(run.runner_pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            return run.runner_started is None or abs(proc.create_time() - run.runner_started) < 1.0
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            pass
    return run.heartbeat_at is not None and now - run.heartbeat_at <= STALE_HEARTBEAT_SECONDS


def effective_status(run: StoredRun) -> str:
    """The status to show: a running run whose runner is gone is `interrupted`."""
    if run.status == RunStatus.RUNNING.value and not runner_alive(run):
        return RunStatus.INTERRUPTED.value
    return run.status


def get_run(store: RunStore, run_id: str) -> StoredRun:
    run = store.get_run(run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r}")
    return run


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def resume_run(
    project: Project,
    run_id: str,
    *,
    store: RunStore,
    executor: str | None = None,
    observer: Observer | None = None,
    depth: int = 0,
    on_claimed: Callable[[str], None] | None = None,
) -> StoredRun:
    """Run again what did not succeed in `run_id`; succeeded tasks are never run again."""
    run = get_run(store, run_id)
    shown = effective_status(run)
    if shown not in {s.value for s in RUN_RESUMABLE}:
        if shown == RunStatus.RUNNING.value:
            raise UsageError(f"run {run_id} is still running (pid {run.runner_pid} on {run.runner_host})")
        raise UsageError(f"run {run_id} {shown}; only a failed, cancelled, timed-out or interrupted run can be resumed")
    workflow = Workflow.model_validate(run.definition)
    now = time.time()
    claimed = store.claim(
        run_id,
        expect_status=run.status,
        expect_heartbeat=run.heartbeat_at,
        pid=os.getpid(),
        host=socket.gethostname(),
        started=_process_started(),
        at=now,
        by=who(),
    )
    if not claimed:
        raise RunError(f"run {run_id} was taken over by another process")
    plan = compile_plan(workflow)
    prior = {t.name: t for t in run.tasks}
    kill_orphans(run)
    if on_claimed is not None:
        on_claimed(run.id)
    info = RunInfo(
        run.id, run.workflow, run.version, logical_datetime(workflow, run.logical_time), run.root, socket.gethostname()
    )
    exe = _executor(project, workflow, executor, depth)
    runner = Runner(
        plan=plan,
        info=info,
        store=store,
        executor=exe,
        variables=run.variables,
        prior=prior,
        observer=observer,
        on_success=_flusher(project, workflow, exe),
    )
    return drive(BegunRun(run_id, runner, store))


def cancel_run(store: RunStore, run_id: str, *, wait: float = 15.0) -> StoredRun:
    """Ask the runner of `run_id` to stop; end the run here if its runner is gone."""
    run = get_run(store, run_id)
    shown = effective_status(run)
    if shown == RunStatus.INTERRUPTED.value:
        kill_orphans(run)
        store.finish_orphan(run_id, status=RunStatus.CANCELLED.value, at=time.time(), reason=f"run cancelled by {who()}")
        return get_run(store, run_id)
    if shown != RunStatus.RUNNING.value:
        raise UsageError(f"run {run_id} already {shown}; nothing to cancel")
    store.request_cancel(run_id, time.time())
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(0.1)
        run = get_run(store, run_id)
        if run.status != RunStatus.RUNNING.value:
            return run
        if not runner_alive(run):
            store.finish_orphan(run_id, status=RunStatus.CANCELLED.value, at=time.time(), reason=f"run cancelled by {who()}")
            return get_run(store, run_id)
    raise RunError(f"run {run_id}: cancel requested, but the runner has not stopped within {wait:g}s")


def parse_var(text: str) -> tuple[str, Any]:
    """``k=v`` from ``--var``: v is a YAML 1.2 scalar (numbers, booleans, null), a flow list or
    mapping (``[EU, US]``, ``{a: 1}``), else text — anything that does not parse stays text."""
    if "=" not in text:
        raise UsageError(f"--var {text!r}: expected NAME=VALUE")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key.isidentifier():
        raise UsageError(f"--var {text!r}: {key!r} is not a variable name")
    from flowstage.model.yamlsource import parse, resolve_scalar

    stripped = value.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return key, parse(stripped, "--var").data
        except DefinitionError:
            return key, value  # `{{ 7*7 }}` and the like: text, never a template
    return key, resolve_scalar(value)


@dataclass(frozen=True)
class FoundWorkflow:
    """A workflow looked up by name or file, and the deployed version it is (None for a file)."""

    workflow: Workflow
    source: str
    version: int | None = None


def _looks_like_path(ref: str) -> bool:
    return Path(ref).suffix in (".yaml", ".yml", ".json") or os.sep in ref or Path(ref).is_file()


def _deployed(project: Project, name: str, store: RunStore | None) -> FoundWorkflow | None:
    """The current deployed version of `name`, if it was ever deployed."""
    from flowstage.stores.sql.deployments import deployments_for

    if store is None:
        url = project.store_url
        if url.startswith("sqlite"):
            from flowstage.stores.sql.store import _sqlite_file

            path = _sqlite_file(url)
            if path == ":memory:" or not Path(path).exists():
                return None  # no store yet, so nothing was deployed
        opened = open_store(project)
        try:
            return _deployed(project, name, opened)
        finally:
            opened.close()
    deployments = deployments_for(store)
    if deployments is None:
        return None
    found = deployments.workflow(name)
    if found is None:
        return None
    workflow = Workflow.model_validate(found.definition)
    return FoundWorkflow(workflow, f"{name} v{found.current_version} (deployed)", found.current_version)


def resolve_workflow(project: Project, ref: str, *, store: RunStore | None = None) -> FoundWorkflow:
    """A workflow by file path; by name, its current deployed version, else the file in `workflows/`.

    `store` is the run store to look deployments up in (opened from the project when omitted).
    """
    if not _looks_like_path(ref):
        deployed = _deployed(project, ref, store)
        if deployed is not None:
            return deployed
    workflow, source = _find_file(project, ref)
    return FoundWorkflow(workflow, source, None)


def find_workflow(project: Project, ref: str) -> tuple[Workflow, str]:
    """A workflow by file path, or by name: the current deployed version, else from `workflows/`."""
    found = resolve_workflow(project, ref)
    return found.workflow, found.source


def _find_file(project: Project, ref: str) -> tuple[Workflow, str]:
    """A workflow by file path, or by name from the project's `workflows/` folder."""
    from flowstage.model.loader import load

    path = Path(ref)
    if _looks_like_path(ref):
        if not path.is_absolute() and not path.exists():
            alt = project.root / path
            path = alt if alt.exists() else path
        return load(path), str(path)
    folder = project.root / "workflows"
    for suffix in (".yaml", ".yml", ".json"):
        candidate = folder / f"{ref}{suffix}"
        if candidate.is_file():
            wf = load(candidate)
            if wf.name == ref:
                return wf, str(candidate)
    if folder.is_dir():
        import re

        pattern = re.compile(rf"^name:\s*['\"]?{re.escape(ref)}['\"]?\s*$", re.MULTILINE)
        for candidate in sorted(folder.iterdir()):
            if candidate.suffix in (".yaml", ".yml", ".json") and pattern.search(candidate.read_text(errors="replace")):
                wf = load(candidate)
                if wf.name == ref:
                    return wf, str(candidate)
    raise NotFoundError(f"no workflow named {ref!r} (looked for a file, and in {folder})")


__all__ = [
    "BegunRun",
    "FoundWorkflow",
    "StoreError",
    "TaskStatus",
    "begin_run",
    "cancel_run",
    "drive",
    "effective_status",
    "find_workflow",
    "open_store",
    "parse_var",
    "resolve_workflow",
    "resume_run",
    "start_run",
]
