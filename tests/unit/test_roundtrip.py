"""Lossless round trips (SPEC §5.4): load → to_yaml → load, and save over a file, give the same workflow.

The workflows come from the project's examples, from tricky YAML 1.2 values, and from a hypothesis
strategy that builds them through the Python API as a user would: stages or a flat graph,
conditions (`after:`, `when:`, `if:`), every built-in task kind with its keys, variables of every
JSON type (null and nested lists and mappings too), preferences, a schedule or an event trigger,
and alerts. Derandomized, with a budget that runs in a few seconds (`FLOWSTAGE_FUZZ_EXAMPLES=N`
for a longer campaign).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from flowstage import Stage, Task, Workflow, load, save
from flowstage.model.loader import check_graph, load_text
from flowstage.model.roundtrip import edited
from flowstage.model.workflow import ALERT_ON, LOG_LEVELS, TASK_METRICS
from tests.fuzz.budget import budget

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(
    [*(ROOT / "examples").rglob("workflows/*.yaml"), *(ROOT / "src/flowstage/project_template/workflows").glob("*.yaml")]
)


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_every_example_workflow_round_trips_through_to_yaml(path: Path) -> None:
    workflow = load(path)
    assert load_text(workflow.to_yaml()) == workflow
    assert load_text(json.dumps(workflow.to_dict())) == workflow


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_saving_an_unchanged_example_leaves_its_text_as_it_was(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert edited(text, load(path)) == text


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_an_example_edited_through_the_api_changes_only_its_own_lines(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    workflow = load(path)
    changed = workflow.replace(description="edited through the API")
    out = edited(text, changed)
    assert load_text(out) == changed
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#") or " # " in line]
    assert comments
    kept = out.splitlines()
    assert all(line in kept for line in comments)
    removed = [line for line in text.splitlines() if line not in kept]
    assert all(line.startswith("description:") for line in removed), removed


TRICKY = [
    "on", "off", "yes", "no", "y", "n", "On", "NO", "true", "False", "null", "Null", "~", "",
    "1e3", "1E3", ".5", "-.5e3", "0o17", "0x1F", "012", "+1", "1_000", "1:20", ".inf", "-.Inf", ".nan",
    "2026-01-01", "2026-01-01T10:00:00Z", " lead", "trail ", " both ", "a\nb", "a\n", "\n", "\nlead", "a\n\n",
    "  indented\nblock", "tab\there", "# not a comment", "x # y", "- item", ": colon", "a: b", "[x]", "{a: 1}",
    "'single'", '"double"', "@at", "`tick", "!tag", "&anchor", "*alias", "<<", "%percent", "|", ">", "?",
    "é ü 日本", "\x85nel", "\u2028line sep", "ctrl\x07bell", "\ufeffbom",
]  # fmt: skip


@pytest.mark.parametrize("value", TRICKY, ids=[repr(v) for v in TRICKY])
def test_to_yaml_writes_strings_that_yaml_1_2_reads_back_as_the_same_string(value: str) -> None:
    workflow = Workflow(
        name="tricky",
        description=value,
        tags=[value],
        variables={"v": value, value: [value, {value: value}]},
        tasks=[Task(name="t", shell=value.replace("{", "(") or "true", env={"V": value})],
    )
    text = workflow.to_yaml()
    assert load_text(text) == workflow
    assert load_text(text).variables["v"] == value


@pytest.mark.parametrize("value", TRICKY, ids=[repr(v) for v in TRICKY])
def test_save_writes_new_strings_that_yaml_1_2_reads_back_as_the_same_string(value: str) -> None:
    text = "# kept\nname: tricky\nvariables: {v: 1}  # kept too\ntasks:\n  - name: t\n    shell: 'true'\n"
    workflow = load_text(text)
    changed = workflow.replace(variables={"v": value, "w": [value]}, description=value)
    out = edited(text, changed)
    assert load_text(out) == changed
    assert "# kept\n" in out
    assert "# kept too" in out


# --------------------------------------------------------------------------- generated workflows

NAMES = st.builds(lambda a, b: a + b, st.sampled_from("abcxyz"), st.text("abz09_-", max_size=6))
TASK_NAMES = st.builds(lambda a, b: a + b, st.sampled_from("aBz_"), st.text("aZ09_-", max_size=4))
#: text anywhere (workflow variables, descriptions): any character but lone surrogates, private-use and unassigned ones
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs", "Co", "Cn"]), max_size=20) | st.sampled_from(TRICKY)
#: text where templates are checked (a task's values): no template syntax
PLAIN_TEXT = ANY_TEXT.map(lambda s: s.replace("{", "(").replace("%", "p").replace("#", "n"))
DURATIONS = st.sampled_from([0.0, 0.25, 1.0, 30.0, 90.0, 3600.0, 5400.5, 86400.0]) | st.floats(min_value=0, max_value=1e7)
#: YAML 1.2 reads integers of any size, and Python turns at most 4,300 digits into text
INTEGERS = st.integers(min_value=-(10**40), max_value=10**40)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | INTEGERS | FLOATS | text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=8,
    )


VARIABLES = st.dictionaries(ANY_TEXT, json_values(ANY_TEXT), max_size=4)
TASK_VALUES = st.dictionaries(st.text("abc_1", min_size=1, max_size=5), json_values(PLAIN_TEXT), max_size=3)
EXPRESSIONS = st.sampled_from(["var.n > 1", "var.x is not none", "var.region == 'EU'", "not var.flag", "var.n in [1, 2]"])
TEMPLATES = st.sampled_from(["{{ var.n }}", "{{ run.date }}", "{{ task.item }}", "x-{{ run.id }}", "{{ var.x | default('a') }}"])
TEMPLATED = PLAIN_TEXT | TEMPLATES


def kinds(names: st.SearchStrategy[str] = TASK_NAMES) -> st.SearchStrategy[dict[str, Any]]:
    """The kind key of a task and that kind's own keys, every built-in kind."""
    path = st.sampled_from(["a", "etl", "x/y", "deep/er"])
    python = st.fixed_dictionaries(
        {"python": st.sampled_from(["mod:fn", "pkg.mod:run", "tasks/etl.py:load"])},
        optional={"interpreter": st.sampled_from(["3.11", "3.12", "/usr/bin/python3"]), "in_process": st.booleans()},
    )
    shell = st.fixed_dictionaries(
        {"shell": TEMPLATED.filter(str.strip)},
        optional={
            "env": st.dictionaries(
                st.sampled_from(["A", "REGION", "X_1"]),
                TEMPLATED | st.sampled_from([{"connection": "shop"}, {"env": "SECRET"}, {"store": True}]),
                max_size=3,
            )
        },
    )
    sql_text = PLAIN_TEXT.filter(str.strip) | st.sampled_from(["SELECT :x", "SELECT 1;\nSELECT 2;\n"])
    sql = st.one_of(
        st.fixed_dictionaries(
            {"sql": sql_text}, optional={"params": TASK_VALUES, "save_rows": st.sampled_from(["rows", "all_rows"])}
        ),
        st.fixed_dictionaries({"sql_file": path.map(lambda p: f"sql/{p}.sql")}, optional={"connection": NAMES}),
    )
    http = st.fixed_dictionaries(
        {
            "http": st.fixed_dictionaries(
                {"url": st.sampled_from(["http://127.0.0.1:8080/x", "https://example.com/api?q={{ var.n }}"])},
                optional={
                    "method": st.sampled_from(["GET", "POST", "put"]),
                    "headers": st.dictionaries(st.sampled_from(["Accept", "X-Token"]), PLAIN_TEXT, max_size=2),
                    "params": TASK_VALUES,
                    "json": json_values(PLAIN_TEXT),
                    "body": PLAIN_TEXT,
                    "expect": st.sampled_from([200, 201, [200, 204]]),
                },
            )
        }
    )
    wait_for = st.fixed_dictionaries(
        {
            "wait_for": st.one_of(
                st.fixed_dictionaries({"file": path.map(lambda p: f"data/{p}/*.csv")}),
                st.fixed_dictionaries(
                    {"sql": st.just("SELECT count(*) > 0 FROM t")}, optional={"connection": NAMES, "params": TASK_VALUES}
                ),
            )
        },
        optional={"poke": DURATIONS},
    )
    workflow = st.fixed_dictionaries({"workflow": NAMES | path.map(lambda p: f"workflows/{p}.yaml")})
    dataflow = st.fixed_dictionaries(
        {
            "dataflow": path.map(lambda p: f"packages/{p}.yaml")
            | st.just(
                {
                    "name": "inline",
                    "sources": {"orders": {"file": "data/orders.csv"}},
                    "steps": [{"from": "orders"}, {"filter": "amount > :min"}, {"select": ["id", "amount"]}],
                    "sink": {"file": "out/x.parquet", "mode": "overwrite"},
                    "variables": {"min": 0},
                }
            )
        }
    )
    crawl = st.fixed_dictionaries(
        {
            "crawl": st.one_of(
                st.fixed_dictionaries(
                    {"path": path.map(lambda p: f"data/{p}/**/*.csv"), "table": st.sampled_from(["raw.orders", "t"])},
                    optional={"format": st.sampled_from(["csv", "parquet", "json"]), "sample_size": st.integers(1, 10**6)},
                ),
                st.fixed_dictionaries(
                    {"connection": NAMES}, optional={"tables": st.lists(st.sampled_from(["public.*", "a.b"]), max_size=2)}
                ),
            )
        }
    )
    spark = st.fixed_dictionaries({"spark": st.sampled_from(["jobs/a.py", "jobs/b.py:transform"])})
    return st.one_of(python, shell, sql, http, wait_for, workflow, dataflow, crawl, spark)


KINDS = kinds()


@st.composite
def tasks(draw: st.DrawFn, name: str, earlier: list[str]) -> Task:
    """A task through `Task(...)` with keywords, `after:` naming only `earlier` tasks."""
    keys: dict[str, Any] = draw(KINDS)
    if earlier and draw(st.booleans()):
        preds = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=3, unique=True))
        conditions = st.sampled_from(["success", "failure", "completion", "skipped"])
        keys["after"] = draw(
            st.sampled_from([preds[0], preds]) | st.fixed_dictionaries({p: conditions for p in preds})  # every spelling
        )
        keys["when"] = draw(st.sampled_from(["all", "any"]))
    optional = {
        "description": ANY_TEXT,
        "if_": EXPRESSIONS,
        "retries": st.integers(0, 1000),
        "retry_delay": DURATIONS,
        "retry_backoff": st.floats(min_value=1, max_value=10),
        "timeout": DURATIONS,
        "variables": TASK_VALUES,
        "with_": TASK_VALUES,
        "save": st.sampled_from(["out", "result"])
        | st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["x", "y"]), min_size=1),
        "instances": st.integers(1, 10),
        "for_each": TEMPLATES | st.lists(json_values(PLAIN_TEXT), max_size=3),
        "log_level": st.sampled_from(LOG_LEVELS),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), max_size=5, unique=True)):
        keys[key] = draw(optional[key])
    if "retry_delay" in keys and draw(st.booleans()):
        keys["retry_delay_max"] = keys["retry_delay"] * draw(st.floats(min_value=1, max_value=100))
    return Task(name=name, **keys)


@st.composite
def workflows(draw: st.DrawFn) -> Workflow:
    names = draw(st.lists(TASK_NAMES, min_size=1, max_size=6, unique=True))
    keys: dict[str, Any] = {}
    if draw(st.booleans()):
        cuts = sorted(draw(st.sets(st.integers(1, len(names) - 1), max_size=len(names) - 1))) if len(names) > 1 else []
        groups = [names[a:b] for a, b in zip([0, *cuts], [*cuts, len(names)], strict=True)]
        stages, before = [], []
        for group in groups:
            stages.append(
                Stage(
                    name=draw(TASK_NAMES),
                    description=draw(st.none() | ANY_TEXT),
                    tasks=[draw(tasks(name, list(before))) for name in group],
                )
            )
            before.extend(group)
        names_seen = [s.name for s in stages]
        if len(set(names_seen)) != len(names_seen):
            stages = [s.replace(name=f"s{i}") for i, s in enumerate(stages)]
        keys["stages"] = stages
    else:
        keys["tasks"] = [draw(tasks(name, names[:i])) for i, name in enumerate(names)]
    optional = {
        "description": ANY_TEXT,
        "tags": st.lists(ANY_TEXT, max_size=3),
        "variables": VARIABLES,
        "preferences": preferences(),
        "trigger": triggers(),
        "alerts": st.lists(alerts(names), max_size=3),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), max_size=6, unique=True)):
        keys[key] = draw(optional[key])
    workflow = Workflow(name=draw(NAMES), **keys)
    assert check_graph(workflow) == []
    return workflow


def preferences() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "log_level": st.sampled_from(LOG_LEVELS),
            "max_parallel": st.integers(1, 10000),
            "retries": st.integers(0, 1000),
            "retry_backoff": st.floats(min_value=1, max_value=5),
            "retry_delay_max": st.floats(min_value=3600, max_value=7200),
            "timeout": DURATIONS,
            "run_timeout": DURATIONS,
            "python": st.sampled_from(["3.11", "3.12", ".venv"]),
            "flush": st.lists(
                st.sampled_from(
                    ["daily_sales", {"table": "t", "sql_file": "sql/t.sql"}, {"materialized_view": "mv", "connection": "shop"}]
                ),
                max_size=2,
            ),
        },
    )


def triggers() -> st.SearchStrategy[dict[str, Any]]:
    schedule = st.fixed_dictionaries(
        {"schedule": st.sampled_from(["30 23 * * *", "0 6 * * 1-5", "*/5 * * * *"])},
        optional={
            "timezone": st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
            "catch_up": st.booleans(),
            "max_active_runs": st.integers(1, 5),
            "variables": VARIABLES,
        },
    )
    after = st.fixed_dictionaries(
        {
            "after": st.fixed_dictionaries(
                {"workflows": st.lists(NAMES, min_size=1, max_size=3)},
                optional={
                    "status": st.sampled_from(["succeeded", "failed", "completed"]),
                    "when": st.sampled_from(["all", "any"]),
                },
            )
        },
        optional={"variables": VARIABLES},
    )
    return schedule | after


def alerts(task_names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    notify = st.lists(st.sampled_from(["ops", "team"]), min_size=1, max_size=2, unique=True)
    on = st.fixed_dictionaries(
        {"on": st.sampled_from(ALERT_ON), "notify": notify}, optional={"task": st.sampled_from(task_names), "every": DURATIONS}
    )
    op = st.sampled_from([">", ">=", "<", "<=", "==", "!="])
    run_metric = st.fixed_dictionaries({"metric": st.just("runtime_seconds"), "op": op, "value": FLOATS, "notify": notify})
    task_metric = st.fixed_dictionaries(
        {
            "metric": st.sampled_from(TASK_METRICS),
            "task": st.sampled_from(task_names),
            "op": op,
            "value": FLOATS,
            "notify": notify,
        }
    )
    return on | run_metric | task_metric


@budget(80)
@given(workflow=workflows())
def test_any_workflow_built_in_python_round_trips_through_yaml(workflow: Workflow) -> None:
    text = workflow.to_yaml()
    again = load_text(text)
    assert again == workflow
    assert again.to_yaml() == text


@budget(25)
@given(first=workflows(), second=workflows())
def test_saving_any_workflow_over_the_file_of_another_gives_the_one_saved(first: Workflow, second: Workflow) -> None:
    text = "# a comment at the top\n" + first.to_yaml()
    assert load_text(edited(text, second)) == second


@budget(40)
@given(workflow=workflows(), data=st.data())
def test_saving_an_edit_keeps_the_file_comments_and_gives_the_edited_workflow(workflow: Workflow, data: st.DataObject) -> None:
    lines = workflow.to_yaml().splitlines()
    text = "# the top\n" + "".join(f"{line}  # c{i}\n" if line.endswith(":") else f"{line}\n" for i, line in enumerate(lines))
    assume(load_text(text) == workflow)  # a line of block text may end in a colon too
    assume("<<" not in text)  # ruamel.yaml takes a quoted `<<` key for a merge: such a file is written anew
    victim = data.draw(st.sampled_from([t.name for _, t in workflow.all_tasks()]))
    new_task = Task(name="added_by_api", shell="echo added")

    def edit(tasks: list[Task]) -> list[Task]:
        return [t.replace(description="changed", retries=3) if t.name == victim else t for t in tasks]

    if workflow.tasks is not None:
        changed = workflow.replace(tasks=[*edit(workflow.tasks), new_task])
    else:
        stages = [s.replace(tasks=edit(s.tasks)) for s in workflow.stages or []]
        stages[-1] = stages[-1].replace(tasks=[*stages[-1].tasks, new_task])
        changed = workflow.replace(stages=stages)
    out = edited(text, changed)
    assert load_text(out) == changed
    assert out.startswith("# the top\n")
    assert [c for c in re.findall(r"# c\d+", text) if c not in out] == []


# --------------------------------------------------------------------------- the Python spelling


def test_a_positional_argument_is_a_type_error_that_shows_the_keyword_form() -> None:
    with pytest.raises(TypeError, match=r'Task\(\) takes keyword arguments only, e.g. Task\(name="load", shell="echo hi"\)'):
        Task("load", shell="echo hi")  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"Workflow\(\) takes keyword arguments only.*got 1 positional argument \('daily'\)"):
        Workflow("daily")  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"Stage\(\) takes keyword arguments only.*got 2 positional arguments"):
        Stage("a", [])  # type: ignore[misc]


@pytest.mark.parametrize(
    ("keywords", "as_written"),
    [
        ({"if_": "var.n > 1"}, {"if": "var.n > 1"}),
        ({"with_": {"a": 1}}, {"with": {"a": 1}}),
        ({"if": "var.n > 1", "with": {"a": 1}}, {"if": "var.n > 1", "with": {"a": 1}}),
        ({"after": "extract", "when": "any"}, {"after": {"extract": "success"}, "when": "any"}),
        ({"after": ["a", "b"]}, {"after": {"a": "success", "b": "success"}}),
        ({"after": {"a": "failure"}, "timeout": "1m30s"}, {"after": {"a": "failure"}, "timeout": "1m30s"}),
    ],
)
def test_task_keywords_are_the_file_keys_with_if_and_with_spelled_if_and_with_underscore(
    keywords: dict[str, Any], as_written: dict[str, Any]
) -> None:
    task = Task(name="t", shell="true", **keywords)
    assert task.model_dump(mode="json", by_alias=True, exclude_defaults=True) == {"name": "t", **as_written, "shell": "true"}


def test_replace_gives_a_validated_copy_and_changes_a_kinds_keys() -> None:
    task = Task(name="t", sql="SELECT 1", connection="shop", timeout="1m")
    changed = task.replace(sql="SELECT 2", retries=2)
    assert (changed.spec.sql, changed.spec.connection, changed.retries, changed.timeout) == ("SELECT 2", "shop", 2, 60.0)  # type: ignore[attr-defined]
    assert task.spec.sql == "SELECT 1"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="two kinds in one task"):
        task.replace(shell="echo")
    with pytest.raises(ValueError, match="retries"):
        task.replace(retries=-1)


def test_save_refuses_a_workflow_load_would_refuse_and_leaves_the_file(tmp_path: Path) -> None:
    from flowstage.errors import DefinitionError

    path = tmp_path / "w.yaml"
    path.write_text("name: w  # mine\ntasks: [{name: a, shell: 'true'}]\n")
    bad = Workflow(name="w", tasks=[Task(name="a", shell="true", after="missing")])
    with pytest.raises(DefinitionError, match="unknown task 'missing'"):
        save(bad, path)
    assert path.read_text() == "name: w  # mine\ntasks: [{name: a, shell: 'true'}]\n"


def test_save_writes_a_new_file_and_json_as_json(tmp_path: Path) -> None:
    workflow = Workflow(name="w", variables={"x": math.pi, "n": None}, tasks=[Task(name="a", shell="echo on")])
    assert save(workflow, tmp_path / "new.yaml").read_text() == workflow.to_yaml()
    assert load(save(workflow, tmp_path / "w.json")) == workflow
    assert json.loads((tmp_path / "w.json").read_text())["name"] == "w"


COMMENTED = """\
# Nightly load of the shop's orders: the workflow's own comment.
name: nightly   # the name people search for
variables:
  region: EU    # where the orders come from
stages:
  # extract first: a stage's comment
  - name: extract
    tasks:
      # pull the orders: a task's comment
      - name: pull
        shell: echo pull {{ var.region }}   # the command, about to change
        timeout: 90s                        # written as 90s, kept as 90s
  - name: load   # the load stage
    tasks:
      - name: push
        after: [pull]
        shell: echo push
# the end of the file
"""


def test_save_keeps_the_comments_of_a_file_edited_through_the_api(tmp_path: Path) -> None:
    path = tmp_path / "nightly.yaml"
    path.write_text(COMMENTED)
    workflow = load(path)
    extract, load_stage = workflow.stages or []
    pull = extract.tasks[0]
    changed = workflow.replace(
        stages=[
            extract.replace(tasks=[pull.replace(shell="echo pulled {{ var.region }}")]),
            load_stage.replace(
                tasks=[*load_stage.tasks, Task(name="report", description="no", after={"pull": "failure"}, shell="echo on")]
            ),
        ]
    )
    assert save(changed, path) == path
    assert load(path) == changed
    assert path.read_text() == COMMENTED.replace("echo pull {{ var.region }}  ", "echo pulled {{ var.region }}").replace(
        "        shell: echo push\n",
        '        shell: echo push\n      - name: report\n        description: "no"\n        after:\n          pull: failure\n        shell: echo on\n',
    )


THREE = """\
# top
name: w
tasks:
  # about a
  - name: a
    shell: echo a   # eol a
    timeout: 30s
  # about b
  - name: b
    shell: echo b
  # about c
  - name: c
    shell: echo c
# the end
"""


@pytest.mark.parametrize(
    ("edit", "removed"),
    [
        (lambda a, b, c: [a, c], ["  # about b", "  - name: b", "    shell: echo b"]),
        (lambda a, b, c: [a, b], ["  # about c", "  - name: c", "    shell: echo c"]),
        (lambda a, b, c: [a.replace(timeout=None), b, c], ["    timeout: 30s"]),
    ],
    ids=["a middle task", "the last task", "a key"],
)
def test_removing_a_task_or_a_key_takes_its_own_comment_and_keeps_the_next_ones(edit: Any, removed: list[str]) -> None:
    workflow = load_text(THREE)
    changed = workflow.replace(tasks=edit(*(workflow.tasks or [])))
    out = edited(THREE, changed)
    assert load_text(out) == changed
    assert out.splitlines() == [line for line in THREE.splitlines() if line not in removed]
