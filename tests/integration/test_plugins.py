"""One registry per extension point: built-ins by name, plug-ins through entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flowstage.app.registry import EXECUTORS, NOTIFIERS, executor_for
from flowstage.data.engine import ENGINES, engine_for
from flowstage.errors import DefinitionError
from flowstage.model.loader import load_text
from flowstage.plugins import Registry
from flowstage.settings import load_project
from flowstage.tasks import TASK_KINDS, runner_for


def test_built_ins_are_imported_by_name_on_first_use() -> None:
    assert "local" in EXECUTORS.names()
    assert "duckdb" in ENGINES.names()
    assert {"python", "shell", "sql", "http", "wait_for", "dataflow", "crawl"} <= set(TASK_KINDS.names())
    assert type(engine_for("duckdb")).__name__ == "DuckDBEngine"
    assert callable(runner_for("shell"))


def test_an_unknown_name_is_refused_naming_what_is_available(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match=r"no notifier 'pager'; available: command, email, slack, webhook"):
        NOTIFIERS.get("pager")
    with pytest.raises(DefinitionError, match=r"dataflow engine 'flink' is not available here .*available: duckdb, spark"):
        engine_for("flink")
    (tmp_path / "flowstage.yaml").write_text("{}\n")
    project = load_project(root=tmp_path)
    workflow = load_text("name: w\ntasks: [{name: a, shell: 'true'}]\n", "w.yaml")
    with pytest.raises(DefinitionError, match=r"executor 'ray://127.0.0.1:10001' is not available .*available: dask, local"):
        executor_for(project, workflow, "ray://127.0.0.1:10001")


def test_a_plugin_registers_through_its_entry_point_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "flowstage_demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flowstage-demo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[flowstage.demo]\nhello = flowstage_demo_plugin:make\n")
    (tmp_path / "flowstage_demo_plugin.py").write_text(textwrap.dedent("def make():\n    return 'made by a plug-in'\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("flowstage.demo", {"builtin": "os.path:join"}, what="demo")
    assert registry.names() == ["builtin", "hello"]
    assert registry.get("hello")() == "made by a plug-in"
    assert registry.get("builtin") is sys.modules["os.path"].join


def test_an_executor_registered_in_process_runs_a_workflow(tmp_path: Path) -> None:
    from flowstage.app.runs import open_store, start_run
    from flowstage.executors.local import LocalExecutor
    from flowstage.tasks import RunResources

    made: list[str] = []

    def factory(url: str, *, project: Any, workflow: Any) -> LocalExecutor:
        made.append(url)
        return LocalExecutor(RunResources.for_project(project), max_workers=2)

    EXECUTORS.register("inline", factory)
    (tmp_path / "flowstage.yaml").write_text("{}\n")
    project = load_project(root=tmp_path)
    store = open_store(project)
    try:
        workflow = load_text("name: w\ntasks: [{name: a, shell: 'true'}]\n", "w.yaml")
        run = start_run(project, workflow, store=store, executor="inline://anywhere")
    finally:
        store.close()
    assert run.status == "succeeded"
    assert made == ["inline://anywhere"]
