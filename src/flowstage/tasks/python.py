"""``python:`` tasks: a callable run in a warm worker interpreter (default) or in the runner's process.

A worker (`_workers`, running `_python_worker.py`) is an interpreter of the task's `interpreter:`
started by the runner's supervisor ahead of time, that runs one task at a time with the same
filtered environment as a shell task; its answer comes back on the worker's socket. A worker is
replaced after a kill, a crash or when it grew too large, so a task's isolation and kill are those
of a process of its own; `fresh_process: true` asks for a new interpreter for the task alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import DefinitionError
from flowstage.logging import ERROR
from flowstage.model.kinds import PythonSpec
from flowstage.model.statuses import TaskStatus
from flowstage.tasks import TaskContext
from flowstage.tasks._process import task_env
from flowstage.tasks._workers import WORKERS, Worker, WorkerLost

_cache_lock = threading.Lock()
_cache: dict[tuple[str, str], Callable[..., Any]] = {}


def interpreter(choice: str | None, root: str) -> str:
    """The interpreter for `choice`: None (this one), a version ("3.11") or a path (file or venv)."""
    if not choice:
        return sys.executable
    if all(part.isdigit() for part in choice.split(".")):
        if choice == f"{sys.version_info.major}.{sys.version_info.minor}":
            return sys.executable
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
    WORKERS.prestart(exe, root, env)


def _in_process(job: AttemptSpec, spec: PythonSpec, log: Callable[[int, str], None]) -> Outcome:
    try:
        fn = load_callable(spec.python, job.root)
        value = fn(**job.kwargs)
    except DefinitionError as exc:
        return Outcome(TaskStatus.FAILED, error=str(exc))
    except Exception as exc:
        log(ERROR, traceback.format_exc().rstrip())
        return Outcome(TaskStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    return Outcome(TaskStatus.SUCCEEDED, value=value)
