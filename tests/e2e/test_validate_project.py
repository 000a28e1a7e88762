"""`flowstage validate` finds what would fail at the first run: a workflow that does not fit its
project (a python file or function, a connection, a second workflow of the same name, an engine or
executor whose package is missing) and every problem of flowstage.yaml, each at its line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.conftest import Project


def problems(project: Project, *paths: str, env: dict[str, str] | None = None) -> list[str]:
    result = project.cli("validate", *paths, env=env)
    assert result.code in (0, 2), result.err
    assert "Traceback" not in result.err
    return result.err.strip().splitlines() if result.code else []


def test_python_targets_and_connections_that_do_not_exist_are_found_at_their_key(project: Project) -> None:
    project.write("flowstage.yaml", "connections:\n  shop: sqlite:///shop.db\n")
    project.write("tasks/t.py", "import os\n\n\ndef run():\n    pass\n\n\nhelper = run\n")
    project.write("tasks/pkg/__init__.py", "")
    project.write("tasks/pkg/mod.py", "def go():\n    pass\n")
    project.write(
        "workflows/a.yaml",
        """
        name: a
        tasks:
          - {name: ok1, python: "tasks/t.py:run"}
          - {name: ok2, python: "tasks/t.py:helper"}
          - {name: ok3, python: "tasks.pkg.mod:go"}
          - {name: ok4, python: "json:dumps"}
          - {name: ok5, sql: "select 1", connection: shop}
          - {name: ok6, sql: "select 1"}
          - {name: nofile, python: "tasks/missing.py:run"}
          - {name: nofn, python: "tasks/t.py:rnu"}
          - {name: nomodule, python: "tasks.nothere:go"}
          - {name: noconn, sql: "select 1", connection: shopp}
          - {name: sensor, wait_for: {sql: "select 1", connection: nowhere}}
        """,
    )
    found = problems(project, ".")
    expected = [
        ("workflows/a.yaml:9:", f"python: no such file tasks/missing.py (relative to the project root {project.root})"),
        ("workflows/a.yaml:10:", "python: tasks/t.py has no function 'rnu' (did you mean 'run'?)"),
        ("workflows/a.yaml:11:", "python: no module tasks.nothere in the project (looked for tasks/nothere.py)"),
        ("workflows/a.yaml:12:", "unknown connection 'shopp' (did you mean 'shop'?) (known: shop, warehouse)"),
        ("workflows/a.yaml:13:", "unknown connection 'nowhere' (known: shop, warehouse)"),
    ]
    assert len(found) == len(expected), found
    for line, (where, message) in zip(found, expected, strict=True):
        assert line.startswith(where), (line, where)
        assert line.endswith(message), (line, message)


def test_sql_files_and_spark_scripts_that_do_not_exist_are_found_at_their_key(project: Project) -> None:
    project.write("sql/here.sql", "SELECT 1\n")
    project.write("jobs/here.py", "def main(spark):\n    pass\n")
    project.write(
        "workflows/a.yaml",
        """
        name: a
        tasks:
          - {name: ok1, sql_file: sql/here.sql}
          - {name: ok2, spark: jobs/here.py}
          - {name: nosql, sql_file: sql/gone.sql}
          - {name: nojob, spark: "jobs/gone.py:run"}
        """,
    )
    found = problems(project, "workflows/a.yaml")
    root = project.root
    assert found == [
        f"workflows/a.yaml:5:19: sql_file: no such file sql/gone.sql (relative to the project root {root})",
        f"workflows/a.yaml:6:19: spark: no such file jobs/gone.py (relative to the project root {root})",
    ]


def test_two_files_declaring_one_workflow_name_are_a_problem_at_the_second(project: Project) -> None:
    project.write("workflows/a.yaml", "name: daily\ntasks:\n  - {name: x, shell: 'true'}\n")
    project.write("workflows/b.yaml", "name: daily\ntasks:\n  - {name: y, shell: 'true'}\n")
    assert problems(project, ".") == ["workflows/b.yaml:1:1: workflow 'daily' is declared in workflows/a.yaml too"]


def test_a_project_folder_is_checked_without_what_its_tasks_wrote(project: Project) -> None:
    project.write("workflows/a.yaml", "name: a\ntasks:\n  - {name: x, shell: 'true'}\n")
    project.write("out/result.json", '{"rows": 3}\n')
    project.write("data/generated/batch.yaml", "- not: a workflow\n")
    result = project.cli("validate", ".")
    assert result.code == 0, result.err
    assert "2 files valid" in result.out  # flowstage.yaml and the workflow


def test_every_problem_of_flowstage_yaml_is_told_at_once_at_its_line(project: Project) -> None:
    project.write(
        "flowstage.yaml",
        """
        notifiers:
          ops: {webhook: {url: "http://127.0.0.1:9/x", bogus: 1}}
        spark: {master: "local[1]", colour: red}
        server: {auth: yes-please, prot: 8080}
        stroe: x
        """,
    )
    found = problems(project, "flowstage.yaml")
    text = "\n".join(found)
    assert "flowstage.yaml:5:1: unknown key 'stroe' (did you mean 'store'?)" in text
    assert "flowstage.yaml:2:" in text
    assert "notifiers.ops.webhook.bogus: unknown key 'bogus'" in text
    assert "flowstage.yaml:3:" in text
    assert "unknown key 'colour' under spark" in text
    assert "flowstage.yaml:4:" in text
    assert "server.auth: expected true or false" in text
    assert "unknown key 'prot' under server" in text
    assert len(found) == 5, found


def test_a_server_key_that_is_wrong_stops_every_command(project: Project) -> None:
    project.write("flowstage.yaml", "server: {orphans: maybe}\n")
    result = project.cli("runs")
    assert result.code == 2
    assert "flowstage.yaml:1:10: server.orphans: expected resume or fail" in result.err


# a module set to None in sys.modules is one Python cannot find (find_spec answers None, import fails)
BLOCKER = """
import sys

for name in {blocked!r}:
    sys.modules[name] = None
"""


def without(project: Project, tmp: Path, *modules: str) -> dict[str, str]:
    """An environment where `modules` cannot be found (as if their extra were not installed)."""
    (tmp / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER.format(blocked=set(modules))))
    return project.env(PYTHONPATH=str(tmp))


def test_an_engine_or_executor_whose_package_is_not_installed_is_found(project: Project, tmp_path: Path) -> None:
    project.write("flowstage.yaml", "executor: dask://127.0.0.1:8786\n")
    project.write(
        "workflows/s.yaml",
        """
        name: s
        tasks:
          - name: d
            dataflow:
              name: s
              engine: spark
              sources: {a: {file: a.csv}}
              steps: [{from: a}]
              sink: {file: out/a.parquet}
        """,
    )
    assert problems(project, ".") == [], "with the extras installed all is well"
    env = without(project, tmp_path, "pyspark", "distributed")
    found = problems(project, ".", env=env)
    assert any("executor dask://127.0.0.1:8786: needs Dask, which is not installed" in p for p in found), found
    assert any(p.startswith("workflows/s.yaml:") and "engine: spark needs PySpark, which is not installed" in p for p in found), (
        found
    )


def test_validate_json_lists_the_new_problems_too(project: Project) -> None:
    project.write("workflows/a.yaml", "name: a\ntasks:\n  - {name: x, python: 'tasks/none.py:f'}\n")
    result = project.cli("validate", ".", "--json")
    assert result.code == 2
    (problem,) = json.loads(result.out)
    assert problem["file"] == "workflows/a.yaml"
    assert problem["line"] == 3
    assert "no such file tasks/none.py" in problem["message"]
