"""Is a run's runner alive? The driver loop beats; a run whose beat is stale is interrupted.

A runner whose process is gone is known at once (same host: its pid, checked against the
process's start time so a recycled pid is not mistaken for it). A runner whose process lives
but whose loop stopped beating — a dead runner thread inside a scheduler or a server — is
interrupted once its beat is older than `STALE_HEARTBEAT_SECONDS`, whatever its pid says.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

from flowstage.model.statuses import RunStatus

STALE_HEARTBEAT_SECONDS = 30.0

_STARTED: dict[int, float] = {}


class RunnerRecord(Protocol):
    """What liveness reads of a run (a stored run or its head)."""

    @property
    def status(self) -> str: ...
    @property
    def runner_pid(self) -> int | None: ...
    @property
    def runner_host(self) -> str | None: ...
    @property
    def runner_started(self) -> float | None: ...
    @property
    def heartbeat_at(self) -> float | None: ...


def process_started() -> float:
    """This process's start time (with its pid, what tells a runner apart from a later process)."""
    pid = os.getpid()
    if pid not in _STARTED:  # keyed by pid: a forked child has its own
        found = _started_from_proc(pid)
        if found is None:
            import psutil

            found = float(psutil.Process(pid).create_time())
        _STARTED[pid] = found
    return _STARTED[pid]


def _started_from_proc(pid: int) -> float | None:
    """psutil's `create_time`, read from /proc without importing psutil (the start of a run stays light):
    the boot time (`btime` of /proc/stat) plus the process's start in clock ticks (field 22 of its stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            ticks = int(fh.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith(b"btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _process_gone(run: RunnerRecord) -> bool:
    """True when the runner ran on this host and its process no longer exists."""
    if run.runner_host != os.uname().nodename or not run.runner_pid:
        return False
    import psutil

    try:
        proc = psutil.Process(run.runner_pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        return run.runner_started is not None and abs(proc.create_time() - run.runner_started) >= 1.0
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def runner_alive(run: RunnerRecord, now: float | None = None) -> bool:
    """Whether the runner of `run` still drives it: its process exists and its loop beats."""
    if _process_gone(run):
        return False
    now = time.time() if now is None else now
    return run.heartbeat_at is not None and now - run.heartbeat_at <= STALE_HEARTBEAT_SECONDS


def effective_status(run: RunnerRecord, now: float | None = None) -> str:
    """The status to show: a running run whose runner is gone or silent is `interrupted`."""
    if run.status == RunStatus.RUNNING.value and not runner_alive(run, now):
        return RunStatus.INTERRUPTED.value
    return run.status


def kill_orphans(run: object) -> list[str]:
    """Kill what attempts of a dead runner left running on this host (their process groups)."""
    from flowstage.tasks._process import kill_group

    host = os.uname().nodename
    killed = []
    for task in getattr(run, "tasks", ()):
        for attempt in task.attempts:
            pid = int(attempt.get("pid") or 0)
            mine = attempt.get("status") in ("running", "interrupted") and pid > 0 and attempt.get("host") == host
            if mine and kill_group(pid, float(attempt.get("started_at") or 0)):
                killed.append(f"{task.name}#{attempt.get('number')}")
    return killed


__all__ = ["STALE_HEARTBEAT_SECONDS", "effective_status", "kill_orphans", "process_started", "runner_alive"]
