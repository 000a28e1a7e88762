"""Child processes for tasks: output captured line by line, killed as a group, peak memory measured."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

from flowstage.engine.ports import AttemptSpec
from flowstage.logging import INFO, WARNING

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ProcessHandle:
    """Kills an attempt's process group; safe to call before the process exists or after it ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._callbacks: list[Callable[[], None]] = []
        self.killed = False

    def on_kill(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the attempt is killed (at once if it already was)."""
        with self._lock:
            self._callbacks.append(callback)
            killed = self.killed
        if killed:
            callback()

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._proc = proc
            if self.killed:
                self._signal()

    def kill(self) -> None:
        with self._lock:
            self.killed = True
            self._signal()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            with contextlib.suppress(Exception):
                callback()

    def _signal(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)


def task_env(job: AttemptSpec, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a task's process: the runner's, the attempt's identity, `extra`."""
    env = dict(os.environ)
    env.update(
        {
            "FLOWSTAGE_RUN_ID": job.run_id,
            "FLOWSTAGE_WORKFLOW": job.workflow,
            "FLOWSTAGE_TASK": job.task,
            "FLOWSTAGE_ATTEMPT": str(job.attempt),
            "FLOWSTAGE_RUNNER_PID": str(os.getpid()),
        }
    )
    env.update(extra or {})
    return env


def _pump(stream: IO[bytes], level: int, log: Callable[[int, str], None]) -> None:
    for raw in iter(stream.readline, b""):
        log(level, raw.decode("utf-8", "replace").rstrip("\r\n"))
    stream.close()


def run_process(
    argv: Sequence[str],
    *,
    cwd: str,
    env: dict[str, str],
    log: Callable[[int, str], None],
    handle: ProcessHandle,
    stdin_data: bytes | None = None,
    pass_fds: Sequence[int] = (),
    die_with_parent: bool = True,
    on_process: Callable[[int], None] | None = None,
) -> tuple[int, float]:
    """Run `argv` to its end; returns (exit code, peak memory in MB).

    stdout lines are logged as info, stderr lines as warning. The child leads its own process
    group, so a kill reaches everything it started.
    """
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
        preexec_fn=_die_with_parent if die_with_parent else None,
    )
    handle.attach(proc)
    if on_process is not None:
        on_process(proc.pid)
    assert proc.stdout is not None
    assert proc.stderr is not None
    err_thread = threading.Thread(target=_pump, args=(proc.stderr, WARNING, log), daemon=True)
    err_thread.start()
    if stdin_data is not None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(stdin_data)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    _pump(proc.stdout, INFO, log)
    err_thread.join(timeout=5)
    # wait4 rather than Popen.wait: it also tells the child's peak memory
    delay = 0.001
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            proc.wait()
            return proc.returncode or 0, 0.0
        if pid:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    return code, round(usage.ru_maxrss / 1024, 3)


def kill_group(pgid: int, not_before: float) -> bool:
    """Kill process group `pgid` if it still holds a process started after `not_before` (epoch).

    For attempts of a runner that died: their children lead their own groups and may outlive it.
    The start-time check guards against a recycled id.
    """
    import psutil

    members = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["create_time"] >= not_before - 1.0:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    if not members:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    return True
