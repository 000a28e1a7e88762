"""``python:`` tasks: a callable run in a child interpreter (default) or in the runner's process.

The child interpreter runs `_python_child.py` under the task supervisor (see `_process`), with
the same filtered environment as a shell task; its answer comes back on a pipe of its own.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
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
from flowstage.tasks._process import run_process, task_env

_CHILD = str(Path(__file__).with_name("_python_child.py"))
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
    read_fd, write_fd = os.pipe()
    env = task_env(job, ctx.resources, {"PYTHONUNBUFFERED": "1"})
    request = json.dumps(
        {"target": spec.python, "kwargs": job.kwargs, "root": job.root, "result_fd": write_fd}, default=str
    ).encode()
    result_chunks: list[bytes] = []

    def read_result() -> None:
        with os.fdopen(read_fd, "rb") as fh:
            result_chunks.append(fh.read())

    reader = threading.Thread(target=read_result, daemon=True)
    reader.start()
    try:
        ended = run_process(
            [exe, _CHILD],
            cwd=job.root,
            env=env,
            log=log,
            handle=handle,
            stdin_data=request,
            pass_fds=(write_fd,),
            on_process=ctx.process,
        )
    finally:
        os.close(write_fd)
    reader.join(timeout=10)
    metrics = ended.metrics()
    raw = b"".join(result_chunks)
    if not raw:
        error = f"python process exited with code {ended.exit_code} and no result"
        return Outcome(TaskStatus.FAILED, error=error, metrics=metrics)
    answer = json.loads(raw)
    if not answer.get("ok"):
        log(ERROR, answer.get("traceback", "").rstrip())
        return Outcome(TaskStatus.FAILED, error=answer.get("error"), metrics=metrics)
    return Outcome(TaskStatus.SUCCEEDED, value=answer.get("value"), metrics=metrics)


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
