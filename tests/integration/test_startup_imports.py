"""`flowstage run` of a one-task workflow imports nothing that a piped run of it does not use.

A runner is started once per run (by the CLI, the scheduler and the server), so what it imports at
start is paid on every run. What may not be imported: the terminal UI (rich), process tools
(psutil), migrations (alembic), SQLAlchemy on the SQLite store, the warehouse and data engines, the
HTTP client and server stacks, Dask and Spark, flowstage's modules of other commands, the
notifiers (the workflow has no alerts), the package metadata (no plug-in is looked for), and — for
a file run before — the YAML reader: the definition validated then is read back.
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
    "flowstage.notifiers",
    "flowstage.app.alerting",
    "flowstage.model.loader",
    "flowstage.model.yamlsource",
    "flowstage.model.dataflow",  # the dataflow package models: for dataflow tasks only
    "yaml",
    "importlib.metadata",
    "cronsim",  # fire times are the scheduler's business
    *(f"flowstage.cli.{other}" for other in ("project", "inspect", "catalog", "deploy", "server", "tokens", "notify", "alerts")),
)

# runs the CLI as `flowstage` does, then lists what was imported and which of flowstage's pydantic
# models built a validator (at exit, after the run)
PROBE = """
import atexit, sys

def built():
    if "pydantic" not in sys.modules:
        return []
    from pydantic import BaseModel
    seen, todo = [], list(BaseModel.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        made = cls.__dict__.get("__pydantic_validator__")
        if cls.__module__.startswith("flowstage.") and made is not None and type(made).__name__ != "MockValSer":
            seen.append(cls.__name__)
    return sorted(seen)

def dataclasses_made():
    return sorted(
        f"{name}.{value.__name__}"
        for name, module in list(sys.modules.items())
        if name.startswith("flowstage.")
        for value in list(vars(module).values())
        if isinstance(value, type) and value.__module__ == name and "__dataclass_fields__" in value.__dict__
    )

atexit.register(lambda: sys.__stderr__.write("DATACLASSES " + " ".join(dataclasses_made()) + "\\n"))
atexit.register(lambda: sys.__stderr__.write("MODULES " + " ".join(sorted(sys.modules)) + "\\n"))
atexit.register(lambda: sys.__stderr__.write("BUILT " + " ".join(built()) + "\\n"))
sys.argv = ["flowstage", *sys.argv[1:]]
from flowstage.cli.main import main
main()
"""


#: an in-process task starts no child process: no supervisor, no warm worker, no sockets or pipes
IN_PROCESS_FORBIDDEN = ("flowstage.tasks._supervisor", "flowstage.tasks._workers", "socket", "subprocess", "selectors")


@pytest.mark.parametrize(
    ("kind", "task", "spec", "forbidden"),
    [
        (
            "in-process python",
            '{name: only, python: "tasks/t.py:noop", in_process: true}',
            "python",
            FORBIDDEN + IN_PROCESS_FORBIDDEN,
        ),
        ("shell", '{name: only, shell: "true"}', "shell", FORBIDDEN),
    ],
)
def test_a_piped_one_task_run_imports_only_what_it_uses(
    project: Project, kind: str, task: str, spec: str, forbidden: tuple[str, ...]
) -> None:
    project.write("tasks/t.py", "def noop():\n    return None\n")
    project.write("workflows/one.yaml", f"name: one\ntasks:\n  - {task}\n")
    for _ in range(3):  # the first run creates the store, the second keeps flowstage.yaml read; the third is measured
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
    imported = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert imported == [], f"a {kind} one-task run imported {imported}"
    # each kind's spec model is built on first use: only the task's own kind is there
    specs = sorted(m for m in modules if m.startswith("flowstage.model.kinds."))
    assert specs == [f"flowstage.model.kinds.{spec}"], specs
    # the second run reads the definition the first one validated: no model builds its validator
    built = next(x for x in proc.stderr.splitlines() if x.startswith("BUILT")).split()[1:]
    assert built == [], f"a {kind} run of an unchanged file validated it again ({built})"
    # the run's records are msgspec structs: a dataclass compiles its generated methods at every start
    made = next(x for x in proc.stderr.splitlines() if x.startswith("DATACLASSES")).split()[1:]
    assert made == [], f"a {kind} run made dataclasses {made}"
