"""The local executor: a pool of `max_parallel` threads.

SQL and in-process tasks run in the thread; python and shell tasks start a child process from
the thread (isolation, a kill that reaches the whole process group, peak memory measured).
"""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor, wait

from flowstage.engine.ports import AttemptSpec, Outcome, Reports
from flowstage.errors import FlowstageError
from flowstage.logging import ERROR
from flowstage.model.statuses import TaskStatus
from flowstage.tasks import RunResources, TaskContext, runner_for
from flowstage.tasks._process import ProcessHandle

SHUTDOWN_GRACE_SECONDS = 3.0


class LocalExecutor:
    def __init__(self, resources: RunResources, max_workers: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="flowstage-task")
        self.resources = resources
        self._futures: set[Future[None]] = set()

    def submit(self, job: AttemptSpec, reports: Reports) -> ProcessHandle:
        handle = ProcessHandle()

        def work() -> None:
            try:
                outcome = runner_for(job.spec.kind)(job, TaskContext.reporting_to(reports, handle, self.resources))
            except FlowstageError as exc:
                outcome = Outcome(TaskStatus.FAILED, error=str(exc))
            except BaseException as exc:
                reports.log(ERROR, traceback.format_exc().rstrip())
                outcome = Outcome(TaskStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
            reports.done(outcome)

        if job.timeout and getattr(job.spec, "in_process", False):
            # a thread cannot be killed: an in-process attempt that may time out gets its own
            # (daemon) thread, so that one left behind never holds a slot of the pool
            threading.Thread(target=work, name=f"flowstage-{job.task}", daemon=True).start()
            return handle
        future = self._pool.submit(work)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return handle

    def shutdown(self) -> None:
        # Killed attempts need a moment to unwind (a sub-run cancels itself within a heartbeat);
        # an in-process task that ignores its kill is left behind after the grace period.
        pending = [f for f in self._futures if not f.done()]
        if pending:
            wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.resources.close()
