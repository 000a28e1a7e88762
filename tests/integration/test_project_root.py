"""The project root, not the caller's working directory (SPEC §4): tasks run with it as their working
directory and relative file names resolve against it, though nothing changes the process's own."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import FLOWSTAGE, Project
from tests.records import tasks_of


def test_a_run_started_from_a_subfolder_reads_and_writes_relative_to_the_project_root(project: Project) -> None:
    project.write("data/numbers.csv", "n\n1\n2\n3\n")
    project.write("tasks/where.py", "import os\n\ndef where():\n    return os.getcwd()\n")
    project.write(
        "workflows/rooted.yaml",
        """
        name: rooted
        tasks:
          - {name: load, sql: "CREATE TABLE numbers AS SELECT * FROM read_csv('data/numbers.csv')"}
          - {name: total, sql: "SELECT sum(n) FROM numbers", save: total, after: [load]}
          - {name: here, shell: "pwd > where.txt"}
          - {name: child, python: tasks/where.py:where, save: child_cwd}
        """,
    )
    elsewhere = project.root / "some" / "sub" / "folder"
    elsewhere.mkdir(parents=True)
    proc = subprocess.run(
        [*FLOWSTAGE, "run", "rooted", "--json"], cwd=elsewhere, capture_output=True, text=True, env=project.env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    tasks = tasks_of(record)
    assert tasks["total"]["saved"] == {"total": 6}
    assert Path(tasks["child"]["saved"]["child_cwd"]).resolve() == project.root.resolve()
    assert Path((project.root / "where.txt").read_text().strip()).resolve() == project.root.resolve()
    assert not (elsewhere / "where.txt").exists()
    assert os.listdir(elsewhere) == []
