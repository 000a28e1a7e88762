"""The name of a kept definition changes with any file of the model, those of its sub-folders too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowstage.app import definitions


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "model"
    (folder / "kinds" / "__pycache__").mkdir(parents=True)
    (folder / "workflow.py").write_text("x = 1\n")
    (folder / "kinds" / "shell.py").write_text("y = 1\n")
    (folder / "kinds" / "__pycache__" / "shell.cpython-311.pyc").write_bytes(b"\0")
    monkeypatch.setattr(definitions, "_MODEL_DIR", folder)
    return folder


def _key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setattr(definitions, "_code_key", None)  # computed once per process otherwise
    return definitions._code_fingerprint()


@pytest.mark.parametrize("changed", ["workflow.py", "kinds/shell.py", "kinds/new.py"])
def test_a_changed_or_added_model_file_changes_the_key(model_dir: Path, monkeypatch: pytest.MonkeyPatch, changed: str) -> None:
    before = _key(monkeypatch)
    path = model_dir / changed
    path.write_text("changed = True\n")
    os.utime(path, ns=(1, 1))  # another mtime, whatever the clock's resolution
    assert _key(monkeypatch) != before


def test_compiled_files_do_not_change_the_key(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _key(monkeypatch)
    (model_dir / "kinds" / "__pycache__" / "shell.cpython-311.pyc").write_bytes(b"\0\0")
    assert _key(monkeypatch) == before
