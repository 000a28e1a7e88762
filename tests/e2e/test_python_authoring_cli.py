"""`flowstage run module.py:name` and `flowstage validate module.py:name`: workflows built in Python.

The module is a user's file in the project: `name` is a module-level `Workflow` or a function of no
arguments returning one. Whatever goes wrong while importing it is one line at its file and line,
exit 2, never a traceback.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Project

MODULE = """\
from flowstage import Stage, Task, Workflow

from helpers import greeting  # a module beside this one

hello = Workflow(
    name="hello_py",
    variables={"who": "world"},
    stages=[
        Stage(name="greet", tasks=[Task(name="hi", shell="echo " + greeting + " {{ var.who }}")]),
        Stage(name="after", tasks=[Task(name="bye", shell="echo bye", if_="var.who != 'nobody'")]),
    ],
)


def generated():
    return Workflow(name="generated", tasks=[Task(name=f"t{i}", shell=f"echo {i}") for i in range(3)])


not_a_workflow = {"name": "x"}


def needs_args(n):
    return hello
"""


@pytest.fixture
def authored(project: Project) -> Project:
    project.write("flows/pipeline.py", MODULE)
    project.write("flows/helpers.py", 'greeting = "hello"\n')
    return project


def test_run_of_a_module_level_workflow_succeeds_and_records_its_name(authored: Project) -> None:
    result = authored.cli("run", "flows/pipeline.py:hello", "--json", "--var", "who=you")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert (record["workflow"], record["status"], record["variables"]) == ("hello_py", "succeeded", {"who": "you"})
    assert [t["name"] for t in record["tasks"]] == ["hi", "bye"]
    listed = json.loads(authored.cli("runs", "--json").out)
    assert listed[0]["workflow"] == "hello_py"
    shown = authored.cli("logs", record["id"], "hi")
    assert "hello you" in shown.out


def test_run_of_a_function_returning_a_workflow_from_another_folder(authored: Project) -> None:
    elsewhere = authored.root / "flows"
    import subprocess

    from tests.conftest import FLOWSTAGE

    proc = subprocess.run(
        [*FLOWSTAGE, "run", "pipeline.py:generated", "-q"], cwd=elsewhere, capture_output=True, text=True, env=authored.env()
    )
    assert proc.returncode == 0, proc.stderr
    assert "(generated) succeeded" in proc.stdout


def test_validate_of_a_python_workflow(authored: Project) -> None:
    result = authored.cli("validate", "flows/pipeline.py:hello", "flows/pipeline.py:generated")
    assert (result.code, result.out.strip(), result.err) == (0, "2 files valid", "")


@pytest.mark.parametrize(
    ("source", "ref", "message"),
    [
        (
            "import os\nimport not_installed_anywhere\n",
            "bad.py:w",
            "bad.py:2: ModuleNotFoundError: No module named 'not_installed_anywhere'",
        ),
        ("x = 1\nraise RuntimeError('no\\nway')\n", "bad.py:w", "bad.py:2: RuntimeError: no way"),
        ("def broken(:\n", "bad.py:w", "bad.py:1:12: SyntaxError: invalid syntax"),
        ("import sys\nsys.exit(4)\n", "bad.py:w", "bad.py:2: SystemExit: 4"),
        (
            "from flowstage import Task, Workflow\n\nw = Workflow(name='w', tasks=[Task(name='a', shell='true', retries=-1)])\n",
            "bad.py:w",
            "bad.py:3: ValidationError: Task: retries: Input should be greater than or equal to 0",
        ),
        (
            "from flowstage import Task, Workflow\n\nw = Workflow(name='w', tasks=[Task(name='a', shell='true', after='ghost')])\n",
            "bad.py:w",
            "bad.py: w: tasks[0].after.ghost: unknown task 'ghost' in after",
        ),
    ],
    ids=["import error", "exception", "syntax error", "sys.exit", "invalid task", "invalid graph"],
)
@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_error_in_the_module_is_one_line_at_its_file_and_line(
    project: Project, command: str, source: str, ref: str, message: str
) -> None:
    project.write("bad.py", source)
    result = project.cli(command, ref)
    assert result.code == 2, (result.out, result.err)
    assert result.err.strip() == message
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("flows/pipeline.py:missing", "flows/pipeline.py: no name 'missing' in the module; its workflows: hello"),
        (
            "flows/pipeline.py:not_a_workflow",
            "flows/pipeline.py: 'not_a_workflow' is a dict, not a flowstage Workflow (or a function of no arguments returning one)",
        ),
        (
            "flows/pipeline.py:needs_args",
            "flows/pipeline.py: needs_args() takes arguments (n): name a Workflow, or a function of no arguments returning one",
        ),
        ("flows/nowhere.py:hello", "flows/nowhere.py: no such file"),
    ],
    ids=["missing name", "not a workflow", "a function with arguments", "no file"],
)
@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_name_that_is_not_a_workflow_is_exit_2_naming_it(authored: Project, command: str, ref: str, message: str) -> None:
    result = authored.cli(command, ref)
    assert result.code == 2, (result.out, result.err)
    assert result.err.strip() == message


def test_validate_places_a_project_problem_at_the_task_key(project: Project) -> None:
    project.write(
        "conn.py",
        "from flowstage import Task, Workflow\n\nw = Workflow(name='w', tasks=[Task(name='a', sql='SELECT 1', connection='nope')])\n",
    )
    result = project.cli("validate", "conn.py:w")
    assert result.code == 2
    assert result.err.strip() == "conn.py: tasks[0].connection: unknown connection 'nope' (known: warehouse)"


def test_validate_warns_of_an_undeclared_variable_at_the_task_key(project: Project) -> None:
    project.write(
        "warn.py",
        "from flowstage import Task, Workflow\n\nw = Workflow(name='w', tasks=[Task(name='a', shell='echo {{ var.nope }}')])\n",
    )
    result = project.cli("validate", "warn.py:w")
    assert (result.code, result.out.strip()) == (0, "1 file valid (1 warning)")
    assert result.err.startswith("warn.py: tasks[0].shell: warning: var.nope is not declared")
    assert project.cli("validate", "--strict", "warn.py:w").code == 2
