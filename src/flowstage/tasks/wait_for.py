"""``wait_for:`` sensors: a file glob, or a SQL query whose first value is true-ish.

Checked every `poke` until it holds; the task's `timeout` bounds the wait (the attempt then times
out like any other). A kill wakes the sensor at once. A query on a DuckDB file holds the file only
while it runs; while another process holds it, the sensor waits its turn (until its deadline).
"""

from __future__ import annotations

import glob
import threading
from pathlib import Path

from flowstage.connections import LockTimeout, run_statements, split_statements
from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import RunError
from flowstage.logging import DEBUG, INFO
from flowstage.model.kinds.wait_for import WaitForSpec
from flowstage.model.statuses import TaskStatus
from flowstage.tasks import TaskContext
from flowstage.tasks.sql import lock_wait


def _files(pattern: str, root: Path) -> list[str]:
    full = pattern if Path(pattern).is_absolute() else str(root / pattern)
    return sorted(glob.glob(full, recursive=True))


def run(job: AttemptSpec, ctx: TaskContext) -> Outcome:
    spec = job.spec
    assert isinstance(spec, WaitForSpec)
    target = spec.wait_for
    woken = threading.Event()
    ctx.handle.on_kill(woken.set)
    root = Path(job.root)
    # templates in the query text are refused when the file is validated: values reach it only
    # through `params:`, bound, never pasted
    query = target.sql
    checks = 0
    while not ctx.handle.killed:
        checks += 1
        if target.file is not None:
            found = _files(target.file, root)
            if found:
                ctx.log(INFO, f"found {len(found)} file(s) for {target.file}: {', '.join(found[:5])}")
                return Outcome(TaskStatus.SUCCEEDED, value=found, metrics={"checks": checks})
            ctx.log(DEBUG, f"no file yet for {target.file}")
        else:
            assert query is not None
            try:
                session = ctx.resources.connections.session(target.connection, wait=lock_wait(job, ctx))
            except LockTimeout as exc:
                return Outcome(TaskStatus.TIMED_OUT, error=str(exc), metrics={"checks": checks})
            ctx.handle.on_kill(session.cancel)
            try:
                last, _ = run_statements(session, split_statements(query), target.params, max_rows=1)
                session.rollback()
            finally:
                session.close()
            value = last.rows[0][0] if last is not None and last.rows else None
            if value:
                ctx.log(INFO, f"condition holds on {target.connection}: {value!r}")
                return Outcome(TaskStatus.SUCCEEDED, value=value, metrics={"checks": checks})
            ctx.log(DEBUG, f"condition does not hold yet ({value!r})")
        woken.wait(spec.poke)
    raise RunError("sensor stopped")
