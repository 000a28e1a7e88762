"""Sub-runs: the `workflow:` attempts of a run, started by the driver's side, never in a task slot.

The driver hands every attempt of kind `workflow` to `SubRuns` (an executor port of its own): each
sub-run is a normal run with its own record (`parent_run_id`), driven on a thread of this
process by a runner and executor of its own. Killing the attempt asks the sub-run to cancel; a
resumed parent resumes the sub-run its copy's earlier attempt left, when that one can be resumed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from flowstage.engine.ports import AttemptSpec, Outcome, Reports
from flowstage.errors import FlowstageError, RunError
from flowstage.logging import NOTICE
from flowstage.model.statuses import RUN_RESUMABLE, RunStatus, TaskStatus
from flowstage.redact import mask_strings
from flowstage.settings import Project
from flowstage.stores.base import StoredRun
from flowstage.tasks._process import ProcessHandle

StartRun = Callable[..., StoredRun]
ResumeRun = Callable[..., StoredRun]

MAX_SUBRUN_DEPTH = 8
SHUTDOWN_GRACE_SECONDS = 15.0


def subrun_id(parent_run_id: str, task: str, instance: int | None) -> str:
    """The id of the sub-run of one copy of a `workflow:` task: the same for every attempt of the copy.

    A resumed parent finds its copy's sub-run by this id even when the runner died before it
    recorded the sub-run, so a copy never has two sub-runs. The parent's start time leads, as in
    every run id (`new_run_id`), then 12 hex digits of a hash of the copy.
    """
    digest = hashlib.sha256(f"{parent_run_id}/{task}/{instance}".encode()).hexdigest()
    return parent_run_id[:14] + digest[:12]


def _passwords(given: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """The variables a sub-run was started with that its record keeps masked (a password in a URL):
    what its resume must be given again."""
    return {k: v for k, v in given.items() if k in kept and kept[k] != v and mask_strings(v) == kept[k]}


class SubRuns:
    """Starts (or resumes) the sub-run of a `workflow:` attempt on a thread of its own."""

    def __init__(self, project: Project, *, executor: str | None, depth: int, start: StartRun, resume: ResumeRun) -> None:
        self.project = project
        self.start, self.resume = start, resume  # the application's own, handed in (no import loop)
        self.executor = executor
        self.depth = depth
        self._threads: list[threading.Thread] = []

    def submit(self, attempt: AttemptSpec, reports: Reports) -> ProcessHandle:
        handle = ProcessHandle()
        thread = threading.Thread(
            target=self._work, args=(attempt, reports, handle), name=f"flowstage-subrun-{attempt.task}", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        return handle

    def _work(self, attempt: AttemptSpec, reports: Reports, handle: ProcessHandle) -> None:
        try:
            outcome = self._run(attempt, reports, handle)
        except FlowstageError as exc:
            outcome = Outcome(TaskStatus.FAILED, error=str(exc))
        except BaseException as exc:  # the error boundary of the sub-run's thread
            outcome = Outcome(TaskStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        reports.done(outcome)

    def _run(self, attempt: AttemptSpec, reports: Reports, handle: ProcessHandle) -> Outcome:
        from flowstage.app.liveness import effective_status
        from flowstage.app.stores import open_store
        from flowstage.app.workflows import resolve_workflow
        from flowstage.model.kinds.workflow import WorkflowSpec  # its model is built when a sub-run starts

        spec = attempt.spec
        assert isinstance(spec, WorkflowSpec)
        if self.depth >= MAX_SUBRUN_DEPTH:
            raise RunError(f"sub-workflows nest deeper than {MAX_SUBRUN_DEPTH} levels (a workflow calling itself?)")
        store = open_store(self.project)
        control = open_store(self.project)  # cancel requests come from the parent's loop thread
        try:

            def watch(run_id: str) -> None:
                reports.subrun(run_id)

                def cancel() -> None:
                    control.request_cancel(run_id, time.time())

                handle.on_kill(cancel)

            # the sub-run this copy left before: recorded by its earlier attempt, or — when the runner
            # died between creating the sub-run and recording its id — found by its id, which is the
            # copy's own (`subrun_id`)
            mine = [a for a in attempt.previous if a.get("instance") == attempt.instance]
            earlier = [a.get("sub_run_id") or a.get("metrics", {}).get("sub_run_id") for a in mine]
            own_id = subrun_id(attempt.run_id, attempt.task, attempt.instance)
            candidates = list(dict.fromkeys([*(i for i in reversed(earlier) if i), own_id]))
            result = None
            for candidate in candidates:
                previous = store.get_run(candidate)
                if previous is None:
                    continue
                shown = effective_status(previous)
                if shown == RunStatus.SUCCEEDED.value:  # it ended well and the parent never heard: not run again
                    watch(candidate)
                    reports.log(NOTICE, f"sub-run {candidate} of {previous.workflow} had succeeded: its result is used")
                    result = previous
                elif shown in {s.value for s in RUN_RESUMABLE}:
                    watch(candidate)
                    result = self.resume(
                        self.project,
                        candidate,
                        store=store,
                        executor=self.executor,
                        depth=self.depth + 1,
                        variables=_passwords(attempt.task_variables, previous.variables),
                    )
                elif candidate == own_id:
                    raise RunError(f"sub-run {candidate} of {previous.workflow} is still running (pid {previous.runner_pid})")
                if result is not None:
                    break
            if result is None:
                found = resolve_workflow(self.project, spec.workflow, store=store)

                def created(run_id: str) -> None:
                    watch(run_id)
                    reports.log(NOTICE, f"sub-run {run_id} of {found.workflow.name} started")

                result = self.start(
                    self.project,
                    found.workflow,
                    store=store,
                    variables=attempt.task_variables,
                    version=found.version,
                    source=found.source,
                    definition=found.definition,
                    executor=self.executor,
                    parent_run_id=attempt.run_id,
                    run_id=own_id,
                    on_created=created,
                    depth=self.depth + 1,
                )
        finally:
            store.close()
            control.close()
        metrics = {"sub_run_id": result.id}
        if result.status == "succeeded":
            return Outcome(TaskStatus.SUCCEEDED, value=result.variables, metrics=metrics)
        status = TaskStatus.TIMED_OUT if result.status == "timed_out" else TaskStatus.FAILED
        return Outcome(status, error=f"sub-run {result.id} of {spec.workflow} {result.status}", metrics=metrics)

    def shutdown(self) -> None:
        # a killed sub-run cancels itself within a heartbeat: give it the time to record that
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


__all__ = ["MAX_SUBRUN_DEPTH", "SubRuns"]
