"""Warm python workers: pre-started interpreters that run default (child-process) python tasks.

A `Worker` is one `_python_worker.py` process started by the supervisor, in a process group of
its own, with a socket to this process. It runs one task at a time; the runner retires it (and
the next task gets a fresh one) after a kill (timeout, cancel), a crash, or when it holds more
than `max_rss_mb()` after a task. Isolation and kill stay those of a process per task; what is
shared is the interpreter start and the modules the tasks import.

`WORKERS` is this process's pool, keyed by interpreter and project root. `LocalExecutor` starts
one worker ahead of the first python task of a run (`prestart`) and ends its idle workers with
the run (`close_idle`).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flowstage.logging import INFO, WARNING, LineBuffer
from flowstage.tasks._supervisor import Child, Exit, recv_frame, send_frame, supervisor

_WORKER = str(Path(__file__).with_name("_python_worker.py"))
#: a worker holding more than this after a task is retired (FLOWSTAGE_PYTHON_WORKER_MAX_MB overrides)
MAX_RSS_MB = 512.0
#: idle workers of other projects are ended after this long
IDLE_SECONDS = 60.0


def max_rss_mb() -> float:
    try:
        return float(os.environ.get("FLOWSTAGE_PYTHON_WORKER_MAX_MB", MAX_RSS_MB))
    except ValueError:
        return MAX_RSS_MB


def log_left(log: Callable[[int, str], None], left: Sequence[str]) -> None:
    """Tell in the task's log what it left running when it ended (and was killed then)."""
    if left:
        shown = ", ".join(str(x) for x in left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
        log(WARNING, f"killed {len(left)} process{'es' if len(left) > 1 else ''} the task left running when it ended: {shown}")


def pump(out_fd: int, err_fd: int, log: Callable[[int, str], None]) -> None:
    """Log each line of a child's stdout (info) and stderr (warning) as it comes, until both end; closes both.

    One thread reads both pipes (poll), in the order the lines arrive.
    """
    # a line holds at most LOG_LINE_LIMIT (and a margin) in memory, however long it is
    lines = {
        out_fd: LineBuffer(lambda text: log(INFO, text)),
        err_fd: LineBuffer(lambda text: log(WARNING, text)),
    }
    poller = select.poll()
    for fd in lines:
        poller.register(fd, select.POLLIN)
    left = set(lines)
    try:
        while left:
            for fd, _event in poller.poll():
                chunk = os.read(fd, 65536)
                if not chunk:
                    poller.unregister(fd)
                    left.discard(fd)
                    lines[fd].close()
                    continue
                lines[fd].feed(chunk)
    finally:
        os.close(out_fd)
        os.close(err_fd)


class WorkerLost(Exception):
    """The worker ended before it answered: `exit` says how."""

    def __init__(self, found: Exit | None) -> None:
        super().__init__("worker ended")
        self.exit = found


class Worker:
    """One warm interpreter and the socket to it."""

    def __init__(self, exe: str, env: Mapping[str, str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            self.child: Child = supervisor().spawn(
                [exe, "-u", _WORKER, "3"],
                cwd="/",
                env=env,
                fds={0: devnull, 1: devnull, 2: devnull, 3: theirs.fileno()},
                measure=False,  # it measures each task itself
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            os.close(devnull)
        self.exe = exe
        self.sock = ours
        self.idle_since = time.monotonic()
        self.retired = False

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def usable(self) -> bool:
        return not self.retired and not self.child.done

    def run(self, request: Mapping[str, Any], log: Callable[[int, str], None]) -> dict[str, Any]:
        """Send one task, log its output as it comes, return its answer (`WorkerLost` if the worker ended)."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            try:
                send_frame(self.sock, request, [out_w, err_w])
            finally:
                os.close(out_w)
                os.close(err_w)
        except OSError:
            os.close(out_r)
            os.close(err_r)
            self.retire()
            raise WorkerLost(self.child.wait(timeout=5)) from None
        pump(out_r, err_r, log)
        answer = recv_frame(self.sock)
        if answer is None:
            self.retire()
            raise WorkerLost(self.child.wait(timeout=5))
        log_left(log, answer.get("left") or ())
        return answer

    def retire(self) -> None:
        """End the worker: its socket closes (it exits), and its group is killed."""
        self.retired = True
        with contextlib.suppress(OSError):
            self.sock.close()
        self.child.kill()


class WorkerPool:
    """Idle workers by (interpreter, project root); a new one when none is idle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str], list[Worker]] = {}

    def acquire(self, exe: str, root: str, env: Mapping[str, str]) -> Worker:
        """An idle worker of `exe` for `root`, or a new one started with `env`."""
        with self._lock:
            idle = self._idle.get((exe, root), [])
            while idle:
                worker = idle.pop()
                if worker.usable:
                    return worker
        return Worker(exe, env)

    def release(self, worker: Worker, root: str, answer: Mapping[str, Any] | None) -> None:
        """Give `worker` back after a task that answered `answer`; retired if it grew too large."""
        rss = answer.get("rss_mb") if answer is not None else None
        if not worker.usable or (isinstance(rss, int | float) and rss > max_rss_mb()):
            worker.retire()
            return
        worker.idle_since = time.monotonic()
        stale: list[Worker] = []
        with self._lock:
            self._idle.setdefault((worker.exe, root), []).append(worker)
            for key, workers in list(self._idle.items()):
                if key[1] != root:
                    keep = [w for w in workers if time.monotonic() - w.idle_since < IDLE_SECONDS]
                    stale += [w for w in workers if w not in keep]
                    self._idle[key] = keep
        for old in stale:
            old.retire()

    def prestart(self, exe: str, root: str, env: Mapping[str, str]) -> None:
        """Start a worker ahead of the first task that needs one (its interpreter starts meanwhile)."""
        with self._lock:
            if self._idle.get((exe, root)):
                return
        worker = Worker(exe, env)
        with self._lock:
            self._idle.setdefault((exe, root), []).append(worker)

    def close_idle(self, root: str) -> None:
        """End the idle workers of `root` (a run ended: nothing of it stays behind)."""
        with self._lock:
            ended = [w for key, workers in self._idle.items() if key[1] == root for w in workers]
            for key in [k for k in self._idle if k[1] == root]:
                del self._idle[key]
        for worker in ended:
            worker.retire()


WORKERS = WorkerPool()

__all__ = ["IDLE_SECONDS", "MAX_RSS_MB", "WORKERS", "Worker", "WorkerLost", "WorkerPool", "max_rss_mb", "pump"]
