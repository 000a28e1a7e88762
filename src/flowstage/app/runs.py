"""Runs: start, resume and cancel; the one place an engine, an executor and a store come together.

Every function takes the project it works on and the store to record in: nothing here reads or
changes process-wide state (no working directory, no exit), so one process — a scheduler, a
server — can host many runs of several projects. `detached` starts the same runs in runner
processes of their own.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from msgspec import Struct

from flowstage.app.code import PinnedCode, pin
from flowstage.app.liveness import effective_status, kill_orphans, process_started, runner_alive
from flowstage.app.registry import executor_for
from flowstage.app.stores import open_store
from flowstage.app.subruns import SubRuns
from flowstage.engine import collector
from flowstage.engine.hooks import Hooks
from flowstage.engine.plan import Plan, compile_plan
from flowstage.engine.ports import Batch, Event, TaskRun
from flowstage.engine.projection import RUN_CODE
from flowstage.engine.runner import RunInfo, Runner
from flowstage.errors import NotFoundError, RunError, RunInterrupted, UsageError
from flowstage.model.statuses import RUN_RESUMABLE, RunStatus
from flowstage.model.workflow import Workflow
from flowstage.redact import mask_strings, restore_masked
from flowstage.settings import Project
from flowstage.stores.base import NewRun, RunStore, StoredRun

Observer = Callable[[Event, TaskRun | None], None]


def new_run_id() -> str:
    """A short, unique, roughly time-ordered id."""
    # 8 random hex digits: a scheduler may start a thousand runs within one second
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + secrets.token_hex(4)


def who() -> str:
    import getpass  # with termios: not needed before a run starts

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{os.uname().nodename}"


def run_scope(workflow: Workflow, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The run's variables: the workflow's defaults under the run-time overrides."""
    return {**workflow.variables, **dict(overrides)}


def logical_datetime(workflow: Workflow, at: float) -> datetime:
    """A run's logical time as templates see it: in the trigger's time zone (so `run.date` is its local date)."""
    if workflow.trigger is not None and workflow.trigger.timezone.upper() != "UTC":
        from flowstage.engine.scheduling import zone

        return datetime.fromtimestamp(at, zone(workflow.trigger.timezone))
    return datetime.fromtimestamp(at, UTC)


def get_run(store: RunStore, run_id: str) -> StoredRun:
    run = store.get_run(run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r}")
    return run


@contextmanager
def _signals_cancel() -> Iterator[None]:
    """SIGTERM cancels the run in progress instead of killing the runner (main thread only)."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one cancel: a second signal must not cut the shutdown short
        raise RunInterrupted()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: the host of this run handles its own signals
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _flusher(project: Project, workflow: Workflow, executor: Any) -> Callable[[Callable[[int, str], None]], str | None] | None:
    """Auto flush after a successful run, on the run's own connections."""
    items = workflow.preferences.flush
    if not items:
        return None

    def flush(log: Callable[[int, str], None]) -> str | None:
        from flowstage.data.flush import refresh

        return refresh(items, executor.resources.connections, project.root, log)

    return flush


def _version_files(store: RunStore, name: str, version: int | None) -> dict[str, str]:
    if version is None:
        return {}
    found = store.deployments.version(name, version)
    return dict(found.files) if found is not None else {}


def _original_definition(project: Project, store: RunStore, run: StoredRun) -> dict[str, Any]:
    """The definition a run was started from, its credentials unmasked: its deployed version, or its file."""
    try:
        if run.version is not None:
            found = store.deployments.version(run.workflow, run.version)
            return dict(found.definition) if found is not None else {}
        if run.source and (project.root / run.source).is_file():
            from flowstage.app.definitions import load_file

            return load_file(project, project.root / run.source)[1]
    except Exception:
        return {}  # a source that changed or went away: what was masked stays masked
    return {}


def pinned(project: Project, workflow: Workflow, store: RunStore, version: int | None) -> PinnedCode:
    """`workflow` reading the files kept with its deployed `version`."""
    return pin(workflow, version, _version_files(store, workflow.name, version), project.state_dir)


def _runner(
    project: Project,
    workflow: Workflow,
    *,
    info: RunInfo,
    store: RunStore,
    variables: Mapping[str, Any],
    executor: str | None,
    depth: int,
    hooks: Hooks | None,
    observer: Observer | None,
    prior: Mapping[str, TaskRun] | None = None,
    plan: Plan | None = None,
    started_at: float | None = None,
) -> Runner:
    exe = executor_for(project, workflow, executor)
    if workflow.alerts:  # the notifiers and their rules are imported only for a workflow that has alerts
        from flowstage.app.alerting import with_alerts

        hooks = with_alerts(project, workflow, hooks, run_id=info.id, store=store, started_at=started_at)
    return Runner(
        plan=plan or compile_plan(workflow),
        info=info,
        store=store,
        executor=exe,
        variables=variables,
        prior=prior,
        hooks=hooks,
        observer=observer,
        on_success=_flusher(project, workflow, exe),
        subruns=SubRuns(project, executor=executor, depth=depth, start=start_run, resume=resume_run),
    )


class BegunRun(Struct):
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
    hooks: Hooks | None = None,
    parent_run_id: str | None = None,
    depth: int = 0,
    logical_time: datetime | float | None = None,
    run_id: str | None = None,
    definition: Mapping[str, Any] | None = None,
) -> BegunRun:
    """Record a new run of `workflow`; `drive` then runs it. `logical_time` defaults to now.

    A deployed `version` runs with the files kept with it (see `flowstage.app.code`).
    `definition` is `workflow.to_dict()` when the caller has it already (a kept definition).
    """
    overrides = dict(variables or {})
    code = pinned(project, workflow, store, version)
    if code.workflow is not workflow or definition is None:
        definition = code.workflow.to_dict()
    workflow = code.workflow
    plan = compile_plan(workflow)
    run_id = run_id or new_run_id()
    now = time.time()
    if logical_time is None:
        logical_at = now
    elif isinstance(logical_time, datetime):
        logical_at = logical_time.timestamp()
    else:
        logical_at = float(logical_time)
    scope = run_scope(workflow, overrides)
    with collector.paused():  # records that live as long as the run: no collection walks them meanwhile
        tasks = [TaskRun(name=n.name, stage=plan.stage_names[n.stage]) for n in plan.nodes.values()]
    host = os.uname().nodename
    info = RunInfo(run_id, workflow.name, version, logical_datetime(workflow, logical_at), str(project.root), host)
    runner = _runner(
        project,
        workflow,
        info=info,
        store=store,
        variables=scope,
        executor=executor,
        depth=depth,
        hooks=hooks,
        observer=observer,
        plan=plan,
        started_at=now,
    )
    store.create_run(
        NewRun(
            id=run_id,
            workflow=workflow.name,
            version=version,
            definition=mask_strings(dict(definition)),  # credentials written in a task's URL stay out of the store
            variables=scope,
            overrides=overrides,
            root=str(project.root),
            logical_time=logical_at,
            started_at=now,
            runner_pid=os.getpid(),
            runner_host=host,
            runner_started=process_started(),
            tasks=tasks,
            source=source,
            parent_run_id=parent_run_id,
        )
    )
    if code.files:
        store.record(Batch(run_id=run_id, events=[Event(run_id, now, RUN_CODE, None, None, code.record())]))
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
    on_created: Callable[[str], None] | None = None,
    **options: Any,
) -> StoredRun:
    """Run `workflow` to its end and return the stored run (options as `begin_run`)."""
    begun = begin_run(project, workflow, store=store, **options)
    if on_created is not None:
        on_created(begun.id)
    return drive(begun)


def resume_run(
    project: Project,
    run_id: str,
    *,
    store: RunStore,
    executor: str | None = None,
    observer: Observer | None = None,
    hooks: Hooks | None = None,
    depth: int = 0,
    on_claimed: Callable[[str], None] | None = None,
    variables: Mapping[str, Any] | None = None,
) -> StoredRun:
    """Run again what did not succeed in `run_id`; succeeded tasks are never run again.

    `variables`: the values of the run's variables that hold a password written in a URL, which
    the store keeps masked (``user:***@``): given again, each must be the URL it masks. One the
    workflow's own default explains (its file holds the password) needs no giving.
    """
    run = get_run(store, run_id)
    shown = effective_status(run)
    if shown not in {s.value for s in RUN_RESUMABLE}:
        if shown == RunStatus.RUNNING.value:
            raise UsageError(f"run {run_id} is still running (pid {run.runner_pid} on {run.runner_host})")
        raise UsageError(f"run {run_id} {shown}; only a failed, cancelled, timed-out or interrupted run can be resumed")
    from flowstage.app.definitions import validate_definition

    definition = restore_masked(run.definition, lambda: _original_definition(project, store, run))
    workflow, _ = validate_definition(project, definition)
    credentials = _credentials(run, workflow.variables, variables or {})
    if run.version is not None:
        pinned(project, workflow, store, run.version)  # its files, written again if the folder was removed
    claimed = store.claim(
        run_id,
        expect_status=run.status,
        expect_heartbeat=run.heartbeat_at,
        pid=os.getpid(),
        host=os.uname().nodename,
        started=process_started(),
        at=time.time(),
        by=who(),
    )
    if not claimed:  # another process claimed it between our read and our claim
        now = store.get_run(run_id)
        if now is not None and now.runner_pid and effective_status(now) == RunStatus.RUNNING.value:
            raise UsageError(f"run {run_id} is being resumed by pid {now.runner_pid} on {now.runner_host}")
        raise UsageError(f"run {run_id} was claimed by another process meanwhile; see flowstage show {run_id}")
    kill_orphans(run)
    if on_claimed is not None:
        on_claimed(run.id)
    scope = {**run.variables, **credentials}
    info = RunInfo(run.id, run.workflow, run.version, logical_datetime(workflow, run.logical_time), run.root, os.uname().nodename)
    runner = _runner(
        project,
        workflow,
        info=info,
        store=store,
        variables=scope,
        executor=executor,
        depth=depth,
        hooks=hooks,
        observer=observer,
        prior={t.name: t for t in run.tasks},
        started_at=run.started_at,
    )
    return drive(BegunRun(run_id, runner, store))


def _credentials(run: StoredRun, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The run's variables the store keeps masked, with their passwords (`resume_run`): from
    `given`, else from the workflow's `defaults` when one masks to the same; a `UsageError` for a
    given value that is not the one the run started with, or a password that nothing gives."""
    from flowstage.app.definitions import has_masked

    for name, value in given.items():
        if name not in run.variables or mask_strings(value) != run.variables[name]:
            was = f" ({run.variables[name]})" if name in run.variables else ""
            raise UsageError(f"--var {name}: not the value the run started with{was}; resume keeps the run's variables")
    found = dict(given)
    for name, value in run.variables.items():
        if name not in found and has_masked(value) and name in defaults and mask_strings(defaults[name]) == value:
            found[name] = defaults[name]
    missing = sorted(k for k, v in run.variables.items() if k not in found and has_masked(v))
    if missing:
        again = " ".join(f"--var {k}={run.variables[k]}" for k in missing).replace("***", "PASSWORD")
        raise UsageError(
            f"run {run.id}: variable {', '.join(missing)} holds a password written in a URL, which the store never "
            f"keeps: give it again to resume (flowstage resume {run.id} {again})"
        )
    return found


def request_cancel(store: RunStore, run_id: str) -> StoredRun:
    """Ask the runner of `run_id` to stop and answer the run as recorded now, without waiting for it.

    A run whose runner is gone is ended here (cancelled); a live runner ends the run itself
    within about a heartbeat (`cancel_run` waits for that).
    """
    run = get_run(store, run_id)
    shown = effective_status(run)
    if shown == RunStatus.INTERRUPTED.value:
        return _cancel_orphan(store, run)
    if shown != RunStatus.RUNNING.value:
        raise UsageError(f"run {run_id} already {shown}; nothing to cancel")
    if not store.request_cancel(run_id, time.time()):  # it ended meanwhile
        raise UsageError(f"run {run_id} already {effective_status(get_run(store, run_id))}; nothing to cancel")
    return get_run(store, run_id)


def cancel_run(store: RunStore, run_id: str, *, wait: float = 15.0) -> StoredRun:
    """Ask the runner of `run_id` to stop and wait (up to `wait` s) for the run to end; end it here if its runner is gone."""
    run = request_cancel(store, run_id)
    deadline = time.monotonic() + wait
    while run.status == RunStatus.RUNNING.value:
        if not runner_alive(run):
            return _cancel_orphan(store, run)
        if time.monotonic() >= deadline:
            raise RunError(f"run {run_id}: cancel requested, but the runner has not stopped within {wait:g}s")
        time.sleep(0.1)
        run = get_run(store, run_id)
    return run


def _cancel_orphan(store: RunStore, run: StoredRun) -> StoredRun:
    kill_orphans(run)
    store.finish_orphan(run.id, status=RunStatus.CANCELLED.value, at=time.time(), reason=f"run cancelled by {who()}")
    return get_run(store, run.id)


def fail_orphan(store: RunStore, run: StoredRun, *, reason: str) -> StoredRun:
    """End an interrupted run as failed (a server set to `orphans: fail` does this on start)."""
    kill_orphans(run)
    store.finish_orphan(run.id, status=RunStatus.FAILED.value, at=time.time(), reason=reason)
    return get_run(store, run.id)


__all__ = [
    "BegunRun",
    "begin_run",
    "cancel_run",
    "drive",
    "fail_orphan",
    "get_run",
    "logical_datetime",
    "new_run_id",
    "open_store",
    "pinned",
    "request_cancel",
    "resume_run",
    "start_run",
    "who",
]
