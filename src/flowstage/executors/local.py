"""The local executor: a pool of `max_parallel` threads.

SQL and other in-thread kinds run in a pool thread; python and shell tasks start a child process
from it (isolation, a kill that reaches the whole process group, the task's own memory and CPU
measured). An `in_process: true` python attempt runs on a daemon thread of its own: a thread
cannot be killed, so one that was killed or abandoned must never hold a slot of the pool nor keep
the process from exiting (the runner counts running attempts itself, so `max_parallel` holds).

Every log line an attempt reports, and its error, is masked against the run's secrets
(connection URLs and their passwords, the store URL) before it reaches the runner: a task that
echoes a URL it was given logs ``***``.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from msgspec.structs import replace

from flowstage.engine.ports import AttemptSpec, Outcome, Reports
from flowstage.errors import FlowstageError
from flowstage.logging import ERROR, LOG_LINE_LIMIT, LOG_LINE_MARGIN, cap_line
from flowstage.model.statuses import TaskStatus
from flowstage.redact import Scrubber
from flowstage.tasks import RunResources, TaskContext, runner_for
from flowstage.tasks._process import ProcessHandle

SHUTDOWN_GRACE_SECONDS = 3.0


class MaskedReports:
    """`reports` with every log line and error passed through `scrub` first, and each line cut to its cap."""

    def __init__(self, reports: Reports, scrub: Scrubber) -> None:
        self._reports = reports
        self._scrub = scrub

    def log(self, level: int, message: str) -> None:
        # cut to the cap after masking, so that a cut cannot split a secret (a margin before, so masking stays cheap)
        self._reports.log(level, cap_line(self._scrub(cap_line(message, LOG_LINE_LIMIT + LOG_LINE_MARGIN))))

    def process(self, pid: int) -> None:
        self._reports.process(pid)

    def note(self, reason: str | None) -> None:
        self._reports.note(None if reason is None else self._scrub(reason))

    def subrun(self, run_id: str) -> None:
        self._reports.subrun(run_id)

    def done(self, outcome: Outcome) -> None:
        if outcome.error:
            outcome = replace(outcome, error=self._scrub(outcome.error))
        self._reports.done(outcome)


def run_secrets(resources: RunResources) -> list[str]:
    """The URLs whose passwords must never be logged: the run's connections and its store."""
    connections = getattr(resources, "connections", None)
    urls = list(connections.secrets()) if connections is not None else []
    if resources.store_url:
        urls.append(resources.store_url)
    return urls


_Job = tuple[Callable[[], Outcome], Callable[[Outcome], None]]


def attempt_secrets(job: AttemptSpec) -> list[str]:
    """URLs with a password among an attempt's variables and arguments (a `--var` URL, say): their
    passwords are masked in what the attempt logs too, even printed alone."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if "://" in value and "@" in value:
                found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(job.variables)
    walk(job.kwargs)
    return found


class RunScrubbers:
    """The scrubber of each attempt: the run's secrets, plus the passwords of URLs it was given."""

    def __init__(self, resources: RunResources) -> None:
        self._base = run_secrets(resources)
        self.run = Scrubber(self._base)
        self._by_urls: dict[tuple[str, ...], Scrubber] = {}

    def for_attempt(self, job: AttemptSpec) -> Scrubber:
        urls = tuple(sorted(set(attempt_secrets(job))))
        if not urls:
            return self.run
        found = self._by_urls.get(urls)
        if found is None:
            found = self._by_urls[urls] = Scrubber([*self._base, *urls])
        return found


class _DaemonThreads:
    """Daemon threads for in-process attempts, reused while idle.

    Nothing can stop a thread, so one an abandoned attempt holds must never keep the process alive
    (daemon), and never holds a slot another attempt needs (a new thread starts when none is idle;
    the runner bounds how many attempts run at once).
    """

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], Outcome], done: Callable[[Outcome], None]) -> None:
        """Run `work` on an idle thread (or a new one), then hand its outcome to `done`."""
        with self._lock:
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1  # that thread is spoken for: the next submit starts another
        if reuse:
            self._jobs.put((work, done))
        else:
            threading.Thread(target=self._work, args=((work, done),), name=self._prefix, daemon=True).start()

    def _work(self, job: _Job | None) -> None:
        while job is not None:
            work, done = job
            outcome = work()
            # idle before the outcome is told: the attempt the runner starts on hearing it (the next
            # step of a chain) takes this thread rather than starting another
            with self._lock:
                self._idle += 1
            done(outcome)
            job = self._jobs.get()

    def shutdown(self) -> None:
        """End the idle threads (busy ones end with their attempt, or with the process)."""
        with self._lock:
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._jobs.put(None)


class LocalExecutor:
    def __init__(self, resources: RunResources, max_workers: int = 8, interpreters: Sequence[str] = ()) -> None:
        """`interpreters`: those the run's python tasks ask for; a warm worker of each starts at once."""
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="flowstage-task")
        self._in_process = _DaemonThreads("flowstage-in-process")
        self.resources = resources
        self._futures: set[Future[None]] = set()
        self._scrubbers = RunScrubbers(resources)
        self._root = str(resources.root)
        self._prestarting = self._pool.submit(self._prestart, list(interpreters)) if interpreters else None

    def _prestart(self, interpreters: list[str]) -> None:
        from flowstage.tasks._process import base_env
        from flowstage.tasks.python import interpreter, prestart

        env = {**base_env(Path(self._root)), "PYTHONUNBUFFERED": "1"}
        for choice in dict.fromkeys(interpreters):
            with contextlib.suppress(Exception):  # a wrong interpreter fails its task, not the run
                prestart(interpreter(choice or None, self._root), self._root, env)

    def submit(self, job: AttemptSpec, reports: Reports) -> ProcessHandle:
        handle = ProcessHandle()
        masked = MaskedReports(reports, self._scrubbers.for_attempt(job))

        def attempt() -> Outcome:
            try:
                return runner_for(job.spec.kind)(job, TaskContext.reporting_to(masked, handle, self.resources))
            except FlowstageError as exc:
                return Outcome(TaskStatus.FAILED, error=str(exc))
            except BaseException as exc:
                masked.log(ERROR, traceback.format_exc().rstrip())
                return Outcome(TaskStatus.FAILED, error=f"{type(exc).__name__}: {exc}")

        if getattr(job.spec, "in_process", False):
            self._in_process.submit(attempt, masked.done)
            return handle
        future = self._pool.submit(lambda: masked.done(attempt()))
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return handle

    def shutdown(self) -> None:
        # Killed attempts need a moment to unwind (a sub-run cancels itself within a heartbeat);
        # an in-process python attempt is not waited for: nothing can stop its thread, and as a
        # daemon it does not keep the process alive.
        pending = [f for f in tuple(self._futures) if not f.done()]  # pool threads discard finished ones meanwhile
        if self._prestarting is not None and not self._prestarting.cancel():
            pending.append(self._prestarting)  # a worker still starting is ended with the idle ones below
        if pending:
            wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._in_process.shutdown()
        if "flowstage.tasks._workers" in sys.modules:  # loaded only if a worker was ever wanted
            # imported, never read off sys.modules: a thread may still be running the module's code,
            # and the import waits for it
            from flowstage.tasks._workers import WORKERS

            WORKERS.close_idle(self._root)
        self.resources.close()
