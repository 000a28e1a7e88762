"""Validated workflow definitions, kept so that a run of an unchanged file skips validation.

Reading a workflow is parsing YAML and validating it with pydantic; the first validation in a
process also builds every model's validator, which costs more than the rest of a one-task run.
So a definition that passed is kept under ``.flowstage/cache/definitions/`` as a pickle of the
`Workflow` and of its plain mapping (what a run records), named by a hash of everything the
answer depends on: the file's bytes (or a deployed definition), the notifiers the project
defines, and the model's own code and library versions. A changed byte of any of them is another
name, so a stale entry is never read; an entry that cannot be read is validated again and
replaced. Only built-in task kinds are kept (a plug-in's code may change without a trace here).

The folder belongs to the project like its run store: whoever can write there can already change
the runs, which is why a pickle is acceptable here and nowhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowstage.errors import UsageError
from flowstage.model.workflow import Workflow
from flowstage.redact import masked_paths
from flowstage.settings import Project

CACHE_FORMAT = b"flowstage-definitions-1"
#: the model's modules: an edit to any of them makes every kept entry another name
_MODEL_DIR = Path(__file__).resolve().parent.parent / "model"
_code_key: bytes | None = None


def _code_fingerprint() -> bytes:
    global _code_key
    if _code_key is None:
        import pydantic

        parts = [CACHE_FORMAT, sys.version.encode(), pydantic.VERSION.encode()]
        for name, st in sorted(_model_files(str(_MODEL_DIR), "")):
            parts.append(f"{name}:{st.st_mtime_ns}:{st.st_size}".encode())
        _code_key = hashlib.sha256(b"\0".join(parts)).digest()
    return _code_key


def _model_files(folder: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every `.py` file under `folder` (the kinds' specs are in a folder of their own), by its path
    from there, with its `stat`; read with `os.scandir`, which a run pays at every start."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(".py"):
                yield prefix + entry.name, entry.stat()
            elif entry.name != "__pycache__" and entry.is_dir():
                yield from _model_files(entry.path, f"{prefix}{entry.name}/")


def _cache_dir(project: Project) -> Path:
    return project.state_dir / "cache" / "definitions"


def _key(content: bytes, project: Project) -> str:
    digest = hashlib.sha256(_code_fingerprint())
    digest.update(b"\0notifiers\0" + "\0".join(sorted(project.notifier_names)).encode())
    digest.update(b"\0content\0" + content)
    return digest.hexdigest()


def _read(project: Project, key: str) -> tuple[Workflow, dict[str, Any]] | None:
    try:
        data = (_cache_dir(project) / f"{key}.pickle").read_bytes()
    except OSError:
        return None
    try:
        workflow, definition = pickle.loads(data)
    except Exception:
        return None  # written by another version, or cut short: validated again below
    if not isinstance(workflow, Workflow) or not isinstance(definition, dict):
        return None
    return workflow, definition


def _builtin_only(workflow: Workflow) -> bool:
    return all(type(task.spec).__module__.startswith("flowstage.") for _, task in workflow.all_tasks())


def _write(project: Project, key: str, workflow: Workflow, definition: dict[str, Any]) -> None:
    if not _builtin_only(workflow):
        return
    folder = _cache_dir(project)
    target = folder / f"{key}.pickle"
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(pickle.dumps((workflow, definition), protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, target)  # whole or absent: a reader never sees half an entry
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a read-only project runs as well, only without the shortcut


def load_file(project: Project, path: Path) -> tuple[Workflow, dict[str, Any]]:
    """The validated workflow of the file at `path` and its plain mapping (as a run records it)."""
    from flowstage.files import read_definition

    text = read_definition(path, "workflow file")
    key = _key(b"file\0" + text.encode(), project)
    kept = _read(project, key)
    if kept is not None:
        return kept
    from flowstage.model import loader  # the YAML reader and the graph checks: only for what is not kept

    workflow = loader.load_text(text, str(path), notifiers=project.notifier_names)
    definition = workflow.to_dict()
    _write(project, key, workflow, definition)
    return workflow, definition


def has_masked(value: Any) -> bool:
    """Whether `value` (JSON data) holds a password masked by `mask_url`."""
    return bool(masked_paths(value))


def _file_definition(project: Project, name: str) -> dict[str, Any]:
    """The plain mapping of the workflow file of the project named `name` (``workflows/NAME.yaml``), or {}."""
    for suffix in (".yaml", ".yml", ".json"):
        path = project.root / "workflows" / f"{name}{suffix}"
        if path.is_file():
            try:
                return load_file(project, path)[1]
            except Exception:
                return {}  # a file that no longer validates holds nothing to take back
    return {}


def _credentials_file(project: Project) -> Path:
    return project.state_dir / "credentials.json"


def _remembered(project: Project) -> dict[str, str]:
    try:
        found = json.loads(_credentials_file(project).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def remember_credentials(project: Project, definition: dict[str, Any]) -> None:
    """Keep the URLs with a password of a definition being deployed in the project's own state
    folder (``.flowstage/credentials.json``, readable by its owner only), by their masked form:
    the store keeps the version masked, and a run of it on this project takes them back here
    (a version deployed through the API has no file to take them back from)."""
    from flowstage.redact import mask_strings

    found: dict[str, str] = {}

    def walk(value: Any) -> None:
        if isinstance(value, str):
            masked = mask_strings(value)
            if masked != value:
                found[masked] = value
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    walk(definition)
    if not found:
        return
    path = _credentials_file(project)
    kept = {**_remembered(project), **found}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(kept, fh, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a read-only project: its runs take the passwords back from the file alone


def with_credentials(project: Project, definition: dict[str, Any]) -> dict[str, Any]:
    """A stored definition with the passwords written in its URLs put back.

    The store never keeps them (a deployed version and a run's definition hold ``user:***@``);
    they come back from the project's workflow file of the same name, where the same URL is
    written with its password, else from what `remember_credentials` kept when it was deployed
    here. One that neither explains is a `UsageError` naming where it is.
    """
    if not masked_paths(definition):
        return definition
    from flowstage.redact import restore_masked

    name = str(definition.get("name", ""))
    # the file last: a password changed in it since the deploy is the one used
    restored: dict[str, Any] = restore_masked(
        definition, lambda: [list(_remembered(project).values()), _file_definition(project, name)]
    )
    missing = masked_paths(restored)
    if missing:
        raise UsageError(
            f"workflow {name!r}: {', '.join(missing[:3])} holds a password written in a URL, which is not stored "
            f"(it shows as ***), and neither workflows/{name}.yaml nor this project's deploys hold that URL: "
            "deploy the workflow again from its file, or keep the credential in flowstage.yaml"
        )
    return restored


def validate_definition(project: Project, definition: dict[str, Any]) -> tuple[Workflow, dict[str, Any]]:
    """A stored definition (a deployed version) as a `Workflow`, and its plain mapping; the
    passwords written in its URLs are taken back from the workflow's file (`with_credentials`)."""
    definition = with_credentials(project, definition)
    content = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str).encode()
    key = _key(b"definition\0" + content, project)
    kept = _read(project, key)
    if kept is not None:
        return kept
    workflow = Workflow.model_validate(definition)
    plain = workflow.to_dict()
    _write(project, key, workflow, plain)
    return workflow, plain


__all__ = ["has_masked", "load_file", "remember_credentials", "validate_definition", "with_credentials"]
