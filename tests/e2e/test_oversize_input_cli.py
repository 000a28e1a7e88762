"""Workflow files past what Python can hold or walk: refused at their line as invalid input (exit 2).

An integer of more than 4,300 digits (Python's int-to-text limit) and a nesting deeper than the
reader's limit (every later step walks the document recursively) once ended in an internal error
(exit 3). Both are now bad input, in YAML and in JSON, through `validate` and `run FILE` alike (`run` is
checked on one case of each format: it reads through the same reader).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import Project

BIG = "1" * 5000
DEEP = 950


def _yaml(variables: str, retries: str = "0") -> str:
    return f"name: wf\nvariables:\n  a: {variables}\ntasks:\n  - name: t\n    retries: {retries}\n    shell: echo hi\n"


def _json(variables: str, retries: str = "0") -> str:
    return (
        '{"name": "wf", "variables": {"a": ' + variables + "},\n"
        ' "tasks": [{"name": "t", "retries": ' + retries + ', "shell": "echo hi"}]}'
    )


TEMPLATE = '"{{ var.x }}"'
CASES = [
    pytest.param(
        "wf.yaml", _yaml("1", retries=BIG), r"6:14: tasks\[0\]\.retries: number too long \(over 4300 digits\)", id="yaml-retries"
    ),
    pytest.param("wf.yaml", _yaml(BIG), r"3:6: variables\.a: number too long \(over 4300 digits\)", id="yaml-variable"),
    pytest.param("wf.yaml", _yaml("0x" + "f" * 5000), r"3:6: variables\.a: number too long \(over 4300 digits\)", id="yaml-hex"),
    pytest.param(
        "wf.json", _json("1", retries=BIG), r"2:37: tasks\[0\]\.retries: number too long \(over 4300 digits\)", id="json-retries"
    ),
    pytest.param(
        "wf.json", _json(f"[{BIG}]"), r"1:36: variables\.a\[0\]: number too long \(over 4300 digits\)", id="json-variable"
    ),
    pytest.param(
        "wf.yaml", _yaml("[" * DEEP + TEMPLATE + "]" * DEEP), r"3:\d+: nested too deeply \(over 200 levels\)", id="yaml-deep-list"
    ),
    pytest.param(
        "wf.yaml",
        _yaml("{k: " * DEEP + TEMPLATE + "}" * DEEP),
        r"3:\d+: nested too deeply \(over 200 levels\)",
        id="yaml-deep-map",
    ),
    pytest.param(
        "wf.json", _json("[" * DEEP + TEMPLATE + "]" * DEEP), r"1:\d+: nested too deeply \(over 200 levels\)", id="json-deep-list"
    ),
    pytest.param(
        "wf.json",
        _json('{"k": ' * DEEP + TEMPLATE + "}" * DEEP),
        r"1:\d+: nested too deeply \(over 200 levels\)",
        id="json-deep-map",
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), CASES)
def test_a_file_past_the_limits_is_invalid_input_at_its_line(project: Project, name: str, text: str, expected: str) -> None:
    path = f"workflows/{name}"
    (project.root / "workflows").mkdir(exist_ok=True)
    (project.root / path).write_text(text, encoding="utf-8")

    # `run FILE` reads through the same reader as `validate`: one case of each format goes both ways
    commands = ("validate", "run") if expected.startswith(("6:14", "2:37")) else ("validate",)
    for command in commands:
        result = project.cli(command, path)

        assert result.code == 2, result
        assert "Traceback" not in result.err, result.err
        assert "internal error" not in result.err, result.err
        assert re.fullmatch(re.escape(path) + ":" + expected, result.err.strip()), result.err[:500]


def test_a_file_just_under_the_limits_runs(project: Project) -> None:
    nested = "[" * 190 + TEMPLATE + ", " + "1" * 4000 + "]" * 190
    text = _json(nested).replace('"shell": "echo hi"', '"shell": "echo {{ var.a | length }}"')
    (project.root / "workflows").mkdir(exist_ok=True)
    (project.root / "workflows/wf.json").write_text(text, encoding="utf-8")

    result = project.cli("run", "workflows/wf.json", "--var", "x=1", "--json")

    assert result.code == 0, result
    assert json.loads(result.out)["status"] == "succeeded"
