"""The public Python API is what `flowstage/__init__.py` exports, and it works as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowstage import Stage, Task, Workflow, load, run
from flowstage.errors import DefinitionError


def test_workflow_built_in_python_round_trips_through_yaml(tmp_path: Path) -> None:
    wf = Workflow(
        name="built",
        variables={"n": 3, "on": "yes"},
        stages=[
            Stage(name="a", tasks=[Task(name="one", shell="echo 1"), Task(name="two", python="m:f", with_={"x": 1})]),
            Stage(name="b", tasks=[Task(name="three", after={"one": "failure"}, shell="echo 3", timeout="1m30s")]),
        ],
    )
    path = tmp_path / "built.yaml"
    path.write_text(wf.to_yaml())
    assert load(path) == wf


def test_run_returns_the_run_record(tmp_path: Path) -> None:
    (tmp_path / "flowstage.yaml").write_text("{}\n")
    wf = Workflow(
        name="hello",
        variables={"who": "nobody"},
        tasks=[Task(name="hi", shell="echo hello {{ var.who }}"), Task(name="bye", after=["hi"], shell="exit 3")],
    )
    record = run(wf, variables={"who": "world"}, project=tmp_path)
    assert record["status"] == "failed"
    assert record["variables"] == {"who": "world"}
    by_name = {t["name"]: t for t in record["tasks"]}
    assert by_name["hi"]["status"] == "succeeded"
    assert by_name["bye"]["error"] == "command exited with code 3"
    assert (tmp_path / ".flowstage" / "flowstage.db").is_file()


def test_run_refuses_an_invalid_graph(tmp_path: Path) -> None:
    wf = Workflow(name="bad", tasks=[Task(name="a", after=["missing"], shell="true")])
    with pytest.raises(DefinitionError, match="unknown task 'missing'"):
        run(wf, project=tmp_path)
