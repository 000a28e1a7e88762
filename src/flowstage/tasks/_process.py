"""Child processes for tasks: their environment, output captured line by line, killed as a group, measured.

Every task process runs under the standalone supervisor `_supervise.py`, which measures the
command's own process tree (peak memory, CPU) and reports it on a pipe; see its docstring for
why the runner cannot measure a child it forks itself. The environment a task gets leaves out
the run's secrets unless the task's `env:` asks for them (`task_env`, `resolve_env`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from flowstage.engine.ports import AttemptSpec
from flowstage.errors import DefinitionError
from flowstage.logging import INFO, WARNING

if TYPE_CHECKING:
    from flowstage.connections import Connections
    from flowstage.model.kinds import EnvSource

_SUPERVISOR = str(Path(__file__).with_name("_supervise.py"))


class RunSecrets(Protocol):
    """What `task_env` and `resolve_env` read of a run's resources (`tasks.RunResources`)."""

    root: Path
    connections: Connections
    store_url: str


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


def task_env(job: AttemptSpec, resources: RunSecrets | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a task's process: the runner's minus its secrets, the attempt's identity, `extra`.

    Withheld (SPEC §1): `FLOWSTAGE_CONN_*`, `FLOWSTAGE_STORE` and the variables that flowstage.yaml
    substitutes into connection or store URLs. A task gets them only through its own `env:`
    (`extra`, resolved by `resolve_env`).
    """
    from flowstage.settings import secret_env_names

    withheld = secret_env_names(Path(resources.root if resources is not None else job.root))
    env = {
        k: v for k, v in os.environ.items() if not (k.startswith("FLOWSTAGE_CONN_") or k == "FLOWSTAGE_STORE" or k in withheld)
    }
    env.update(job.env)
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


def resolve_env(values: Mapping[str, str | EnvSource], resources: RunSecrets) -> dict[str, str]:
    """A task's `env:` as strings.

    Plain values as written; `{connection: name}` the connection's URL (env override included),
    `{env: NAME}` the runner's variable, `{store: true}` the run store's URL.
    """
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, str):
            out[key] = value
        elif value.connection is not None:
            out[key] = resources.connections.url(value.connection)
        elif value.env is not None:
            if value.env not in os.environ:
                raise DefinitionError(f"env {key}: environment variable {value.env} is not set")
            out[key] = os.environ[value.env]
        else:
            out[key] = resources.store_url
    return out


def _pump(stream: IO[bytes], level: int, log: Callable[[int, str], None]) -> None:
    for raw in iter(stream.readline, b""):
        log(level, raw.decode("utf-8", "replace").rstrip("\r\n"))
    stream.close()


@dataclass(frozen=True)
class ProcessResult:
    """How a task's process ended and what its own process tree used (None: not measured, e.g. killed)."""

    exit_code: int
    memory_mb: float | None = None
    cpu_seconds: float | None = None

    def metrics(self) -> dict[str, float]:
        """`memory_mb` and `cpu_seconds`, those that were measured."""
        found = {"memory_mb": self.memory_mb, "cpu_seconds": self.cpu_seconds}
        return {k: v for k, v in found.items() if v is not None}


def run_process(
    argv: Sequence[str],
    *,
    cwd: str,
    env: dict[str, str],
    log: Callable[[int, str], None],
    handle: ProcessHandle,
    stdin_data: bytes | None = None,
    pass_fds: Sequence[int] = (),
    on_process: Callable[[int], None] | None = None,
) -> ProcessResult:
    """Run `argv` under the supervisor (`_supervise.py`) to its end.

    stdout lines are logged as info, stderr lines as warning. The supervisor leads its own process
    group, so a kill reaches everything the command started, and it measures the command's own
    process tree (never the runner: the runner forks no copy of itself that gets measured).
    """
    report_r, report_w = os.pipe()
    cmd = [sys.executable, "-S", "-E", _SUPERVISOR, "--report-fd", str(report_w), "--", *argv]
    try:
        # no preexec_fn: subprocess may then spawn without copying the runner (vfork); the
        # supervisor arms its own parent-death signal and takes its group down with it
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            pass_fds=(report_w, *pass_fds),
        )
    except BaseException:
        os.close(report_r)
        raise
    finally:
        os.close(report_w)
    try:
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
        code = proc.wait()
        return _result(code, _read_report(report_r))
    finally:
        os.close(report_r)


def _read_report(fd: int) -> dict[str, Any]:
    """The supervisor's report: written before it exited, so nothing here waits."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    try:
        report = json.loads(b"".join(chunks)) if chunks else {}
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


def _result(code: int, report: dict[str, Any]) -> ProcessResult:
    if not report:  # the supervisor itself was killed (a kill, a runner that died)
        return ProcessResult(code)
    memory, cpu = report.get("memory_mb"), report.get("cpu_seconds")
    return ProcessResult(
        int(report.get("exit_code", code)),
        float(memory) if isinstance(memory, int | float) else None,
        float(cpu) if isinstance(cpu, int | float) else None,
    )


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
