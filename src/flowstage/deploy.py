"""Deploy, versions and rollback: workflow files registered in the store as numbered versions.

A version holds the workflow file's text, its validated definition, and the text of the project
files its tasks name (SQL files, Python files, dataflow packages), so `diff` shows every change
and the content hash moves when any of them does. Deploying content that is already current
makes no version; deploying content equal to an older version makes that version current again.
Runs by name use the current version's definition (`app.workflows.resolve_workflow`).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstage.app.runs import who
from flowstage.errors import DefinitionError, NotFoundError, Problem, UsageError
from flowstage.model.workflow import Workflow
from flowstage.settings import CONFIG_FILE, STATE_DIR, Project
from flowstage.stores.base import RunStore
from flowstage.stores.deployments import DeploymentStore, DeployOutcome, WorkflowVersion

WORKFLOW_SUFFIXES = (".yaml", ".yml", ".json")
#: files a task names that are kept with the version (text files of the project, at most this size)
REFERENCED_SUFFIXES = (".sql", ".py", ".yaml", ".yml", ".json")
MAX_REFERENCED_BYTES = 1_000_000


def _is_package(path: Path, text: str) -> bool:
    return "packages" in path.parts or ("\nsources:" in "\n" + text and "\nsteps:" in "\n" + text)


def workflow_files(paths: Iterable[Path]) -> list[Path]:
    """The workflow files among `paths` (folders are searched; packages and flowstage.yaml left out)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if candidate.suffix not in WORKFLOW_SUFFIXES or not candidate.is_file():
                    continue
                if candidate.name == CONFIG_FILE or STATE_DIR in candidate.parts:
                    continue
                try:
                    text = candidate.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                if not _is_package(candidate.relative_to(path), text):
                    files.append(candidate)
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return files


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def referenced_files(workflow: Workflow, root: Path) -> dict[str, str]:
    """The project files the tasks of `workflow` name, as {path relative to the root: text}."""
    root = root.resolve()
    found: dict[str, str] = {}
    for _, task in workflow.all_tasks():
        for value in _strings(task.spec.model_dump(mode="json")):
            candidate = value.rsplit(":", 1)[0] if ".py:" in value else value
            if "{{" in candidate or "\n" in candidate or not candidate.endswith(REFERENCED_SUFFIXES):
                continue
            path = (root / candidate).resolve()
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                continue  # outside the project: not ours to keep
            if rel in found or not path.is_file() or path.stat().st_size > MAX_REFERENCED_BYTES:
                continue
            try:
                found[rel] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
    return dict(sorted(found.items()))


@dataclass
class Prepared:
    """A workflow file read and validated, ready to deploy."""

    workflow: Workflow
    text: str
    files: dict[str, str]
    source: str


def prepare_text(project: Project, text: str, source: str) -> Prepared:
    """Validate workflow text (YAML or JSON); `source` names it in messages and in the version."""
    from flowstage.model.loader import load_text

    workflow = load_text(text, source, notifiers=project.notifier_names)
    trigger = workflow.trigger
    if trigger is not None and trigger.after is not None and workflow.name in trigger.after.workflows:
        raise DefinitionError([Problem(f"workflow {workflow.name!r} cannot be triggered by its own runs", source)])
    return Prepared(workflow, text, referenced_files(workflow, project.root), source)


def prepare(project: Project, path: Path) -> Prepared:
    """Read and validate one workflow file (DefinitionError with file:line:col on problems)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([Problem(f"cannot read: {exc}", str(path))]) from None
    try:
        source = path.resolve().relative_to(project.root.resolve()).as_posix()
    except ValueError:
        source = str(path)
    return prepare_text(project, text, source)


def deploy(project: Project, paths: Sequence[Path], *, store: RunStore, at: float | None = None) -> list[DeployOutcome]:
    """Deploy every workflow file under `paths`: all are validated before any is deployed."""
    files = workflow_files(paths)
    if not files:
        raise UsageError("no workflow files found in " + ", ".join(str(p) for p in paths))
    prepared: list[Prepared] = []
    problems: list[Problem] = []
    for path in files:
        try:
            prepared.append(prepare(project, path))
        except DefinitionError as exc:
            problems.extend(exc.problems)
    if problems:
        raise DefinitionError(problems)
    seen: dict[str, str] = {}
    for p in prepared:
        if p.workflow.name in seen:
            raise UsageError(f"two files name the workflow {p.workflow.name!r}: {seen[p.workflow.name]} and {p.source}")
        seen[p.workflow.name] = p.source
    from flowstage.app.definitions import remember_credentials

    for p in prepared:
        remember_credentials(project, p.workflow.to_dict())  # the store keeps them masked
    deployments: DeploymentStore = store.deployments
    by = who()
    now = time.time() if at is None else at
    return [
        deployments.deploy(
            name=p.workflow.name,
            definition=p.workflow.to_dict(),
            text=p.text,
            files=p.files,
            source=p.source,
            at=now,
            by=by,
        )
        for p in prepared
    ]


def deploy_text(project: Project, text: str, *, store: RunStore, source: str = "<api>", at: float | None = None) -> DeployOutcome:
    """Deploy a workflow given as text (what `POST /workflows` receives)."""
    p = prepare_text(project, text, source)
    from flowstage.app.definitions import remember_credentials

    remember_credentials(project, p.workflow.to_dict())  # the store keeps them masked
    deployments: DeploymentStore = store.deployments
    return deployments.deploy(
        name=p.workflow.name,
        definition=p.workflow.to_dict(),
        text=p.text,
        files=p.files,
        source=p.source,
        at=time.time() if at is None else at,
        by=who(),
    )


def rollback(name: str, version: int, *, store: RunStore, at: float | None = None) -> DeployOutcome:
    """Make an earlier version of `name` current again (a new activation; no version is removed)."""
    deployments: DeploymentStore = store.deployments
    return deployments.rollback(name, version, at=time.time() if at is None else at, by=who())


def version_of(deployments: DeploymentStore, name: str, version: int) -> WorkflowVersion:
    found = deployments.version(name, version)
    if found is None:
        if deployments.workflow(name) is None:
            raise NotFoundError(f"workflow {name!r} was never deployed")
        raise NotFoundError(f"workflow {name!r} has no version {version}")
    return found


def diff(old: WorkflowVersion, new: WorkflowVersion) -> str:
    """A unified diff from `old` to `new`: the workflow file, then each referenced file."""
    name = old.workflow
    parts: list[str] = []

    def add(label: str, a: str | None, b: str | None) -> None:
        lines = difflib.unified_diff(
            (a or "").splitlines(keepends=True),
            (b or "").splitlines(keepends=True),
            fromfile=f"{name} v{old.version}/{label}" if a is not None else "/dev/null",
            tofile=f"{name} v{new.version}/{label}" if b is not None else "/dev/null",
        )
        text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
        parts.append(text)

    add(old.source or f"{name}.yaml", old.text, new.text)
    for path in sorted(set(old.files) | set(new.files)):
        add(path, old.files.get(path), new.files.get(path))
    return "".join(parts)


__all__ = [
    "deploy",
    "deploy_text",
    "diff",
    "prepare",
    "prepare_text",
    "referenced_files",
    "rollback",
    "version_of",
    "workflow_files",
]
