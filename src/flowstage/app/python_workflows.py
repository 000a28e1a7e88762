"""Workflows built in Python: ``flowstage run module.py:name`` imports the module and takes `name`.

`name` is a module-level `Workflow`, or a function of no arguments that returns one (for a
workflow generated at run time). Importing the module runs the user's code, so this is an error
boundary: a syntax error, an exception raised while importing or calling, a missing name or an
object of another type is one `DefinitionError` line at the module's file and line, as
``module.py:3: ImportError: No module named 'pandas'`` — never a traceback. The module's folder
is first on `sys.path` while it is imported (as ``python module.py`` would have it), so it may
import the modules beside it.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from flowstage.errors import DefinitionError, Problem
from flowstage.model.workflow import Workflow

_PACKAGE = str(Path(__file__).resolve().parent.parent)


def workflow_of_module(path: Path, name: str, *, shown: str | None = None) -> Workflow:
    """The `Workflow` that `name` of the module at `path` is (or returns); `shown`: the path as the user wrote it."""
    file = shown or str(path)
    if not path.is_file():
        raise DefinitionError([Problem("no such file" if not path.exists() else "not a file", file)])
    module = _import(path, file)
    if not hasattr(module, name):
        found = sorted(k for k, v in vars(module).items() if isinstance(v, Workflow))
        known = f"; its workflows: {', '.join(found)}" if found else "; it defines no Workflow at module level"
        raise DefinitionError([Problem(f"no name {name!r} in the module{known}", file)])
    value = getattr(module, name)
    if isinstance(value, Workflow):
        return value
    if callable(value) and not isinstance(value, type):
        value = _call(value, name, path, file)
        if isinstance(value, Workflow):
            return value
        raise DefinitionError([Problem(f"{name}() returned {_kind(value)}, not a flowstage Workflow", file)])
    raise DefinitionError(
        [Problem(f"{name!r} is {_kind(value)}, not a flowstage Workflow (or a function of no arguments returning one)", file)]
    )


def _kind(value: Any) -> str:
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _import(path: Path, file: str) -> Any:
    import importlib.util

    resolved = path.resolve()
    module_name = f"_flowstage_workflow_{abs(hash(str(resolved))):x}_{resolved.stem}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise DefinitionError([Problem("cannot be imported as a Python module", file)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a class's module up there
    folder = str(resolved.parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        where = _shown_file(exc.filename, resolved, file)
        message = f"{type(exc).__name__}: {exc.msg}"
        raise DefinitionError([Problem(message, where, exc.lineno, exc.offset)]) from None
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        raise _error_in_user_code(exc, resolved, file) from None
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    return module


def _call(function: Any, name: str, path: Path, file: str) -> Any:
    import inspect

    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        needed = [
            p.name
            for p in signature.parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if needed:
            message = (
                f"{name}() takes arguments ({', '.join(needed)}): name a Workflow, or a function of no arguments returning one"
            )
            raise DefinitionError([Problem(message, file)])
    try:
        return function()
    except (Exception, SystemExit) as exc:
        raise _error_in_user_code(exc, path.resolve(), file) from None


def _shown_file(filename: str | None, module: Path, file: str) -> str:
    """The file of a frame as the user knows it: the module as they named it, another relative to here."""
    if filename is None:
        return file
    if Path(filename) == module:
        return file
    import os

    relative = os.path.relpath(filename)
    return filename if relative.startswith("..") else relative


def _error_in_user_code(exc: BaseException, module: Path, file: str) -> DefinitionError:
    """One line for `exc`: at the innermost frame in the user's module (else the innermost of theirs)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if Path(f.filename) == module]
    theirs = [f for f in frames if not f.filename.startswith(("<", _PACKAGE))]
    picked = own or theirs or list(frames)
    where = _shown_file(picked[-1].filename, module, file) if picked else file
    line = picked[-1].lineno if picked else None
    return DefinitionError([Problem(f"{type(exc).__name__}: {_one_line(exc)}", where, line)])


def _one_line(exc: BaseException) -> str:
    """The message of `exc` on one line (pydantic's validation errors listed with their places)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
        return f"{exc.title}: " + "; ".join(parts)
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or repr(exc)


__all__ = ["workflow_of_module"]
