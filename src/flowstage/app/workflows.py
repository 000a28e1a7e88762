"""Finding workflows: by file, by name (the current deployed version first), by a Python module's
``module.py:name`` (a `Workflow` built in Python), and `--var` values."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from msgspec import Struct

from flowstage.errors import DefinitionError, NotFoundError, UsageError
from flowstage.model.workflow import Workflow
from flowstage.settings import Project
from flowstage.stores.base import RunStore


def parse_var(text: str) -> tuple[str, Any]:
    """``k=v`` from ``--var``: v is a YAML 1.2 scalar (numbers, booleans, null, quoted text), a flow
    list or mapping (``[EU, US]``, ``{a: 1}``), else text. A value that starts like a list, a mapping
    or quoted text and does not parse is a `UsageError` (never silently text); a template is text."""
    if "=" not in text:
        raise UsageError(f"--var {text!r}: expected NAME=VALUE")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key.isidentifier():
        raise UsageError(f"--var {text!r}: {key!r} is not a variable name")
    from flowstage.model.yamlsource import parse, resolve_scalar

    stripped = value.strip()
    try:
        if stripped[:1] in ("[", "{", "'", '"') and not stripped.startswith(("{{", "{%", "{#")):
            try:
                return key, parse(stripped, "--var").data
            except DefinitionError as exc:
                problem = str(exc).split(": ", 1)[-1].removeprefix("invalid YAML: ")
                if "number too long" in problem:
                    raise ValueError("digits") from None  # named below as a number too long, like a lone one
                if stripped[:1] in ("'", '"'):
                    raise UsageError(f"--var {key}: {value!r}: the quote is not closed ({problem})") from None
                raise UsageError(
                    f"--var {key}: {value!r} starts a list or mapping that does not parse ({problem}); "
                    f"to pass it as text, quote it: --var '{key}=\"{value}\"'"
                ) from None
        return key, resolve_scalar(value)  # `{{ 7*7 }}` and the like: text, never a template
    except ValueError as exc:  # a number past what Python turns into a value (4,300 digits)
        raise UsageError(f"--var {key}: {_number_problem(exc)}") from None


def _number_problem(exc: ValueError) -> str:
    if "digits" in str(exc):
        return "a number of more than 4,300 digits; quote it to pass it as text"
    return str(exc)


class FoundWorkflow(Struct, frozen=True):
    """A workflow looked up by name or file, and the deployed version it is (None for a file)."""

    workflow: Workflow
    source: str
    version: int | None = None
    #: the workflow's plain mapping, as a run records it (kept with the validated definition)
    definition: dict[str, Any] | None = None


#: ``path/to/module.py:name``: a module-level Workflow (or a function of no arguments returning one)
_PYTHON_REF = re.compile(r"^(?P<file>.+\.py):(?P<name>[A-Za-z_]\w*)$")


def python_ref(ref: str) -> tuple[str, str] | None:
    """``(file, name)`` of a ``module.py:name`` reference, or None for a name or a workflow file."""
    found = _PYTHON_REF.match(ref)
    return (found.group("file"), found.group("name")) if found else None


def python_file(project: Project, file: str) -> Path:
    """The module file of a ``module.py:name`` reference: as given (from the current folder), else under the project root."""
    path = Path(file)
    if not path.is_absolute() and not path.is_file() and (project.root / path).is_file():
        return project.root / path
    return path


def load_python(project: Project, ref: str) -> FoundWorkflow:
    """The workflow named by ``module.py:name``, checked as a file's would be (graph, notifiers).

    Importing the module runs its code: whatever goes wrong there is one `DefinitionError` line at
    the module's file and line (``module.py:3: ImportError: No module named 'x'``).
    """
    parts = python_ref(ref)
    if parts is None:
        raise UsageError(f"{ref!r}: expected path/to/module.py:name")
    path = python_file(project, parts[0])
    from flowstage.app.python_workflows import workflow_of_module
    from flowstage.errors import Problem
    from flowstage.model.loader import check_graph

    workflow = workflow_of_module(path, parts[1], shown=parts[0])
    problems = check_graph(workflow, notifiers=project.notifier_names)
    if problems:
        raise DefinitionError([Problem(f"{parts[1]}: {p.message}", parts[0]) for p in problems])
    return FoundWorkflow(workflow, f"{parts[0]}:{parts[1]}", None, workflow.to_dict())


def _looks_like_path(ref: str) -> bool:
    return Path(ref).suffix in (".yaml", ".yml", ".json") or os.sep in ref or Path(ref).is_file()


def _deployed(project: Project, name: str, store: RunStore | None) -> FoundWorkflow | None:
    """The current deployed version of `name`, if it was ever deployed."""
    if store is None:
        url = project.store_url
        if url.startswith("sqlite"):
            from flowstage.stores.sql.store import _sqlite_file

            path = _sqlite_file(url)
            if path == ":memory:" or not Path(path).exists():
                return None  # no store yet, so nothing was deployed
        from flowstage.app.stores import open_store

        opened = open_store(project)
        try:
            return _deployed(project, name, opened)
        finally:
            opened.close()
    found = store.deployments.workflow(name)
    if found is None:
        return None
    from flowstage.app.definitions import validate_definition

    workflow, definition = validate_definition(project, found.definition)
    return FoundWorkflow(workflow, f"{name} v{found.current_version} (deployed)", found.current_version, definition)


def resolve_workflow(project: Project, ref: str, *, store: RunStore | None = None) -> FoundWorkflow:
    """A workflow by file path; by name, its current deployed version, else the file in `workflows/`.

    `store` is the run store to look deployments up in (opened from the project when omitted).
    """
    if python_ref(ref) is not None:
        return load_python(project, ref)
    if not _looks_like_path(ref):
        deployed = _deployed(project, ref, store)
        if deployed is not None:
            return deployed
    return _find_file(project, ref)


def changed_since_deploy(project: Project, found: FoundWorkflow) -> str | None:
    """The file in `workflows/` of a deployed workflow when it is not the version `found` runs
    (changed since, or no longer valid); None when it is the same or there is none."""
    if found.version is None or found.definition is None:
        return None
    try:
        on_disk = _find_file(project, found.workflow.name)
    except NotFoundError:
        return None
    except DefinitionError:
        return _file_of(project, found.workflow.name)
    return None if on_disk.definition == found.definition else on_disk.source


def _file_of(project: Project, name: str) -> str | None:
    for suffix in (".yaml", ".yml", ".json"):
        candidate = project.root / "workflows" / f"{name}{suffix}"
        if candidate.is_file():
            return str(candidate)
    return None


def find_workflow(project: Project, ref: str) -> tuple[Workflow, str]:
    """A workflow by file path, or by name: the current deployed version, else from `workflows/`."""
    found = resolve_workflow(project, ref)
    return found.workflow, found.source


def _found_file(project: Project, path: Path) -> FoundWorkflow:
    from flowstage.app.definitions import load_file

    workflow, definition = load_file(project, path)
    return FoundWorkflow(workflow, str(path), None, definition)


def _find_file(project: Project, ref: str) -> FoundWorkflow:
    """A workflow by file path, or by name from the project's `workflows/` folder."""
    path = Path(ref)
    if _looks_like_path(ref):
        if not path.is_absolute() and not path.exists():
            alt = project.root / path
            path = alt if alt.exists() else path
        return _found_file(project, path)
    folder = project.root / "workflows"
    for suffix in (".yaml", ".yml", ".json"):
        candidate = folder / f"{ref}{suffix}"
        if candidate.is_file():
            found = _found_file(project, candidate)
            if found.workflow.name == ref:
                return found
    if folder.is_dir():
        import re

        # `name: x` of a YAML file, `"name": "x"` of a JSON one
        pattern = re.compile(rf"^name:\s*['\"]?{re.escape(ref)}['\"]?\s*$|\"name\"\s*:\s*\"{re.escape(ref)}\"", re.MULTILINE)
        for candidate in sorted(folder.iterdir()):
            if candidate.suffix in (".yaml", ".yml", ".json") and pattern.search(candidate.read_text(errors="replace")):
                found = _found_file(project, candidate)
                if found.workflow.name == ref:
                    return found
    raise NotFoundError(f"no workflow named {ref!r} (looked for a file, and in {folder})")


__all__ = [
    "FoundWorkflow",
    "changed_since_deploy",
    "find_workflow",
    "load_python",
    "parse_var",
    "python_file",
    "python_ref",
    "resolve_workflow",
]
