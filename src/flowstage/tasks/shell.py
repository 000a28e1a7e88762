"""``shell:`` tasks: a command run by /bin/sh; a non-zero exit is failure."""

from __future__ import annotations

import sys
from pathlib import Path

from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.model.kinds import ShellSpec
from flowstage.model.statuses import TaskStatus
from flowstage.tasks import TaskContext
from flowstage.tasks._process import run_process, task_env

_SUPERVISOR = str(Path(__file__).with_name("_supervise.py"))


def run(job: AttemptSpec, ctx: TaskContext) -> Outcome:
    log, handle = ctx.log, ctx.handle
    spec = job.spec
    assert isinstance(spec, ShellSpec)
    env = task_env(job, {k: str(v) for k, v in spec.env.items()})
    argv = [sys.executable, "-S", "-E", _SUPERVISOR, "/bin/sh", "-c", spec.shell]
    code, peak_mb = run_process(
        argv, cwd=job.root, env=env, log=log, handle=handle, on_process=ctx.process, die_with_parent=False
    )
    metrics = {"memory_mb": peak_mb, "exit_code": code}
    if code != 0:
        return Outcome(TaskStatus.FAILED, error=f"command exited with code {code}", metrics=metrics)
    return Outcome(TaskStatus.SUCCEEDED, metrics=metrics)
