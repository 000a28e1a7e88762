"""A deployed version keeps the files its tasks name, and its runs use them (scheduled, rolled back, resumed).

Deploy, change the SQL and python files, roll back: the old SQL and code run, and `show` says
which version and file hashes ran.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from typing import Any

from tests.conftest import Project, Result

WORKFLOW = """
name: pinned
tasks:
  - name: insert
    sql_file: sql/insert.sql
    connection: local
  - name: code
    python: tasks/mark.py:mark
    after: [insert]
"""

SQL = "INSERT INTO seen (v) SELECT '{label}' FROM gate"
CODE = "def mark():\n    with open('marks.txt', 'a') as f:\n        f.write('{label}\\n')\n    return '{label}'\n"


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}\nstdout:\n{result.out}\nstderr:\n{result.err}"
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).out)


def write_version(project: Project, label: str) -> None:
    project.write("sql/insert.sql", SQL.format(label=label))
    project.write("tasks/mark.py", CODE.format(label=label))


def seen(project: Project) -> list[str]:
    with closing(sqlite3.connect(project.root / "local.db")) as db, db:
        return [r[0] for r in db.execute("SELECT v FROM seen ORDER BY rowid")]


def setup(project: Project) -> None:
    project.write("flowstage.yaml", "connections:\n  local: sqlite:///local.db\n")
    project.write("workflows/pinned.yaml", WORKFLOW)
    with closing(sqlite3.connect(project.root / "local.db")) as db, db:
        db.execute("CREATE TABLE seen (v TEXT)")
        db.execute("CREATE TABLE gate (x INT)")
        db.execute("INSERT INTO gate VALUES (1)")


def test_a_rolled_back_version_runs_its_own_sql_and_code_and_show_says_which(project: Project) -> None:
    setup(project)
    write_version(project, "one")
    ok(project.cli("deploy", "workflows"))
    write_version(project, "two")
    ok(project.cli("deploy", "workflows"))

    run2 = as_json(project.cli("run", "pinned", "--json"))
    assert run2["version"] == 2
    ok(project.cli("rollback", "pinned", "1"))
    write_version(project, "three")  # today's files: never deployed
    run1 = as_json(project.cli("run", "pinned", "--json"))
    assert run1["version"] == 1
    assert run1["status"] == "succeeded"
    assert seen(project) == ["two", "one"]
    assert (project.root / "marks.txt").read_text().splitlines() == ["two", "one"]
    assert [t["saved"] for t in run1["tasks"]] == [{}, {}]

    shown = as_json(project.cli("show", run1["id"], "--json"))
    digest = "sha256:" + hashlib.sha256(SQL.format(label="one").encode()).hexdigest()
    assert shown["code"]["version"] == 1
    assert shown["code"]["files"]["sql/insert.sql"] == digest
    assert "tasks/mark.py" in shown["code"]["files"]
    text = ok(project.cli("show", run1["id"])).out
    assert f"code: v1 files sql/insert.sql {digest.removeprefix('sha256:')[:12]}" in text


def test_a_resumed_run_reads_the_files_of_its_version_not_todays(project: Project) -> None:
    setup(project)
    with closing(sqlite3.connect(project.root / "local.db")) as db, db:
        db.execute("DROP TABLE gate")  # the first try fails
    write_version(project, "deployed")
    ok(project.cli("deploy", "workflows"))
    failed = project.cli("run", "pinned", "--json")
    assert failed.code == 1
    run_id = json.loads(failed.out)["id"]

    write_version(project, "edited-later")
    with closing(sqlite3.connect(project.root / "local.db")) as db, db:
        db.execute("CREATE TABLE gate (x INT)")
        db.execute("INSERT INTO gate VALUES (1)")
    resumed = as_json(project.cli("resume", run_id, "--json"))
    assert resumed["status"] == "succeeded"
    assert seen(project) == ["deployed"]
    assert (project.root / "marks.txt").read_text().splitlines() == ["deployed"]


def test_a_workflow_file_that_was_never_deployed_reads_todays_files(project: Project) -> None:
    setup(project)
    write_version(project, "today")
    run = as_json(project.cli("run", "workflows/pinned.yaml", "--json"))
    assert run["version"] is None
    assert "code" not in as_json(project.cli("show", run["id"], "--json"))
    assert seen(project) == ["today"]
