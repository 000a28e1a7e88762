"""The public Python API is exactly what `flowstage/__init__.py` exports (STYLE: httpx's test of `__all__`).

A name added to or dropped from `__all__` is a change of the public API: this list changes with it,
on purpose. Each name is importable from `flowstage`, and the lazy ones resolve to the real objects.
"""

from __future__ import annotations

import subprocess
import sys

import flowstage

PUBLIC = ["DefinitionError", "FlowstageError", "Stage", "Task", "Workflow", "load", "run", "save"]


def test_all_is_exactly_the_public_names() -> None:
    assert sorted(flowstage.__all__) == PUBLIC


def test_every_public_name_is_importable_from_flowstage() -> None:
    for name in PUBLIC:
        exec(f"from flowstage import {name}", {})  # the import statement a user writes
        assert getattr(flowstage, name) is not None
    from flowstage.model.loader import load
    from flowstage.model.roundtrip import save
    from flowstage.model.workflow import Stage, Task, Workflow

    assert (flowstage.Workflow, flowstage.Stage, flowstage.Task) == (Workflow, Stage, Task)
    assert (flowstage.load, flowstage.save) == (load, save)
    assert set(PUBLIC) <= set(dir(flowstage))


def test_importing_flowstage_imports_neither_pydantic_nor_yaml() -> None:
    probe = "import sys, flowstage; print(sorted(m for m in ('pydantic', 'yaml', 'ruamel.yaml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
