"""A deployed version's files: runs of that version use them, not the files as they are today.

`deploy` keeps the SQL, python and package files a workflow's tasks name with each version.
When a run of a deployed version starts, those files are written once under
``.flowstage/code/<hash>/`` (content-addressed: every run of the version shares them) and the
workflow's task specs are pointed at them, so a rolled-back, scheduled or resumed run reads the
SQL and code it was deployed with. The run records which version and file hashes ran.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from flowstage.model.workflow import Workflow


class PinnedCode(Struct, frozen=True):
    """The workflow with its task specs pointed at the version's files, and what those files are."""

    workflow: Workflow
    version: int | None
    #: path relative to the project root -> "sha256:<hex>"
    files: dict[str, str] = field(default_factory=dict)
    folder: str | None = None

    def record(self) -> dict[str, Any]:
        return {"version": self.version, "files": dict(self.files), "folder": self.folder}


def file_hashes(files: Mapping[str, str]) -> dict[str, str]:
    return {path: "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest() for path, text in sorted(files.items())}


def _materialize(state_dir: Path, files: Mapping[str, str]) -> Path:
    """The version's files under a folder named by their hash (written once, atomically)."""
    digest = hashlib.sha256(json.dumps(sorted(files.items())).encode("utf-8")).hexdigest()[:24]
    folder = state_dir / "code" / digest
    if (folder / ".complete").exists():
        return folder
    for rel, text in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    (folder / ".complete").write_text("", encoding="utf-8")
    return folder


def _point(value: Any, files: Mapping[str, str], folder: Path) -> Any:
    """`value` with every string that names a kept file pointed at its copy in `folder`."""
    if isinstance(value, str):
        path, sep, func = value.rpartition(":") if ".py:" in value else (value, "", "")
        rel = Path(path).as_posix().removeprefix("./")
        if rel in files:
            return str(folder / rel) + (sep + func if sep else "")
        return value
    if isinstance(value, dict):
        return {k: _point(v, files, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_point(v, files, folder) for v in value]
    return value


def pin(workflow: Workflow, version: int | None, files: Mapping[str, str], state_dir: Path) -> PinnedCode:
    """`workflow` reading the kept `files` of its deployed `version` (unchanged without files)."""
    if not files:
        return PinnedCode(workflow, version)
    folder = _materialize(state_dir, files)
    data = workflow.to_dict()
    for stage in data.get("stages") or [{"tasks": data.get("tasks") or []}]:
        for task in stage.get("tasks") or []:
            for key in ("sql_file", "python", "dataflow", "spark"):
                if key in task:
                    task[key] = _point(task[key], files, folder)
    return PinnedCode(Workflow.model_validate(data), version, file_hashes(files), str(folder))


__all__ = ["PinnedCode", "file_hashes", "pin"]
