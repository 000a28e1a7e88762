"""``workflow:`` tasks: another workflow as a sub-run, linked to its parent.

The sub-run has its own run record (with `parent_run_id`); its status is the task's. A kill
cancels the sub-run; a resumed parent resumes the sub-run of the previous attempt when it can.
The run itself is started by the composition layer (`RunResources.subrun`), which owns stores
and executors.
"""

from __future__ import annotations

from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import RunError
from flowstage.model.kinds import WorkflowSpec
from flowstage.model.statuses import TaskStatus
from flowstage.tasks import TaskContext


def run(job: AttemptSpec, ctx: TaskContext) -> Outcome:
    spec = job.spec
    assert isinstance(spec, WorkflowSpec)
    start = ctx.resources.subrun
    if start is None:
        raise RunError("workflow tasks need a run store (no sub-run runner configured)")
    result = start(spec.workflow, job, ctx)
    metrics = {"sub_run_id": result.id}
    if result.status == "succeeded":
        return Outcome(TaskStatus.SUCCEEDED, value=result.variables, metrics=metrics)
    status = TaskStatus.TIMED_OUT if result.status == "timed_out" else TaskStatus.FAILED
    return Outcome(status, error=f"sub-run {result.id} of {spec.workflow} {result.status}", metrics=metrics)
