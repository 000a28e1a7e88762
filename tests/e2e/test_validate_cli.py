"""`flowstage validate`, `run` of bad input, `schema`, `init` and usage errors, as a user types them.

Every invalid input exits 2 with one clear line per problem (``file:line:col: message`` for files)
and never a traceback.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import Project, Result

# (case id, file text, line of the problem, words the message must hold)
INVALID_FILES = [
    pytest.param(
        """
        name: wf
        tasks:
          - name: a
            shell: echo a
            retires: 2
        """,
        5,
        ["unknown key 'retires'", "did you mean 'retries'"],
        id="unknown-task-key",
    ),
    pytest.param(
        """
        name: wf
        descripton: a typo at the top
        tasks:
          - name: a
            shell: echo a
        """,
        2,
        ["unknown key 'descripton'", "did you mean 'description'"],
        id="unknown-top-key",
    ),
    pytest.param(
        """
        name: wf
        tasks:
          - name: a
            shell: echo a
          - name: b
            shell: echo b
          - name: a
            shell: echo again
        """,
        7,
        ["duplicate task name 'a'"],
        id="duplicate-task",
    ),
    pytest.param(
        """
        name: wf
        tasks:
          - name: extract
            shell: echo a
          - name: load
            after: [extrct]
            shell: echo b
        """,
        6,
        ["unknown task 'extrct'", "did you mean 'extract'"],
        id="unknown-after-task",
    ),
    pytest.param(
        """
        name: wf
        tasks:
          - name: a
            shell: echo a
          - name: b
            after: [c]
            shell: echo b
          - name: c
            after: [b]
            shell: echo c
        """,
        6,
        ["cycle", "b", "c"],
        id="cycle",
    ),
    pytest.param(
        """
        name: wf
        stages:
          - name: one
            tasks:
              - name: a
                shell: echo a
                python: tasks/x.py:f
        """,
        7,
        ["two kinds", "shell", "python"],
        id="two-kinds",
    ),
    pytest.param(
        """
        name: wf
        tasks:
          - name: a
            shell: echo a
            timeout: five minutes
        """,
        5,
        ["not a duration", "five minutes"],
        id="bad-duration",
    ),
    pytest.param(
        """
        name: wf
        trigger:
          schedule: "61 * * * *"
        tasks:
          - name: a
            shell: echo a
        """,
        3,
        ["cron", "61 * * * *"],
        id="bad-cron",
    ),
    pytest.param(
        """
        name: wf
        trigger:
          schedule: "0 6 * * *"
          timezone: Mars/Olympus_Mons
        tasks:
          - name: a
            shell: echo a
        """,
        4,
        ["time zone", "Mars/Olympus_Mons"],
        id="bad-timezone",
    ),
    pytest.param(
        """
        name: wf
        tasks:
          - name: a
            shell: echo a
          - name: b
            python: tasks/x.py:f
            with: {region: "{{ var.region "}
        """,
        7,
        ["template"],
        id="bad-template",
    ),
    pytest.param(
        """
        name: wf
        tasks:
          - name: a
            shell: echo a: b
        """,
        4,
        ["invalid YAML"],
        id="invalid-yaml",
    ),
]


def problem_lines(result: Result, file: str) -> list[tuple[int, int, str]]:
    """The ``file:line:col: message`` lines of stderr, parsed; every stderr line must be one."""
    pattern = re.compile(rf"^{re.escape(file)}:(\d+):(\d+): (.+)$")
    found = []
    for line in result.err.splitlines():
        m = pattern.match(line)
        assert m, f"not a file:line:col: message line: {line!r}\nstderr: {result.err}"
        found.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return found


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.out + result.err, result.out + result.err


@pytest.mark.parametrize(("text", "line", "words"), INVALID_FILES)
def test_validate_reports_each_problem_at_its_line_and_exits_2(project: Project, text: str, line: int, words: list[str]) -> None:
    project.write("workflows/wf.yaml", text)

    result = project.cli("validate", "workflows/wf.yaml")

    assert result.code == 2, result
    assert_no_traceback(result)
    problems = problem_lines(result, "workflows/wf.yaml")
    assert len(problems) == 1, problems
    got_line, col, message = problems[0]
    assert got_line == line, f"{message!r} reported at line {got_line}, expected {line}"
    assert col >= 1
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize(("text", "line", "words"), [INVALID_FILES[2], INVALID_FILES[9]])
def test_run_of_an_invalid_file_exits_2_with_the_same_error(project: Project, text: str, line: int, words: list[str]) -> None:
    project.write("workflows/wf.yaml", text)

    result = project.cli("run", "workflows/wf.yaml")

    assert result.code == 2, result
    assert_no_traceback(result)
    [(got_line, _col, message)] = problem_lines(result, "workflows/wf.yaml")
    assert got_line == line
    assert all(word in message for word in words), message
    assert "started" not in result.out


def test_run_by_name_of_an_invalid_workflow_points_at_its_file(project: Project) -> None:
    project.write(
        "workflows/broken.yaml",
        """
        name: broken
        tasks:
          - name: a
            shell: echo a
            retries: many
        """,
    )

    result = project.cli("run", "broken")

    assert result.code == 2, result
    assert_no_traceback(result)
    assert re.search(r"workflows/broken\.yaml:5:\d+: .*retries", result.err), result.err


def test_validate_reports_every_problem_of_a_file_and_of_every_file(project: Project) -> None:
    project.write(
        "workflows/one.yaml",
        """
        name: one
        tasks:
          - name: a
            shell: echo a
          - name: a
            shell: echo a
          - name: b
            after: [nowhere]
            shell: echo b
        """,
    )
    project.write(
        "workflows/two.yaml",
        """
        name: two
        tasks:
          - name: a
            shell: echo a
            timeout: soon
        """,
    )

    result = project.cli("validate", "workflows")

    assert result.code == 2, result
    assert_no_traceback(result)
    lines = result.err.splitlines()
    assert any(ln.startswith("workflows/one.yaml:5:") and "duplicate task name 'a'" in ln for ln in lines), lines
    assert any(ln.startswith("workflows/one.yaml:8:") and "unknown task 'nowhere'" in ln for ln in lines), lines
    assert any(ln.startswith("workflows/two.yaml:5:") and "not a duration" in ln for ln in lines), lines


def test_validate_of_a_valid_file_exits_0(project: Project) -> None:
    project.write("tasks/x.py", "def f(region):\n    return region\n")
    project.write(
        "workflows/good.yaml",
        """
        name: good
        description: stages, conditions, a trigger
        variables: {region: EU}
        preferences: {max_parallel: 2, retries: 1, retry_delay: 5s, timeout: 1h}
        trigger:
          schedule: "30 23 * * *"
          timezone: Europe/Paris
        stages:
          - name: extract
            tasks:
              - name: a
                shell: echo {{ var.region }}
              - name: b
                python: tasks/x.py:f
                with: {region: "{{ var.region }}"}
          - name: finish
            tasks:
              - name: on_error
                after: {a: failure, b: failure}
                when: any
                shell: echo failed
              - name: always
                after: {a: completion}
                if: var.region == 'EU'
                shell: echo done
        """,
    )

    result = project.cli("validate", "workflows/good.yaml")

    assert result.code == 0, result
    assert result.err == ""
    assert "valid" in result.out


def test_yaml_1_2_keeps_on_and_yes_as_strings(project: Project) -> None:
    project.write("flowstage.yaml", 'notifiers:\n  ops: {webhook: "http://127.0.0.1:9/hook"}\n')
    project.write(
        "workflows/alerts.yaml",
        """
        name: alerts
        variables: {answer: yes}
        alerts:
          - {on: failed, notify: [ops]}
        tasks:
          - name: a
            shell: echo {{ var.answer }} > answer.txt
        """,
    )

    assert project.cli("validate", "workflows/alerts.yaml").code == 0
    result = project.cli("run", "alerts", "--json")

    assert result.code == 0, result
    assert json.loads(result.out)["variables"]["answer"] == "yes"
    assert (project.root / "answer.txt").read_text().strip() == "yes"


def test_an_alert_naming_an_unknown_notifier_metric_or_task_is_located_with_a_suggestion(project: Project) -> None:
    project.write("flowstage.yaml", 'notifiers:\n  ops: {webhook: "http://127.0.0.1:9/hook"}\n  team: {command: "true"}\n')
    project.write(
        "workflows/bad_alerts.yaml",
        """
        name: bad_alerts
        alerts:
          - {on: failed, notify: [opps]}
          - {metric: memory_mb, task: lod, op: ">", value: 200, notify: [team]}
        tasks:
          - {name: load, shell: "true"}
        """,
    )
    project.write(
        "workflows/bad_rules.yaml",
        """
        name: bad_rules
        alerts:
          - {metric: memry_mb, task: load, op: ">", value: 200, notify: [team]}
          - {on: faild, notify: [ops]}
        tasks:
          - {name: load, shell: "true"}
        """,
    )
    result = project.cli("validate", "workflows/bad_alerts.yaml", "workflows/bad_rules.yaml")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert "workflows/bad_alerts.yaml:3:27: unknown notifier 'opps' (did you mean 'ops'?) (known: ops, team)" in lines
    assert any(
        line.startswith("workflows/bad_alerts.yaml:4:") and "unknown task 'lod' (did you mean 'load'?)" in line for line in lines
    )
    assert any(
        line.startswith("workflows/bad_rules.yaml:3:") and "unknown metric 'memry_mb' (did you mean 'memory_mb'?)" in line
        for line in lines
    )
    assert any(
        line.startswith("workflows/bad_rules.yaml:4:") and "unknown status 'faild' for on: (did you mean 'failed'?)" in line
        for line in lines
    )
    assert "Traceback" not in result.err


def test_validate_of_a_missing_file_exits_2(project: Project) -> None:
    result = project.cli("validate", "workflows/nothing.yaml")

    assert result.code == 2
    assert_no_traceback(result)
    assert "workflows/nothing.yaml" in result.err
    assert "no such file" in result.err


def test_run_of_an_unknown_workflow_name_exits_2(project: Project) -> None:
    result = project.cli("run", "no_such_workflow")

    assert result.code == 2, result
    assert_no_traceback(result)
    assert "no_such_workflow" in result.err


@pytest.mark.parametrize("var", ["region", "=EU", "1region=EU"])
def test_run_with_a_malformed_var_exits_2(project: Project, var: str) -> None:
    project.write(
        "workflows/wf.yaml",
        """
        name: wf
        tasks:
          - name: a
            shell: touch ran.txt
        """,
    )

    result = project.cli("run", "wf", "--var", var)

    assert result.code == 2, result
    assert_no_traceback(result)
    assert result.err.startswith("error: --var"), result.err
    assert not (project.root / "ran.txt").exists()


def test_schema_prints_a_json_schema_of_workflow_files(project: Project) -> None:
    result = project.cli("schema")

    assert result.code == 0, result
    schema = json.loads(result.out)
    assert "$defs" in schema
    assert schema.get("type") == "object"
    assert {"name", "stages", "tasks", "preferences", "trigger"} <= set(schema["properties"])


def test_init_creates_a_project_whose_example_runs(project: Project) -> None:
    result = project.cli("init", "fresh")

    assert result.code == 0, result
    fresh = Project(project.root / "fresh")
    assert (fresh.root / "workflows").is_dir()
    assert fresh.cli("validate", "workflows").code == 0

    run = fresh.cli("run", "daily_sales", "--json")

    assert run.code == 0, run
    record = json.loads(run.out)
    assert record["workflow"] == "daily_sales"
    assert record["status"] == "succeeded"
    assert all(t["status"] in ("succeeded", "skipped") for t in record["tasks"])


def test_init_refuses_a_folder_that_already_holds_a_project(project: Project) -> None:
    assert project.cli("init", "fresh").code == 0

    again = project.cli("init", "fresh")

    assert again.code == 2, again
    assert_no_traceback(again)
    assert "fresh" in again.err


@pytest.mark.parametrize(
    "args",
    [("frobnicate",), ("run",), ("run", "wf", "--frobnicate"), ("logs", "x", "--level", "loud")],
    ids=["unknown-command", "missing-argument", "unknown-option", "bad-choice"],
)
def test_usage_errors_exit_2(project: Project, args: tuple[str, ...]) -> None:
    result = project.cli(*args)

    assert result.code == 2, result
    assert_no_traceback(result)
    [said] = result.err.splitlines()  # one line: what is wrong, and where help is
    assert said.startswith("error: "), said
    assert "--help" in said, said


def test_show_of_an_unknown_run_exits_2(project: Project) -> None:
    result = project.cli("show", "20000101000000abcdef")

    assert result.code == 2, result
    assert_no_traceback(result)
    assert "20000101000000abcdef" in result.err


def test_a_notifier_of_an_unknown_kind_stops_validate_and_the_run_before_it_starts(project: Project) -> None:
    project.write("flowstage.yaml", 'notifiers:\n  ops: {webhok: "http://127.0.0.1:9/hook"}\n')
    project.write(
        "workflows/alerted.yaml",
        """
        name: alerted
        alerts:
          - {on: failed, notify: [ops]}
        tasks:
          - {name: a, shell: "true"}
        """,
    )
    checked = project.cli("validate", "flowstage.yaml")
    assert checked.code == 2
    assert "notifiers.ops" in checked.err
    assert "did you mean 'webhook'" in checked.err
    ran = project.cli("run", "alerted")
    assert ran.code == 2
    assert "notifiers.ops" in ran.err
    assert "Traceback" not in ran.err + checked.err
    assert project.cli("runs", "--json").out.strip() == "[]"  # nothing was recorded
