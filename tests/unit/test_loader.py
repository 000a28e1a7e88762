"""Loading workflow files: every problem at ``file:line:col``, YAML 1.2, lossless round trips, fuzzing (SPEC §2, §5.4, §8)."""

from __future__ import annotations

import itertools
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowstage.errors import DefinitionError
from flowstage.model import Alert, Condition, Preferences, Stage, Task, Trigger, When, Workflow, templates
from flowstage.model.loader import check_graph, find_cycle, load, load_text
from flowstage.model.yamlsource import dump, parse, resolve_scalar


def doc(text: str) -> str:
    return textwrap.dedent(text)


# (id, text, line, column, what the message says)
ERRORS: list[tuple[str, str, int, int, str]] = [
    (
        "unknown top-level key",
        doc("""\
            name: w
            tasks:
              - {name: a, shell: "true"}
            stagez: []
            """),
        4,
        1,
        "unknown key 'stagez' (did you mean 'stages'?)",
    ),
    (
        "unknown task key",
        doc("""\
            name: w
            tasks:
              - name: a
                shell: "true"
                retires: 2
            """),
        5,
        5,
        "unknown key 'retires' for a shell task (did you mean 'retries'?)",
    ),
    (
        "unknown preference",
        doc("""\
            name: w
            preferences:
              max_paralel: 3
            tasks:
              - {name: a, shell: "true"}
            """),
        3,
        3,
        "unknown key 'max_paralel' (did you mean 'max_parallel'?)",
    ),
    (
        "unknown key in a stage",
        doc("""\
            name: w
            stages:
              - name: s
                tasks: [{name: a, shell: "true"}]
                descripton: x
            """),
        5,
        5,
        "unknown key 'descripton' (did you mean 'description'?)",
    ),
    (
        "duplicate task names",
        doc("""\
            name: w
            tasks:
              - name: a
                shell: "true"
              - name: a
                shell: "true"
            """),
        5,
        5,
        "duplicate task name 'a'",
    ),
    (
        "duplicate task names across stages",
        doc("""\
            name: w
            stages:
              - name: one
                tasks: [{name: a, shell: "true"}]
              - name: two
                tasks:
                  - name: a
                    shell: "true"
            """),
        7,
        9,
        "duplicate task name 'a'",
    ),
    (
        "duplicate stage names",
        doc("""\
            name: w
            stages:
              - name: one
                tasks: [{name: a, shell: "true"}]
              - name: one
                tasks: [{name: b, shell: "true"}]
            """),
        5,
        5,
        "duplicate stage name 'one'",
    ),
    (
        "unknown task in after",
        doc("""\
            name: w
            tasks:
              - {name: extract, shell: "true"}
              - name: load
                shell: "true"
                after:
                  extrct: success
            """),
        7,
        7,
        "unknown task 'extrct' in after (did you mean 'extract'?)",
    ),
    (
        "after names a task of the same stage",
        doc("""\
            name: w
            stages:
              - name: s
                tasks:
                  - {name: a, shell: "true"}
                  - name: b
                    shell: "true"
                    after: a
            """),
        8,
        9,
        "'a' is in the same stage; after: may only name tasks of earlier stages",
    ),
    (
        "after names a task of a later stage",
        doc("""\
            name: w
            stages:
              - name: one
                tasks:
                  - name: a
                    shell: "true"
                    after: {b: success}
              - name: two
                tasks: [{name: b, shell: "true"}]
            """),
        7,
        17,
        "'b' is in a later stage ('two'); after: may only name tasks of earlier stages",
    ),
    (
        "after names the task itself",
        doc("""\
            name: w
            tasks:
              - name: a
                shell: "true"
                after: {a: success}
            """),
        5,
        13,
        "task 'a' cannot come after itself",
    ),
    (
        "cycle in a flat graph",
        doc("""\
            name: w
            tasks:
              - {name: start, shell: "true"}
              - name: a
                shell: "true"
                after: [start, c]
              - {name: b, shell: "true", after: a}
              - {name: c, shell: "true", after: b}
            """),
        6,
        5,
        "cycle: a -> b -> c -> a",
    ),
    (
        "a task with no kind",
        doc("""\
            name: w
            tasks:
              - name: a
                retries: 1
            """),
        3,
        5,
        "a task needs exactly one kind key: one of ",
    ),
    (
        "a task with two kinds",
        doc("""\
            name: w
            tasks:
              - name: a
                shell: "true"
                python: mod:fn
            """),
        5,
        5,
        "two kinds in one task: shell and python; a task has exactly one kind",
    ),
    (
        "bad task duration",
        doc("""\
            name: w
            tasks:
              - name: a
                shell: "true"
                timeout: soon
            """),
        5,
        5,
        "tasks[0].timeout: not a duration: 'soon'",
    ),
    (
        "bad preference duration",
        doc("""\
            name: w
            preferences:
              retry_delay: 5x
            tasks:
              - {name: a, shell: "true"}
            """),
        3,
        3,
        "preferences.retry_delay: not a duration: '5x'",
    ),
    (
        "infinite duration",
        doc("""\
            name: w
            preferences:
              run_timeout: .inf
            tasks:
              - {name: a, shell: "true"}
            """),
        3,
        3,
        "preferences.run_timeout: not a duration: inf",
    ),
    (
        "bad cron",
        doc("""\
            name: w
            trigger:
              schedule: "61 * * * *"
            tasks:
              - {name: a, shell: "true"}
            """),
        3,
        3,
        'trigger.schedule: "61 * * * *" is not a cron expression: minute 61 is out of range 0-59',
    ),
    (
        "cron with the wrong number of fields",
        doc("""\
            name: w
            trigger:
              schedule: "* * *"
            tasks:
              - {name: a, shell: "true"}
            """),
        3,
        3,
        'trigger.schedule: "* * *" is not a cron expression: it has 3 fields; a cron expression has 5 fields',
    ),
    (
        "bad time zone",
        doc("""\
            name: w
            trigger:
              schedule: "0 * * * *"
              timezone: Mars/Olympus
            tasks:
              - {name: a, shell: "true"}
            """),
        4,
        3,
        "trigger.timezone: unknown time zone 'Mars/Olympus'",
    ),
    (
        "bad template in a shell command",
        doc("""\
            name: w
            tasks:
              - name: a
                shell: echo {{ var.x
            """),
        4,
        5,
        "template syntax error",
    ),
    (
        "bad template inside with",
        doc("""\
            name: w
            tasks:
              - name: a
                python: mod:fn
                with:
                  x: "{{ var.x }"
            """),
        6,
        7,
        "template syntax error",
    ),
    (
        "bad if expression",
        doc("""\
            name: w
            tasks:
              - name: a
                shell: "true"
                if: var.x >
            """),
        5,
        5,
        "invalid expression 'var.x >'",
    ),
    (
        "stages and tasks both present",
        doc("""\
            name: w
            tasks:
              - {name: a, shell: "true"}
            stages:
              - name: s
                tasks: [{name: b, shell: "true"}]
            """),
        1,
        1,
        "a workflow has either `stages:` or `tasks:`, not both",
    ),
    (
        "neither stages nor tasks",
        "name: w\n",
        1,
        1,
        "a workflow has either `stages:` or `tasks:`",
    ),
    (
        "invalid YAML",
        doc("""\
            name: w
            tasks:
              - name: a
               shell: "true"
            """),
        4,
        4,
        "invalid YAML",
    ),
    (
        "unclosed flow sequence",
        doc("""\
            name: w
            tasks: [
              {name: a, shell: "true"}
            """),
        2,
        8,  # where the unclosed `[` opened, not the end of the file
        "invalid YAML",
    ),
    (
        "duplicate YAML key",
        doc("""\
            name: w
            tasks:
              - name: a
                shell: "true"
                shell: "false"
            """),
        5,
        5,
        "duplicate key 'shell'",
    ),
    ("a list document", "- name: w\n- tasks: []\n", 1, 1, "a workflow file is a mapping"),
    ("a scalar document", "just text\n", 1, 1, "a workflow file is a mapping"),
    ("an empty document", "", 1, 1, "a workflow file is a mapping"),
    (
        "missing name",
        doc("""\
            tasks:
              - {name: a, shell: "true"}
            """),
        1,
        1,
        "missing required key 'name'",
    ),
    (
        "unknown condition",
        doc("""\
            name: w
            tasks:
              - {name: a, shell: "true"}
              - name: b
                shell: "true"
                after: {a: sucess}
            """),
        6,
        13,
        "tasks[1].after.a: \"sucess\" is not one of success, failure, completion, skipped (did you mean 'success'?)",
    ),
    (
        "unknown when",
        doc("""\
            name: w
            tasks:
              - name: a
                shell: "true"
                when: some
            """),
        5,
        5,
        'tasks[0].when: "some" is not one of all, any',
    ),
    (
        "unsupported YAML tag",
        doc("""\
            name: w
            tasks:
              - name: a
                shell: !!python/object:os.system "true"
            """),
        4,
        12,
        "unsupported tag",
    ),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_validation_error_points_at_file_line_and_column(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        load_text(text, "flows/wf.yaml")
    problems = info.value.problems
    assert len(problems) == 1, str(info.value)
    assert str(info.value).startswith(f"flows/wf.yaml:{line}:{column}: ")
    assert message in str(info.value)
    assert (problems[0].file, problems[0].line, problems[0].column) == ("flows/wf.yaml", line, column)


def test_every_problem_of_a_file_is_reported_each_on_its_line() -> None:
    text = doc("""\
        name: w
        tasks:
          - {name: a, shell: "true"}
          - {name: a, shell: "true"}
          - {name: b, shell: "true", after: nope}
          - {name: c, shell: "echo {{ x"}
        """)
    with pytest.raises(DefinitionError) as info:
        load_text(text, "wf.yaml")
    lines = str(info.value).splitlines()
    assert [ln.split(":")[1] for ln in lines] == ["4", "5", "6"]
    assert all(re.match(r"^wf\.yaml:\d+:\d+: \S", ln) for ln in lines)


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": [], "b": ["a"]}, None),
        ({"a": ["a"]}, ["a", "a"]),
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        ({"a": ["c"], "b": ["a"], "c": ["b"]}, ["a", "b", "c", "a"]),
        ({"a": ["unknown"]}, None),
        ({"x": [], "a": ["x", "b"], "b": ["a"], "d": ["x"]}, ["a", "b", "a"]),
    ],
)
def test_find_cycle_returns_one_cycle_as_a_path(graph: dict[str, list[str]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


@settings(max_examples=200, deadline=None, database=None)
@given(
    edges=st.dictionaries(st.sampled_from("abcdefg"), st.lists(st.sampled_from("abcdefg"), max_size=4, unique=True), min_size=1)
)
def test_find_cycle_finds_a_cycle_exactly_when_there_is_one(edges: dict[str, list[str]]) -> None:
    cycle = find_cycle(edges)
    # a topological order exists exactly when there is no cycle
    order: list[str] = []
    left = {n: [p for p in ps if p in edges] for n, ps in edges.items()}
    while True:
        free = [n for n, ps in left.items() if all(p in order for p in ps)]
        if not free:
            break
        order.extend(free)
        for n in free:
            del left[n]
    assert (cycle is None) == (not left)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        for node, pred in zip(cycle[1:], cycle, strict=False):
            assert pred in edges[node]


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]]]:
    """Task names in file order and each task's predecessors: acyclic (edges follow a hidden order)."""
    n = draw(st.integers(min_value=2, max_value=12))
    rank = draw(st.permutations(range(n)))  # the topological order, unrelated to the file order
    names = [f"t{i}" for i in range(n)]
    preds: dict[str, list[str]] = {}
    for i in range(n):
        earlier = [names[j] for j in range(n) if rank[j] < rank[i]]
        preds[names[i]] = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
    return names, preds


def flat_workflow(names: list[str], preds: dict[str, list[str]]) -> str:
    """One task a line: task i is on line i + 3."""
    lines = ["name: w", "tasks:"]
    lines += [f'  - {{name: {n}, shell: "true", after: [{", ".join(preds[n])}]}}' for n in names]
    return "\n".join(lines) + "\n"


def reachable(preds: dict[str, list[str]], start: str) -> set[str]:
    """The tasks that come after `start`, directly or not."""
    succ: dict[str, list[str]] = {n: [] for n in preds}
    for n, ps in preds.items():
        for p in ps:
            succ[p].append(n)
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in succ[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@settings(max_examples=150, deadline=None, database=None)
@given(graph=dags(), data=st.data())
def test_a_random_dag_never_reports_a_cycle_and_a_back_edge_always_does(
    graph: tuple[list[str], dict[str, list[str]]], data: st.DataObject
) -> None:
    names, preds = graph
    assert load_text(flat_workflow(names, preds), "wf.yaml").name == "w"
    starts = [n for n in names if reachable(preds, n)]
    if not starts:
        return  # no edge to turn back
    start = data.draw(st.sampled_from(starts))
    end = data.draw(st.sampled_from(sorted(reachable(preds, start))))
    back = {**preds, start: [*preds[start], end]}  # `start` after a task that comes after it
    with pytest.raises(DefinitionError) as info:
        load_text(flat_workflow(names, back), "wf.yaml")
    [problem] = info.value.problems
    assert problem.message.startswith("cycle: ")
    cycle = problem.message.removeprefix("cycle: ").split(" -> ")
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for pred, task in itertools.pairwise(cycle):
        assert pred in back[task]  # each task of the path comes after the one before it
    first = min(cycle, key=names.index)
    assert cycle[0] == first  # named from the first task of the cycle in the file, at its line
    assert (problem.file, problem.line) == ("wf.yaml", names.index(first) + 3)


def test_every_pattern_a_file_is_checked_against_is_said_in_words() -> None:
    from flowstage.model.dataflow import Package
    from flowstage.model.loader import PATTERN_WORDS
    from flowstage.model.schema import workflow_schema

    def patterns(node: Any) -> set[str]:
        if isinstance(node, dict):
            found = {node["pattern"]} if isinstance(node.get("pattern"), str) else set()
            return found.union(*(patterns(v) for k, v in node.items() if k != "pattern"))
        if isinstance(node, list):
            return set().union(*(patterns(v) for v in node))
        return set()

    used = patterns(workflow_schema()) | patterns(Package.model_json_schema())
    used -= {r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"}  # durations: checked by parse_duration, never by the pattern
    assert used, "the schemas hold patterns"
    assert used <= set(PATTERN_WORDS), sorted(used - set(PATTERN_WORDS))


def test_check_graph_of_a_python_workflow_names_the_path_without_a_file() -> None:
    workflow = Workflow(name="w", tasks=[Task(name="a", shell="true", after={"zz": Condition.SUCCESS})])
    problems = check_graph(workflow)
    assert [str(p) for p in problems] == ["tasks[0].after.zz: unknown task 'zz' in after"]


# --------------------------------------------------------------------------- files


def test_load_reads_a_file_and_errors_name_its_path(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: w\ntasks:\n  - {name: a, shell: 'true'}\n", encoding="utf-8")
    assert load(good).name == "w"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: w\ntasks:\n  - {name: a}\n", encoding="utf-8")
    with pytest.raises(DefinitionError, match=re.escape(f"{bad}:3:5: ")):
        load(bad)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("latin-1", "cannot read"),
    ],
)
def test_load_turns_unreadable_files_into_definition_errors(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "wf.yaml"
    if setup == "directory":
        path.mkdir()
    elif setup == "latin-1":
        path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DefinitionError, match=message):
        load(path)


# --------------------------------------------------------------------------- YAML 1.2


def test_on_in_alerts_stays_a_string_key() -> None:
    workflow = load_text(
        doc("""\
            name: w
            alerts:
              - on: failed
                notify: [ops]
              - {on: succeeded, notify: [team]}
            tasks:
              - {name: a, shell: "true"}
            """)
    )
    assert [a.on for a in workflow.alerts] == ["failed", "succeeded"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("on", "on"),
        ("off", "off"),
        ("yes", "yes"),
        ("no", "no"),
        ("y", "y"),
        ("Yes", "Yes"),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("", None),
        ("12", 12),
        ("-3", -3),
        ("012", 12),
        ("0o17", 15),
        ("0x1F", 31),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".inf", float("inf")),
        ("-.inf", float("-inf")),
        ("1_000", "1_000"),
        ("2026-03-01", "2026-03-01"),
        ("12:30", "12:30"),
        ("0b101", "0b101"),
    ],
)
def test_plain_scalars_resolve_by_the_yaml_1_2_core_schema(text: str, value: Any) -> None:
    assert resolve_scalar(text) == value
    assert type(resolve_scalar(text)) is type(value)


def test_yaml_1_1_booleans_stay_strings_in_values_and_keys() -> None:
    source = parse("on: yes\noff: no\nflags: [on, off, y, n, true]\n12: x\n")
    assert source.data == {"on": "yes", "off": "no", "flags": ["on", "off", "y", "n", True], "12": "x"}


def test_parse_records_the_position_of_every_key_and_item() -> None:
    source = parse("a:\n  b: [x, {c: 1}]\n", "f.yaml")
    assert source.positions[("a",)] == (1, 1)
    assert source.positions[("a", "b")] == (2, 3)
    assert source.positions[("a", "b", 0)] == (2, 7)
    assert source.positions[("a", "b", 1)] == (2, 10)
    assert source.positions[("a", "b", 1, "c")] == (2, 11)
    assert source.position(("a", "b", 1, "c", "deeper")) == (2, 11)
    assert source.position(("a", "nowhere")) == (1, 1)


def test_merge_key_fills_in_and_an_explicit_key_overrides_it() -> None:
    workflow = load_text(
        doc("""\
            name: w
            variables:
              base: &base {shell: "true", retries: 2}
            tasks:
              - <<: *base
                name: a
                retries: 0
            """)
    )
    task = (workflow.tasks or [])[0]
    assert (task.kind, task.retries) == ("shell", 0)


def test_json_loads_into_the_same_model() -> None:
    data = {"name": "w", "tasks": [{"name": "a", "shell": "true", "after": None}, {"name": "b", "shell": "x", "after": ["a"]}]}
    from_json = load_text(json.dumps(data), "wf.json")
    from_yaml = load_text("name: w\ntasks:\n  - {name: a, shell: 'true'}\n  - {name: b, shell: x, after: [a]}\n")
    assert from_json == from_yaml


JSON_DOCS = [
    '{"on": "yes", "off": "no", "flags": ["on", "off", "y", "n", true], "12": 1.5e3, "n": null, "i": -7}',
    '[1, 2.0, "x", {"a": [true, false, null]}, []]',
    '  \n {"a":{"b":[1,{"c":"\\u00e9\\n"}]}}',
    '{"big": 123456789012345678901234567890, "tiny": 1e-400, "huge": 1e400, "neg": -0, "s": "a\\"b\\\\c"}',
]


@pytest.mark.parametrize("text", JSON_DOCS)
def test_json_documents_read_by_json_equal_what_the_yaml_reader_reads(text: str) -> None:
    """JSON is read by `json` (fast); its values are those YAML 1.2 gives the same text."""
    assert parse(text).data == yaml_reader_value(text)
    assert parse(text).data == json.loads(text)


def yaml_reader_value(text: str) -> Any:
    """The value the YAML way of `parse` gives (a leading comment keeps `parse` from the JSON way)."""
    return parse("# yaml\n" + text).data


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": NaN}', {"a": "NaN"}),  # JSON extensions `json` accepts: YAML reads a plain string
        ('{"a": Infinity, "b": -Infinity}', {"a": "Infinity", "b": "-Infinity"}),
        ("{on: yes, off: [no, y]}", {"on": "yes", "off": ["no", "y"]}),  # flow YAML, not JSON: 1.1 booleans stay strings
        ('{"a": 1, b: on}', {"a": 1, "b": "on"}),
    ],
)
def test_json_looking_text_that_json_refuses_or_reads_otherwise_is_read_as_yaml(text: str, value: Any) -> None:
    assert parse(text).data == value


def test_json_surrogate_pair_is_one_character_and_a_lone_surrogate_is_refused() -> None:
    assert parse('["\\ud83d\\ude00"]').data == ["\U0001f600"]
    with pytest.raises(DefinitionError, match="invalid YAML"):
        parse('["a\\ud83d"]')
    with pytest.raises(DefinitionError, match="invalid YAML"):
        parse('["\\\\ud83d\\ude00"]')  # a backslash, then a lone low surrogate


def test_duplicate_key_in_json_is_refused_at_its_position() -> None:
    with pytest.raises(DefinitionError) as info:
        parse('{\n  "a": 1,\n  "b": {"c": 1, "c": 2}\n}\n', "w.json")
    assert str(info.value) == "w.json:3:17: duplicate key 'c'"


def test_positions_of_a_json_document_are_those_of_its_text() -> None:
    source = parse('{"a":\n  {"b": [1,\n   {"c": 2}]}}', "f.json")
    assert source.positions[("a",)] == (1, 2)
    assert source.positions[("a", "b")] == (2, 4)
    assert source.positions[("a", "b", 0)] == (2, 10)
    assert source.positions[("a", "b", 1, "c")] == (3, 5)


def test_a_json_workflow_reports_problems_at_their_line_and_column() -> None:
    text = json.dumps(
        {"name": "w", "tasks": [{"name": "a", "shell": "true"}, {"name": "b", "shell": "x", "retries": -1}]}, indent=2
    )
    with pytest.raises(DefinitionError) as info:
        load_text(text, "wf.json")
    line = next(i for i, ln in enumerate(text.splitlines(), start=1) if '"retries"' in ln)
    assert str(info.value).startswith(f"wf.json:{line}:7: tasks[1].retries:")


def test_yaml_positions_are_worked_out_only_when_asked_and_stay_right() -> None:
    source = parse("a:\n  - x\n  - {b: on}\n", "f.yaml")
    assert source.data == {"a": ["x", {"b": "on"}]}
    assert source._positions is None  # nothing asked yet: a valid file never pays for positions
    assert source.position(("a", 1, "b")) == (3, 6)
    assert source.positions[("a", 0)] == (2, 5)


def test_parsing_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    assert gc.isenabled()
    parse('{"a": [1, 2]}')
    parse("a: [1, 2]\n")
    with pytest.raises(DefinitionError):
        load_text("a: [\n")
    assert gc.isenabled()
    gc.disable()
    try:
        parse('{"a": 1}')
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_alias_bomb_is_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(DefinitionError, match="too large"):
        load_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000 + "]" * 5000,
        "a: " + "{b: " * 5000 + "1" + "}" * 5000,
        "[" * 100_000 + "]" * 100_000,  # JSON deeper than `json` goes: the YAML reader refuses it
        '{"a": ' * 50_000 + "1" + "}" * 50_000,
    ],
)
def test_deeply_nested_document_is_a_definition_error(text: str) -> None:
    with pytest.raises(DefinitionError):
        load_text(text)


# --------------------------------------------------------------------------- round trips

ROUND_TRIP = [
    doc("""\
        name: campaign_launch
        description: Launch today's marketing campaign
        tags: [marketing, daily]
        variables:
          campaign_id: null
          region: EU
          enabled: "yes"
          switch: on
          code: "012"
          ratio: 0.5
          regions: [EU, US]
          nested: {a: [1, {b: null}], "on": "off"}
          text: |
            line one
            line two
        preferences:
          log_level: notice
          max_parallel: 4
          retries: 1
          retry_delay: 250ms
          timeout: 1h30m
          run_timeout: 6h
          python: 3.11
          flush: [daily_sales]
        trigger:
          schedule: "30 23 * * *"
          timezone: Europe/Paris
          catch_up: true
          variables: {region: EU}
        alerts:
          - {on: failed, notify: [ops]}
          - {metric: runtime_seconds, op: ">", value: 1800, notify: [ops]}
          - {metric: memory_mb, task: find_campaign, op: ">=", value: 512.5, notify: [ops, team]}
        stages:
          - name: detect
            tasks:
              - name: find_campaign
                python: tasks/find.py:find
                with: {today: "{{ run.date }}"}
                save: campaign_id
          - name: prepare
            description: two tasks in parallel
            tasks:
              - name: update_banners
                if: var.campaign_id is not none
                python: cms:update_banners
                interpreter: "3.12"
                in_process: true
                with: {campaign: "{{ var.campaign_id }}"}
                save: {banner: id}
              - name: notify
                shell: echo {{ var.region }}
                env: {REGION: "{{ var.region }}", DEBUG: true, N: 3}
                timeout: 30s
                retries: 2
                log_level: debug
                variables: {x: 1}
          - name: finish
            tasks:
              - name: mark_failed
                after: {find_campaign: failure, update_banners: completion}
                when: any
                shell: "exit 0"
                instances: 2
              - name: per_region
                after: [notify]
                for_each: "{{ var.regions }}"
                shell: echo {{ task.item }}
        """),
    doc("""\
        name: flat
        tasks:
          - {name: a, shell: "true"}
          - {name: b, shell: "true", after: a}
          - {name: c, shell: "true", after: {a: skipped, b: failure}, when: all}
        trigger:
          after: {workflows: [ingest_a, ingest_b], status: completed, when: any}
        """),
]


@pytest.mark.parametrize("text", ROUND_TRIP, ids=["spec example", "flat graph"])
def test_load_to_yaml_load_gives_an_equal_workflow(text: str) -> None:
    workflow = load_text(text)
    again = load_text(workflow.to_yaml())
    assert again == workflow
    assert again.to_yaml() == workflow.to_yaml()


PYTHON_BUILT = [
    Workflow(name="p", stages=[Stage(name="s", tasks=[Task(name="t", shell="echo hi")])]),
    Workflow(
        name="q",
        variables={"on": "yes", "n": 1, "none": None, "list": ["off", 2.5]},
        preferences=Preferences(max_parallel=2, retry_delay=0.059, timeout=1e-05),
        trigger=Trigger(schedule="0 6 * * 1-5", timezone="America/New_York"),
        alerts=[Alert(on="failed", notify=["ops"])],
        tasks=[
            Task(name="a", python="m:f", with_={"x": "{{ var.n }}"}, retries=3, retry_delay=0.1 + 0.2),
            Task(name="b", shell="true", after={"a": Condition.FAILURE}, when=When.ANY, if_="var.n > 0"),
        ],
    ),
]


@pytest.mark.parametrize("workflow", PYTHON_BUILT, ids=["minimal", "rich"])
def test_workflow_built_in_python_round_trips_through_yaml(workflow: Workflow) -> None:
    assert load_text(workflow.to_yaml()) == workflow


json_values = st.recursive(
    # infinities are left out: a definition is JSON data (to_dict), where pydantic writes them as null
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
safe_text = st.text(st.characters(exclude_categories=["Cs", "Cc"]) | st.sampled_from("\n\t"), max_size=40)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variables=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    command=safe_text,
    description=st.none() | safe_text,
    tags=st.lists(safe_text, max_size=3),
    seconds=st.floats(min_value=0, max_value=1e6),
)
def test_any_workflow_round_trips_through_yaml(
    variables: dict[str, Any], command: str, description: str | None, tags: list[str], seconds: float
) -> None:
    workflow = Workflow(
        name="w",
        description=description,
        tags=tags,
        variables=variables,
        preferences=Preferences(timeout=seconds),
        tasks=[
            Task(name="t", shell=command.replace("{", "(")),
            # `with:` is checked for template syntax when loaded: keep broken templates out of it
            Task(name="u", python="m:f", with_={} if templates.contains_template(variables) else variables, after="t"),
        ],
    )
    assert load_text(workflow.to_yaml()) == workflow


def test_dump_quotes_strings_that_would_read_back_as_something_else() -> None:
    values = ["on", "yes", "No", "null", "~", "12", "1e3", "0x1F", ".inf", "true", "", " lead", "trail ", "a\nb", "a: b", "- x"]
    assert parse(dump({"v": values})).data == {"v": values}


# --------------------------------------------------------------------------- fuzzing

VALID = doc("""\
    name: fuzz
    variables: {region: EU, n: 3}
    preferences: {max_parallel: 2, retry_delay: 5s}
    trigger: {schedule: "0 * * * *", timezone: UTC}
    alerts:
      - {on: failed, notify: [ops]}
    stages:
      - name: one
        tasks:
          - {name: a, shell: "echo {{ var.region }}", retries: 1}
          - name: b
            python: mod:fn
            with: {n: "{{ var.n }}"}
            save: out
      - name: two
        tasks:
          - {name: c, shell: "true", after: {a: failure, b: success}, when: any, if: var.n > 1}
    """)

YAML_BITS = [
    ":",
    "-",
    " ",
    "\n",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    '"',
    "#",
    "&a",
    "*a",
    "!",
    "|",
    ">",
    "%",
    "@",
    "`",
    "?",
    "<<",
    "\t",
    "{{",
    "}}",
]


def _must_be_definition_error_or_workflow(text: str) -> None:
    error: DefinitionError | None = None
    try:
        result = load_text(text, "fuzz.yaml")
    except DefinitionError as exc:
        error = exc
    else:
        assert isinstance(result, Workflow)
        return
    assert error.problems
    for problem in error.problems:
        assert problem.message
        assert problem.file == "fuzz.yaml"
        assert str(problem).startswith("fuzz.yaml")


@settings(max_examples=200, deadline=None, database=None)
@given(text=st.text(max_size=300))
def test_random_text_never_raises_anything_but_a_definition_error(text: str) -> None:
    _must_be_definition_error_or_workflow(text)


@settings(max_examples=200, deadline=None, database=None)
@given(
    text=st.lists(st.sampled_from([*YAML_BITS, "name", "tasks", "stages", "w", "a", "shell", "after"]), max_size=60).map("".join)
)
def test_random_yaml_punctuation_never_raises_anything_but_a_definition_error(text: str) -> None:
    _must_be_definition_error_or_workflow(text)


KEYS = [
    "name",
    "tasks",
    "stages",
    "after",
    "when",
    "if",
    "shell",
    "python",
    "with",
    "save",
    "variables",
    "preferences",
    "trigger",
    "alerts",
    "timeout",
    "retries",
    "schedule",
    "timezone",
    "on",
    "notify",
    "metric",
    "env",
    "spec",
    "if_",
    "with_",
]
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["a", "b", "success", "any", "1h"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(st.sampled_from(KEYS), values, max_size=6), as_json=st.booleans())
def test_random_mappings_never_raise_anything_but_a_definition_error(data: dict[str, Any], as_json: bool) -> None:
    text = json.dumps(data) if as_json else yaml.safe_dump(data)
    _must_be_definition_error_or_workflow(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "replace", "insert", "drop line", "dup line", "swap lines", "indent"]))
        lines = text.split("\n")
        if op in ("drop line", "dup line", "swap lines", "indent"):
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "drop line":
                del lines[i]
            elif op == "dup line":
                lines.insert(i, lines[i])
            elif op == "swap lines":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines[i] = " " * draw(st.integers(1, 3)) + lines[i]
            text = "\n".join(lines)
            continue
        at = draw(st.integers(0, len(text)))
        if op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 8)) :]
        elif op == "replace":
            text = text[:at] + draw(st.sampled_from(YAML_BITS) | st.text(max_size=2)) + text[at + 1 :]
        else:
            text = text[:at] + draw(st.sampled_from(YAML_BITS) | st.text(max_size=4)) + text[at:]
    return text


def test_the_fuzzing_seed_is_valid() -> None:
    assert load_text(VALID).name == "fuzz"


@settings(max_examples=300, deadline=None, database=None)
@given(text=mutated())
def test_mutated_workflow_never_raises_anything_but_a_definition_error(text: str) -> None:
    _must_be_definition_error_or_workflow(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: " + "7" * 4300, None),
        ("a: " + "7" * 4301, "1:4: a: number too long (over 4300 digits)"),
        ("a: [1, -" + "7" * 4301 + "]", "1:8: a[1]: number too long (over 4300 digits)"),
        ("a: 0x" + "f" * 3600, "1:4: a: number too long (over 4300 digits)"),
        ("a: 0o" + "7" * 4800, "1:4: a: number too long (over 4300 digits)"),
        ("a: !!int " + "7" * 4301, "1:4: a: number too long (over 4300 digits)"),
        ("? " + "7" * 5000 + "\n: v", None),  # a key stays a name, whatever its length
        ('{"b": {"a": ' + "7" * 4301 + "}}", "1:13: b.a: number too long (over 4300 digits)"),
        ("a: " + "[" * 199 + "1" + "]" * 199, None),
        ("a: " + "[" * 200 + "1" + "]" * 200, "1:203: nested too deeply (over 200 levels)"),
        ('{"a": ' + "[" * 200 + "1" + "]" * 200 + "}", "1:206: nested too deeply (over 200 levels)"),
        ("a: " + "{k: " * 200 + "1" + "}" * 200, "1:800: nested too deeply (over 200 levels)"),
    ],
)
def test_numbers_and_nesting_past_the_readers_limits_are_located_problems(text: str, expected: str | None) -> None:
    from flowstage.model.yamlsource import parse

    if expected is None:
        parse(text, "f.yaml")
        return
    with pytest.raises(DefinitionError) as caught:
        parse(text, "f.yaml")
    assert str(caught.value) == f"f.yaml:{expected}"
