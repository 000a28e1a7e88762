"""The graph as the web UI draws it: stages as bands, the stage default drawn once, explicit edges
with their condition, `any` marked, flat graphs by depth, big graphs collapsed with counts."""

from __future__ import annotations

from typing import Any

import pytest

from flowstage.engine.plan import compile_plan
from flowstage.model.loader import load_text
from flowstage.views.layout import elements

STAGED = """
name: staged
stages:
  - name: extract
    tasks:
      - {name: a, shell: "true"}
      - {name: b, shell: "true"}
  - name: load
    tasks:
      - {name: c, shell: "true"}
      - {name: d, shell: "true", instances: 3}
  - name: finish
    tasks:
      - {name: catch, shell: "true", after: {c: failure, d: failure}, when: any}
"""

FLAT = """
name: flat
tasks:
  - {name: root, shell: "true"}
  - {name: left, shell: "true", after: [root]}
  - {name: right, shell: "true", after: {root: completion}}
  - {name: tail, shell: "true", after: [left, right]}
"""


def _graph(text: str, **kw: Any) -> dict[str, Any]:
    return elements(compile_plan(load_text(text.lstrip(), "w.yaml")), **kw)


def _nodes(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["data"]["id"]: n for n in graph["nodes"]}


def _edges(graph: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["data"]["source"], e["data"]["target"], e["data"]["condition"]) for e in graph["edges"]}


def test_stages_are_bands_and_their_default_dependency_is_one_edge_band_to_band() -> None:
    graph = _graph(STAGED)
    nodes = _nodes(graph)
    assert graph["collapsed"] is False
    assert [nodes[f"stage:{i}"]["data"]["label"] for i in range(3)] == ["extract", "load", "finish"]
    assert {n: nodes[n]["data"]["parent"] for n in "abcd"} == {"a": "stage:0", "b": "stage:0", "c": "stage:1", "d": "stage:1"}
    # never every task of extract to every task of load: one edge, band to band
    assert _edges(graph) == {("stage:0", "stage:1", "passed"), ("c", "catch", "failure"), ("d", "catch", "failure")}
    assert nodes["catch"]["data"]["any"] is True
    assert "any" in nodes["catch"]["classes"]
    assert nodes["d"]["data"]["copies"] == 3
    assert nodes["a"]["position"]["x"] < nodes["c"]["position"]["x"] < nodes["catch"]["position"]["x"]
    assert nodes["a"]["position"]["y"] != nodes["b"]["position"]["y"]
    assert "status" not in nodes["a"]["data"]  # the static view


def test_the_dynamic_view_colours_each_task_and_counts_a_fanned_out_task_by_its_copies() -> None:
    graph = _graph(STAGED, statuses={"a": "succeeded", "d": "running"}, copies={"d": {"succeeded": 2, "running": 1}})
    nodes = _nodes(graph)
    assert nodes["a"]["data"]["status"] == "succeeded"
    assert "succeeded" in nodes["a"]["classes"].split()
    assert nodes["b"]["data"]["status"] == "pending"
    assert nodes["d"]["data"]["counts"] == {"running": 1, "succeeded": 2}


def test_a_flat_graph_is_laid_out_by_depth_with_each_edge_and_its_condition() -> None:
    graph = _graph(FLAT)
    nodes = _nodes(graph)
    assert not any(n.startswith("stage:") for n in nodes)
    xs = {n: nodes[n]["position"]["x"] for n in ("root", "left", "right", "tail")}
    assert xs["root"] < xs["left"] == xs["right"] < xs["tail"]
    assert _edges(graph) == {
        ("root", "left", "success"),
        ("root", "right", "completion"),
        ("left", "tail", "success"),
        ("right", "tail", "success"),
    }


@pytest.mark.parametrize(("collapse_at", "collapsed"), [(5, False), (4, True)])
def test_past_the_threshold_a_graph_collapses_to_one_node_per_stage_with_counts(collapse_at: int, collapsed: bool) -> None:
    graph = _graph(STAGED, statuses={"a": "failed", "b": "succeeded", "c": "running"}, collapse_at=collapse_at)
    assert graph["collapsed"] is collapsed
    if not collapsed:
        return
    nodes = _nodes(graph)
    assert set(nodes) == {"stage:0", "stage:1", "stage:2"}
    assert nodes["stage:0"]["data"]["counts"] == {"failed": 1, "succeeded": 1}
    assert nodes["stage:0"]["data"]["status"] == "failed"  # trouble shows first
    assert nodes["stage:1"]["data"]["status"] == "running"
    assert nodes["stage:1"]["data"]["tasks"] == 2
    assert _edges(graph) == {("stage:0", "stage:1", "passed"), ("stage:1", "stage:2", "passed")}


def test_a_thousand_tasks_collapse_to_their_ten_stages() -> None:
    text = "name: big\nstages:\n" + "".join(
        f"  - name: s{s}\n    tasks:\n" + "".join(f"      - {{name: t{s}_{i}, shell: 'true'}}\n" for i in range(100))
        for s in range(10)
    )
    graph = _graph(text)
    assert graph["collapsed"] is True
    assert len(graph["nodes"]) == 10
    assert len(graph["edges"]) == 9
