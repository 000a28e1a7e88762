"""`flowstage run` of a one-task workflow imports nothing that a piped run of it does not use.

A runner is started once per run (by the CLI, the scheduler and the server), so what it imports at
start is paid on every run. What may not be imported: the terminal UI (rich), process tools
(psutil), migrations (alembic), SQLAlchemy on the SQLite store, the warehouse and data engines, the
HTTP client and server stacks, Dask and Spark, and flowstage's modules of other commands.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import Project

FORBIDDEN = (
    "rich",
    "psutil",
    "alembic",
    "sqlalchemy",
    "duckdb",
    "httpx",
    "jinja2",
    "fastapi",
    "uvicorn",
    "starlette",
    "distributed",
    "dask",
    "pyspark",
    "pyarrow",
    "flowstage.api",
    "flowstage.web",
    "flowstage.data",
    "flowstage.scheduler",
    *(f"flowstage.cli.{other}" for other in ("project", "inspect", "catalog", "deploy", "server", "tokens", "notify", "alerts")),
)

# runs the CLI as `flowstage` does, then lists what was imported (at exit, after the run)
PROBE = """
import atexit, sys
atexit.register(lambda: sys.__stderr__.write("MODULES " + " ".join(sorted(sys.modules)) + "\\n"))
sys.argv = ["flowstage", *sys.argv[1:]]
from flowstage.cli.main import main
main()
"""


@pytest.mark.parametrize(
    ("kind", "task"),
    [
        ("in-process python", '{name: only, python: "tasks/t.py:noop", in_process: true}'),
        ("shell", '{name: only, shell: "true"}'),
    ],
)
def test_a_piped_one_task_run_imports_only_what_it_uses(project: Project, kind: str, task: str) -> None:
    project.write("tasks/t.py", "def noop():\n    return None\n")
    project.write("workflows/one.yaml", f"name: one\ntasks:\n  - {task}\n")
    for _ in range(2):  # the first run creates the store; the second is the one measured
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, "run", "workflows/one.yaml", "-q"],
            cwd=project.root,
            capture_output=True,
            text=True,
            timeout=120,
            env=project.env(),
            check=False,
        )
        assert proc.returncode == 0, (kind, proc.stdout, proc.stderr)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    modules = set(line.split()[1:])
    assert "flowstage.engine.runner" in modules, "the probe saw the run"
    imported = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert imported == [], f"a {kind} one-task run imported {imported}"
