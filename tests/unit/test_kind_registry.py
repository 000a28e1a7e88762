"""The registry of task kinds loads each built-in kind's spec model on its first use and knows its keys without loading."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flowstage.model.kinds import BUILTIN_FIELDS, BUILTIN_SPECS, KindSpec, builtin_kinds, kind_spec


def test_the_static_lists_match_the_spec_models() -> None:
    kinds = builtin_kinds()
    assert set(kinds) == set(BUILTIN_SPECS)
    fields = {name for spec in kinds.values() for name in spec.model_fields} - set(kinds)
    assert fields == BUILTIN_FIELDS  # a field added to a spec must be named in BUILTIN_FIELDS


@pytest.mark.parametrize("key", sorted(BUILTIN_SPECS))
def test_each_kind_key_finds_a_spec_of_that_kind(key: str) -> None:
    spec = kind_spec(key)
    assert spec is not None
    assert issubclass(spec, KindSpec)
    assert key in getattr(spec, "keys", (spec.kind,))
    module, _, name = BUILTIN_SPECS[key].partition(":")
    assert (spec.__module__, spec.__name__) == (f"flowstage.model.kinds.{module}", name)


@pytest.mark.parametrize("key", sorted(BUILTIN_FIELDS | {"_private", "name"}))
def test_a_key_that_is_no_kind_finds_none(key: str) -> None:
    assert kind_spec(key) is None


def test_a_python_task_loads_no_other_kind_and_no_dataflow_model() -> None:
    probe = (
        "import json, sys; from flowstage.model.workflow import Task; "
        "Task(name='t', python='m:f'); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('flowstage.model.'))))"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(shown)
    assert "flowstage.model.kinds.python" in loaded
    modules = {target.partition(":")[0] for target in BUILTIN_SPECS.values()}
    others = {f"flowstage.model.kinds.{m}" for m in modules - {"python"}}
    assert not others & set(loaded)
    assert "flowstage.model.dataflow" not in loaded
