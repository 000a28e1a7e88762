"""``python:`` tasks: a callable run in a warm worker interpreter (default) or in the runner's process.

A worker (`_workers`, running `_python_worker.py`) is an interpreter of the task's `interpreter:`
started by the runner's supervisor ahead of time, that runs one task at a time with the same
filtered environment as a shell task; its answer comes back on the worker's socket. A worker is
replaced after a kill, a crash or when it grew too large, so a task's isolation and kill are those
of a process of its own; `fresh_process: true` asks for a new interpreter for the task alone.

An `in_process: true` task runs in the runner's thread. What it prints goes to its logs, as a child
process's output does (stdout as info, stderr as warning), never to the runner's own stdout (where
`run --json` writes its document): `sys.stdout` and `sys.stderr` become `_RoutedStream`s that send
what a thread writes to the task that thread runs (a context variable, so tasks on other threads
are never mixed up) and everything else where it went before.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TextIO

from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import DefinitionError
from flowstage.logging import ERROR, INFO, LOG_LINE_LIMIT, LOG_LINE_MARGIN, WARNING, LineBuffer, cap_line
from flowstage.model.kinds.python import PythonSpec
from flowstage.model.statuses import TaskStatus
from flowstage.model.workflow import is_python_version
from flowstage.tasks import TaskContext
from flowstage.tasks._process import task_env

_cache_lock = threading.Lock()
_cache: dict[tuple[str, str], Callable[..., Any]] = {}


def interpreter(choice: str | None, root: str) -> str:
    """The interpreter for `choice`: None (this one), a version ("3.11") or a path (file or venv)."""
    if not choice:
        return sys.executable
    if is_python_version(choice):
        if choice == f"{sys.version_info.major}.{sys.version_info.minor}":
            return sys.executable
        import shutil  # a child interpreter is looked up only for child-process tasks

        found = shutil.which(f"python{choice}")
        if not found:
            raise DefinitionError(f"python {choice} is not on PATH (preferences.python / interpreter)")
        return found
    path = Path(choice) if os.path.isabs(choice) else Path(root) / choice
    if path.is_dir():
        path = path / "bin" / "python"
    if not path.exists():
        raise DefinitionError(f"interpreter {choice!r} not found")
    return str(path)


def load_callable(target: str, root: str) -> Callable[..., Any]:
    """Import `module:function` or `path/file.py:function` (relative to the project root)."""
    key = (target, root)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        where, _, func = target.rpartition(":")
        if where.endswith(".py"):
            path = Path(where) if os.path.isabs(where) else Path(root) / where
            name = "flowstage_task_" + path.stem
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None or not path.exists():
                raise DefinitionError(f"python: no such file {where}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if root not in sys.path:
                sys.path.insert(0, root)
            module = importlib.import_module(where)
        fn: Callable[..., Any] | None = getattr(module, func, None)
        if fn is None or not callable(fn):
            raise DefinitionError(f"python: {where} has no function {func!r}")
        _cache[key] = fn
        return fn


def run(job: AttemptSpec, ctx: TaskContext) -> Outcome:
    log, handle = ctx.log, ctx.handle
    spec = job.spec
    assert isinstance(spec, PythonSpec)
    if spec.in_process:
        return _in_process(job, spec, log)
    from flowstage.tasks._workers import WORKERS, Worker, WorkerLost  # not needed by in-process tasks

    exe = interpreter(spec.interpreter or job.interpreter, job.root)
    env = task_env(job, ctx.resources, {"PYTHONUNBUFFERED": "1"})
    request = {"target": spec.python, "kwargs": job.kwargs, "root": job.root, "env": env}
    fresh = bool(getattr(spec, "fresh_process", False))
    worker = Worker(exe, env) if fresh else WORKERS.acquire(exe, job.root, env)
    answer: dict[str, Any] | None = None
    try:
        handle.attach(worker.child)
        ctx.process(worker.pid)
        answer = worker.run(request, log)
    except WorkerLost as lost:
        code = lost.exit.code if lost.exit is not None else "unknown"
        return Outcome(TaskStatus.FAILED, error=f"python process exited with code {code} and no result")
    finally:
        if fresh or handle.killed:
            worker.retire()
        else:
            WORKERS.release(worker, job.root, answer)
    metrics = {k: float(answer[k]) for k in ("memory_mb", "cpu_seconds") if isinstance(answer.get(k), int | float)}
    if not answer.get("ok"):
        log(ERROR, str(answer.get("traceback", "")).rstrip())
        return Outcome(TaskStatus.FAILED, error=answer.get("error"), metrics=metrics)
    return Outcome(TaskStatus.SUCCEEDED, value=answer.get("value"), metrics=metrics)


def prestart(exe: str, root: str, env: dict[str, str]) -> None:
    """Start a warm worker of `exe` for `root` ahead of the first task that needs one."""
    from flowstage.tasks._workers import WORKERS

    WORKERS.prestart(exe, root, env)


class _TaskOutput:
    """What one in-process task writes to stdout and stderr, cut into lines for its log."""

    def __init__(self, log: Callable[[int, str], None]) -> None:
        self._lines = {
            INFO: LineBuffer(lambda text: log(INFO, text)),
            WARNING: LineBuffer(lambda text: log(WARNING, text)),
        }
        self._lock = threading.Lock()  # a task's own threads may write too

    def write(self, level: int, text: str) -> None:
        with self._lock:
            self._lines[level].feed(text.encode("utf-8", "surrogatepass"))

    def close(self) -> None:
        with self._lock:
            for lines in self._lines.values():
                lines.close()


#: the output of the in-process task the current thread runs (None: not a task's thread)
_task_output: ContextVar[_TaskOutput | None] = ContextVar("flowstage_task_output", default=None)
_install_lock = threading.Lock()


class _RoutedStream:
    """`sys.stdout` or `sys.stderr`: a task's thread writes to the task's log, any other to `stream`."""

    def __init__(self, stream: TextIO | None, level: int) -> None:
        self._stream = stream  # None: the process has no such stream (what is not a task's is dropped)
        self._level = level

    def write(self, text: str) -> int:
        out = _task_output.get()
        if out is not None:
            out.write(self._level, text)
            return len(text)
        return self._stream.write(text) if self._stream is not None else len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _task_output.get() is None and self._stream is not None:
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _route_output() -> None:
    """Put `_RoutedStream`s in place of sys.stdout and sys.stderr (once; again if something replaced them)."""
    with _install_lock:
        if not isinstance(sys.stdout, _RoutedStream):
            sys.stdout = _RoutedStream(sys.stdout, INFO)
        if not isinstance(sys.stderr, _RoutedStream):
            sys.stderr = _RoutedStream(sys.stderr, WARNING)


def _in_process(job: AttemptSpec, spec: PythonSpec, log: Callable[[int, str], None]) -> Outcome:
    _route_output()
    output = _TaskOutput(log)
    token = _task_output.set(output)
    try:
        fn = load_callable(spec.python, job.root)
        value = fn(**job.kwargs)
    except DefinitionError as exc:
        return Outcome(TaskStatus.FAILED, error=str(exc))
    except Exception as exc:
        log(ERROR, cap_line(traceback.format_exc().rstrip(), LOG_LINE_LIMIT + LOG_LINE_MARGIN))
        return Outcome(TaskStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    finally:
        _task_output.reset(token)
        output.close()
    return Outcome(TaskStatus.SUCCEEDED, value=value)
