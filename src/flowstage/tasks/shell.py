"""``shell:`` tasks: a command run by /bin/sh under the task supervisor; a non-zero exit is failure.

The task's `env:` adds variables: plain values as written, `{connection: name}` a connection's
URL (see `flowstage.model.kinds.ShellSpec`); the run's other secrets stay out of its environment.
"""

from __future__ import annotations

from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.model.kinds.shell import ShellSpec
from flowstage.model.statuses import TaskStatus
from flowstage.tasks import TaskContext
from flowstage.tasks._process import resolve_env, run_process, task_env


def run(job: AttemptSpec, ctx: TaskContext) -> Outcome:
    spec = job.spec
    assert isinstance(spec, ShellSpec)
    env = task_env(job, ctx.resources, resolve_env(spec.env, ctx.resources))
    ended = run_process(
        ["/bin/sh", "-c", spec.shell], cwd=job.root, env=env, log=ctx.log, handle=ctx.handle, on_process=ctx.process
    )
    metrics: dict[str, float | int] = {**ended.metrics(), "exit_code": ended.exit_code}
    if ended.exit_code != 0:
        return Outcome(TaskStatus.FAILED, error=f"command exited with code {ended.exit_code}", metrics=metrics)
    return Outcome(TaskStatus.SUCCEEDED, metrics=metrics)
