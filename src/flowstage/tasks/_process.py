"""Child processes for tasks: their environment, output captured line by line, killed as a group, measured.

Every task process is started by the runner's supervisor (`_supervisor`, one `_forkserver.py`
process per runner), which leads it into a process group of its own, measures its process tree
(peak memory, CPU) and takes every group down when the runner dies; see `_forkserver.py` for why
the runner cannot measure a child it forks itself. The environment a task gets leaves out the
run's secrets unless the task's `env:` asks for them (`task_env`, `resolve_env`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from msgspec import Struct

from flowstage.engine.ports import AttemptSpec
from flowstage.errors import DefinitionError

if TYPE_CHECKING:
    from flowstage.connections import Connections
    from flowstage.model.kinds.shell import EnvSource


class RunSecrets(Protocol):
    """What `task_env` and `resolve_env` read of a run's resources (`tasks.RunResources`)."""

    root: Path
    connections: Connections
    store_url: str


class Killable(Protocol):
    """A process an attempt runs in (a supervisor's `Child`): `kill()` takes down its whole group."""

    def kill(self) -> None: ...


class ProcessHandle:
    """Kills an attempt's process group; safe to call before the process exists or after it ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: Killable | None = None
        self._callbacks: list[Callable[[], None]] = []
        self.killed = False

    def on_kill(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the attempt is killed (at once if it already was)."""
        with self._lock:
            self._callbacks.append(callback)
            killed = self.killed
        if killed:
            callback()

    def attach(self, proc: Killable) -> None:
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
        if self._proc is not None:
            self._proc.kill()


def base_env(root: Path) -> dict[str, str]:
    """The runner's environment minus its secrets (`FLOWSTAGE_CONN_*`, the store, flowstage.yaml's substitutions)."""
    from flowstage.settings import secret_env_names

    withheld = secret_env_names(root)
    return {
        k: v for k, v in os.environ.items() if not (k.startswith("FLOWSTAGE_CONN_") or k == "FLOWSTAGE_STORE" or k in withheld)
    }


def task_env(job: AttemptSpec, resources: RunSecrets | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a task's process: the runner's minus its secrets, the attempt's identity, `extra`.

    Withheld (SPEC §1): `FLOWSTAGE_CONN_*`, `FLOWSTAGE_STORE` and the variables that flowstage.yaml
    substitutes into connection or store URLs. A task gets them only through its own `env:`
    (`extra`, resolved by `resolve_env`).
    """
    env = base_env(Path(resources.root if resources is not None else job.root))
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


class ProcessResult(Struct, frozen=True):
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
    env: Mapping[str, str],
    log: Callable[[int, str], None],
    handle: ProcessHandle,
    stdin_data: bytes | None = None,
    pass_fds: Sequence[int] = (),
    on_process: Callable[[int], None] | None = None,
) -> ProcessResult:
    """Run `argv` to its end, started by the runner's supervisor in a process group of its own.

    stdout lines are logged as info, stderr lines as warning; `pass_fds` keep their numbers in
    the child. The supervisor measures the command's own process tree (never the runner's).
    """
    # the supervisor and its pipes are loaded with the first child process: a run of in-process
    # tasks never needs them
    from flowstage.tasks._supervisor import supervisor
    from flowstage.tasks._workers import log_left, pump

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin_data is not None else (os.open(os.devnull, os.O_RDONLY), -1)
    try:
        fds = {0: in_r, 1: out_w, 2: err_w, **{fd: fd for fd in pass_fds}}
        child = supervisor().spawn(argv, cwd=cwd, env=env, fds=fds)
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w, in_r):
            os.close(fd)
    handle.attach(child)
    if on_process is not None:
        on_process(child.pid)
    if stdin_data is not None:
        threading.Thread(target=_feed, args=(in_w, stdin_data), daemon=True).start()  # a large input must not block the output
    pump(out_r, err_r, log)
    ended = child.wait()
    assert ended is not None
    log_left(log, ended.left)
    return ProcessResult(ended.code, ended.memory_mb, ended.cpu_seconds)


def _feed(fd: int, data: bytes) -> None:
    """Write `data` to a child's stdin and close it (a child that stopped reading is not an error)."""
    with contextlib.suppress(OSError), os.fdopen(fd, "wb") as stream:
        stream.write(data)


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
