"""Fuzzing the workflow loader: mutated valid workflows either load or fail with located problems.

Each example starts from one of a few valid workflows (every task kind, stages and a flat graph,
conditions, fan-out, a trigger, alerts, an inline dataflow), applies a handful of mutations at
random places — a key dropped or renamed, a value replaced by a value of another YAML type, a deep
nesting, a huge number, random unicode — and writes it back as YAML or JSON, sometimes with the
text itself cut or spliced. `load_text` must return a `Workflow` or raise `DefinitionError` whose
every problem names the file; anything else is an internal error. A few inputs go through
`flowstage validate` as a user would type it: exit 0 or 2, never a traceback.

Numbers here stay under 4,000 digits and nestings under 200 (writing the mutated document back
would meet Python's own limits first): integers past 4,300 digits and nestings past the reader's
limit of 200 levels are refused at their line, which tests/e2e/test_oversize_input_cli.py checks.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from flowstage.errors import DefinitionError
from flowstage.model import Workflow
from flowstage.model.loader import load, load_text
from tests.fuzz.budget import budget

BASES: list[dict[str, Any]] = [
    {
        "name": "fuzz_stages",
        "description": "every kind",
        "tags": ["a", "b"],
        "variables": {"region": "EU", "n": 3, "items": [1, 2], "nested": {"k": None}},
        "preferences": {"max_parallel": 2, "retries": 1, "retry_delay": "5s", "timeout": "1h", "log_level": "debug"},
        "trigger": {"schedule": "0 * * * *", "timezone": "Europe/Paris", "variables": {"region": "US"}},
        "alerts": [{"on": "failed", "notify": ["ops"]}, {"metric": "runtime_seconds", "op": ">", "value": 10, "notify": ["ops"]}],
        "stages": [
            {
                "name": "one",
                "tasks": [
                    {"name": "a", "shell": "echo {{ var.region }}", "retries": 2, "env": {"X": "{{ var.n }}"}},
                    {"name": "b", "python": "mod:fn", "with": {"n": "{{ var.n }}"}, "save": "out"},
                    {"name": "c", "sql": "SELECT :x", "params": {"x": "{{ var.region }}"}, "save": {"v": "x"}},
                    {"name": "d", "http": {"url": "http://127.0.0.1:1/x", "method": "POST", "json": {"a": 1}, "expect": 200}},
                ],
            },
            {
                "name": "two",
                "tasks": [
                    {"name": "e", "shell": "true", "after": {"a": "failure", "b": "success"}, "when": "any", "if": "var.n > 1"},
                    {"name": "f", "workflow": "child", "variables": {"x": "{{ var.region }}"}},
                    {"name": "g", "shell": "echo {{ task.item }}", "for_each": "{{ var.items }}"},
                    {"name": "h", "wait_for": {"file": "data/*.csv"}, "poke": "1s", "timeout": "10s"},
                    {
                        "name": "i",
                        "dataflow": {
                            "name": "inline",
                            "sources": {"orders": {"file": "data/orders.csv"}},
                            "steps": [{"from": "orders"}, {"filter": "amount > :min"}, {"select": ["id", "amount"]}],
                            "sink": {"file": "out/x.parquet"},
                            "variables": {"min": 0},
                        },
                    },
                ],
            },
        ],
    },
    {
        "name": "fuzz_flat",
        "tasks": [
            {"name": "a", "shell": "true", "instances": 3},
            {"name": "b", "shell": "true", "after": ["a"], "timeout": "30s", "retry_delay": "1s"},
            {"name": "c", "sql": "SELECT 1", "connection": "shop", "after": {"b": "completion"}},
            {"name": "d", "python": "tasks/x.py:f", "in_process": True, "after": {"c": "skipped"}},
        ],
    },
]

KEY_NAMES = [
    "name", "tasks", "stages", "after", "when", "if", "shell", "python", "sql", "http", "with", "save", "variables",
    "preferences", "trigger", "alerts", "timeout", "retries", "schedule", "timezone", "on", "notify", "metric", "env",
    "for_each", "instances", "workflow", "dataflow", "wait_for", "params", "connection", "sources", "steps", "sink",
]  # fmt: skip

TEMPLATES = ["{{ var.x }}", "{{", "}}", "{% if %}", "{{ 1 + }}", "{# c", "{{ var.n * 2 }}", "{{ run.id }}", "{%- raw %}"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**3999), max_value=10**3999)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "on", "off", "yes", "1e309", "-", "~", "null", ".nan", "0x10", "10s", "-5m", "1h", "all", "any"])
    | st.sampled_from(TEMPLATES)
    | st.sampled_from(KEY_NAMES)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8) | st.sampled_from(KEY_NAMES), inner, max_size=3)
    ),
    max_leaves=8,
)


def _nested(depth: int, leaf: Any, as_list: bool) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"k": value}
    return value


mutation = st.one_of(
    st.tuples(st.just("drop")),
    st.tuples(st.just("rename"), st.sampled_from(KEY_NAMES) | st.text(max_size=12)),
    st.tuples(st.just("replace"), values),
    st.tuples(
        st.just("nest"),
        st.integers(min_value=1, max_value=200),
        st.booleans(),
        scalars.filter(lambda v: not (isinstance(v, str) and "{" in v)),
    ),
    st.tuples(st.just("huge"), st.integers(min_value=20, max_value=3999), st.booleans()),
    st.tuples(st.just("unicode"), st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20)),
    st.tuples(st.just("add"), st.sampled_from(KEY_NAMES) | st.text(max_size=8), values),
)


def _containers(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every dict key and list index inside `data`."""
    found: list[tuple[Any, ...]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            found.append((*path, k))
            found.extend(_containers(v, (*path, k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found.append((*path, i))
            found.extend(_containers(v, (*path, i)))
    return found


def _apply(data: Any, path: tuple[Any, ...], op: tuple[Any, ...]) -> Any:
    if not path:
        return data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    kind = op[0]
    if kind == "drop":
        del parent[last]
    elif kind == "rename" and isinstance(parent, dict):
        parent[op[1]] = parent.pop(last)
    elif kind == "replace":
        parent[last] = op[1]
    elif kind == "nest":
        parent[last] = _nested(op[1], op[3], op[2])
    elif kind == "huge":
        digits = int("9" * op[1])
        parent[last] = -digits if op[2] else digits
    elif kind == "unicode":
        if isinstance(parent, dict):
            parent[op[1]] = parent.pop(last)
        else:
            parent[last] = op[1]
    elif kind == "add" and isinstance(parent, dict):
        parent[op[1]] = op[2]
    elif isinstance(parent, list):
        parent[last] = None
    return data


@st.composite
def mutated_workflows(draw: st.DrawFn) -> str:
    data = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _containers(data)
        if not paths:
            break
        data = _apply(data, draw(st.sampled_from(paths)), draw(mutation))
    if draw(st.booleans()):
        try:
            text = json.dumps(data, ensure_ascii=draw(st.booleans()))
        except ValueError:  # floats JSON cannot write
            text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    else:
        text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False, default_flow_style=draw(st.booleans()))
    cut = draw(st.integers(min_value=0, max_value=3))
    if cut == 1:  # the text cut short
        text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
    elif cut == 2:  # a random splice
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = (
            text[:at]
            + draw(
                st.text(max_size=10)
                | st.sampled_from([":", "- ", "\t", "{", "]", "&a", "*a", "!!python/object:os.system", "<<: *a"])
            )
            + text[at:]
        )
    return text


PYDANTIC_WORDS = ("Input should", "String should", "should have at", "after validation", "Value error,")


def assert_loads_or_is_located(text: str, file: str = "fuzz.yaml") -> Workflow | None:
    try:
        workflow = load_text(text, file, notifiers=["ops"])
    except DefinitionError as exc:
        error: DefinitionError = exc
        assert error.problems, "a DefinitionError without problems"
        for problem in error.problems:
            assert problem.message.strip(), problem
            assert str(problem).startswith(file), str(problem)
            assert "Traceback" not in problem.message
            for raw in PYDANTIC_WORDS:  # a file's mistakes are said in its own words, never pydantic's
                assert raw not in problem.message, problem
        return None
    assert isinstance(workflow, Workflow)
    return workflow


def test_every_base_workflow_is_valid() -> None:
    for base in BASES:
        assert assert_loads_or_is_located(yaml.safe_dump(base, sort_keys=False)) is not None


@budget(400)
@given(text=mutated_workflows())
@example(text="name: w\ntasks:\n  - {name: a, shell: 'true', retries: 99999999999999999999999}\n")
@example(text="name: w\ntasks:\n  - {name: a, shell: 'true', timeout: 1e309}\n")
@example(text="name: w\nvariables: {x: " + "[" * 150 + "]" * 150 + "}\ntasks: [{name: a, shell: 'true'}]\n")
@example(text="&a [*a]")
@example(text="name: w\ntasks: [{name: a, shell: !!binary aGk=}]\n")
def test_mutated_workflows_load_or_fail_with_located_problems(text: str) -> None:
    assert_loads_or_is_located(text)


@budget(150)
@given(
    text=st.text(st.characters(exclude_categories=["Cs"]), max_size=200),
    key=st.sampled_from(["name", "description", "shell", "variables", "tags"]),
)
def test_random_unicode_in_any_place_loads_or_fails_with_located_problems(text: str, key: str) -> None:
    data = copy.deepcopy(BASES[1])
    if key == "shell":
        data["tasks"][0]["shell"] = text
    elif key == "variables":
        data["variables"] = {text: text}
    elif key == "tags":
        data["tags"] = [text]
    else:
        data[key] = text
    assert_loads_or_is_located(yaml.safe_dump(data, allow_unicode=True))
    assert_loads_or_is_located(json.dumps(data, ensure_ascii=False))


@budget(60)
@given(junk=st.binary(min_size=1, max_size=40), at=st.integers(min_value=0, max_value=200))
def test_a_file_with_bytes_that_are_not_utf8_is_a_located_problem(tmp_path_factory: Any, junk: bytes, at: int) -> None:
    text = yaml.safe_dump(BASES[1], sort_keys=False).encode()
    data = text[:at] + junk + text[at:]
    path = tmp_path_factory.mktemp("bytes") / "w.yaml"
    path.write_bytes(data)
    try:
        workflow = load(path)
    except DefinitionError as exc:
        error: DefinitionError = exc
        assert error.problems
        for problem in error.problems:
            assert str(problem).startswith(str(path)), str(problem)
    else:
        assert isinstance(workflow, Workflow)


CLI_CASES = {
    "valid": yaml.safe_dump(BASES[1], sort_keys=False).encode(),
    "not_utf8": b"name: w\ntasks:\n  - {name: a, shell: '\xff\xfe echo'}\n",
    "utf16": "name: w\ntasks: [{name: a, shell: 'true'}]\n".encode("utf-16"),
    "nul_bytes": b"name: w\x00\ntasks: []\n",
    "huge_number": b"name: w\ntasks: [{name: a, shell: 'true', retries: " + b"9" * 3000 + b"}]\n",
    "deep_nesting": b"name: w\nvariables: {x: " + b"[" * 180 + b"]" * 180 + b"}\ntasks: [{name: a, shell: 'true'}]\n",
    "bad_template": b"name: w\ntasks: [{name: a, shell: 'echo {{ var.x + }}'}]\n",
    "python_tag": b"name: !!python/object/apply:os.system ['touch pwned']\ntasks: []\n",
    "alias_bomb": b"a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]\nname: w\n",
    "random_unicode": "name: \u202e\u0000\U0001f4a5\ntasks: [{name: \u00e9, shell: '\U0010ffff'}]\n".encode(),
}


def _validate(tmp_path: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstage", "validate", *map(str, paths)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate_through_the_cli_exits_0_or_2_without_a_traceback(tmp_path: Path) -> None:
    # variables may nest deep: they are data, not a program
    valid = {"valid", "deep_nesting"}
    paths = {}
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "x.py").write_text("def f():\n    return None\n")  # what the valid workflow names
    (tmp_path / "flowstage.yaml").write_text("connections:\n  shop: sqlite:///shop.db\n")
    for case, data in CLI_CASES.items():
        paths[case] = tmp_path / f"{case}.yaml"
        paths[case].write_bytes(data)
    good = _validate(tmp_path, *(p for c, p in paths.items() if c in valid))
    bad = _validate(tmp_path, *(p for c, p in paths.items() if c not in valid))

    assert good.returncode == 0, good
    assert bad.returncode == 2, bad
    for done in (good, bad):
        output = done.stdout + done.stderr
        assert "Traceback" not in output, output
        assert "internal error" not in output, output
    for case, path in paths.items():
        if case not in valid:
            assert f"{path.name}:" in bad.stderr, (case, bad.stderr)
    assert not (tmp_path / "pwned").exists()
