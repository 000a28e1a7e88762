"""What `validate` checks beyond a file's own rules: that the workflow fits its project.

A workflow can be well formed and still fail at its first run: a `python:` file or function, a
`sql_file:` or a `spark:` script that does not exist, a connection flowstage.yaml does not define,
a workflow name two files declare, an executor or engine whose package is not installed. Each is found here without running anything
of the user's (a python file is parsed, never imported) and reported at the key that names it.

A template that reads a variable nothing defines (`{{ var.x }}` with no `x` under `variables:`, no
task saving it, no package or trigger declaring it) is a warning rather than an error: a run may
always be given `--var x=...`.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowstage.errors import Problem
from flowstage.model.workflow import Task, Workflow
from flowstage.settings import Project


def _task_paths(workflow: Workflow) -> Iterator[tuple[tuple[Any, ...], Task]]:
    if workflow.tasks is not None:
        for i, task in enumerate(workflow.tasks):
            yield ("tasks", i), task
    else:
        for si, stage in enumerate(workflow.stages or []):
            for i, task in enumerate(stage.tasks):
                yield ("stages", si, "tasks", i), task


class _Locator:
    """Positions of keys in the workflow file, parsed only when there is a problem to place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._source: Any = None

    def problem(self, at: tuple[Any, ...], message: str) -> Problem:
        if self.path.suffix == ".py":  # a workflow built in Python: no YAML to place it in, its key path instead
            key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at).lstrip(".")
            return Problem(f"{key}: {message}", str(self.path))
        if self._source is None:
            from flowstage.files import read_definition
            from flowstage.model.yamlsource import parse

            self._source = parse(read_definition(self.path), str(self.path))
        found: Problem = self._source.problem(at, message)
        return found


def workflow_problems(project: Project, workflow: Workflow, path: Path) -> list[Problem]:
    """The problems of `workflow` (read from `path`) in `project`: python targets and connections."""
    where = _Locator(path)
    problems: list[Problem] = []
    connections = sorted(project.connections)
    for at, task in _task_paths(workflow):
        spec = task.spec
        if spec.kind == "python":
            message = _python_problem(project.root, str(getattr(spec, "python", "")))
            if message:
                problems.append(where.problem((*at, "python"), message))
        for kind_key, file in _files_named(spec):
            if not (Path(file) if Path(file).is_absolute() else project.root / file).is_file():
                message = f"{kind_key}: no such file {file} (relative to the project root {project.root})"
                problems.append(where.problem((*at, kind_key), message))
        for key, name in _connections_named(spec):
            if name not in project.connections:
                from flowstage.model.workflow import did_you_mean

                known = ", ".join(connections)
                problems.append(
                    where.problem((*at, *key), f"unknown connection '{name}'{did_you_mean(name, connections)} (known: {known})")
                )
        if spec.kind == "dataflow" and not isinstance(getattr(spec, "dataflow", None), str):
            engine = getattr(spec.dataflow, "engine", "duckdb")  # type: ignore[attr-defined]
            message = _engine_problem(str(engine))
            if message:
                problems.append(where.problem((*at, "dataflow", "engine"), message))
    return problems


def variable_warnings(root: Path, workflow: Workflow, path: Path) -> list[Problem]:
    """A warning at each template (or `if:`) that reads a variable the workflow never defines.

    Defined are the workflow's and its trigger's `variables:`, what any task saves (`save:`,
    `save_rows:`), the variables of the dataflow packages its tasks run and, within a task, that
    task's own `variables:`. Found by walking each template's syntax tree (`templates.variables_used`).
    """
    from flowstage.model import templates

    known = set(workflow.variables) | set(workflow.trigger.variables if workflow.trigger else {})
    for _, task in _task_paths(workflow):
        known |= _saved_names(task) | _package_variables(root, task)
    where = _Locator(path)
    warnings: list[Problem] = []
    for at, task in _task_paths(workflow):
        local = known | set(task.variables)
        reads: list[tuple[tuple[Any, ...], str]] = []
        if task.if_ is not None:
            reads += [((*at, "if"), name) for name in templates.expression_variables(task.if_)]
        for key, value in _template_values(task):
            for inner, text in _strings(value, ()):
                reads += [((*at, *key, *inner), name) for name in templates.variables_used(text)]
        for key, name in dict.fromkeys(reads):
            if name not in local:
                warnings.append(
                    where.problem(
                        key,
                        f"warning: var.{name} is not declared in variables: and no task saves it; "
                        f"a run fails unless --var {name}=... is given",
                    )
                )
    return warnings


def _saved_names(task: Task) -> set[str]:
    saved = {task.save} if isinstance(task.save, str) else set(task.save or {})
    rows = getattr(task.spec, "save_rows", None)
    return saved | ({rows} if isinstance(rows, str) else set())


def _package_variables(root: Path, task: Task) -> set[str]:
    """The variables a dataflow task's package declares (none when its file does not load)."""
    from flowstage.errors import DefinitionError
    from flowstage.model.dataflow import load_package

    if task.spec.kind != "dataflow":
        return set()
    package: Any = getattr(task.spec, "dataflow", None)
    if isinstance(package, str):
        file = Path(package) if Path(package).is_absolute() else root / package
        try:
            package = load_package(file)
        except DefinitionError:
            return set()
    return set(getattr(package, "variables", None) or {})


def _template_values(task: Task) -> list[tuple[tuple[Any, ...], Any]]:
    """The values of a task whose strings are templates, each with its key."""
    values: list[tuple[tuple[Any, ...], Any]] = [(("with",), task.with_), (("variables",), task.variables)]
    if task.for_each is not None:
        values.append((("for_each",), task.for_each))
    values += [((field,), getattr(task.spec, field)) for field in task.spec.template_fields]
    return values


def _strings(value: Any, at: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*at, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*at, key))
    elif hasattr(value, "model_dump"):  # a spec's nested model (an http request, a sensor's target)
        yield from _strings(value.model_dump(by_alias=True, exclude_defaults=True), at)


def _files_named(spec: Any) -> list[tuple[str, str]]:
    """The files a task's kind reads when it runs (a SQL file, a PySpark script), by key."""
    if spec.kind == "sql" and spec.sql_file is not None:
        return [("sql_file", str(spec.sql_file))]
    if spec.kind == "spark":
        return [("spark", str(spec.script))]
    return []


def _connections_named(spec: Any) -> list[tuple[tuple[str, ...], str]]:
    found: list[tuple[tuple[str, ...], str]] = []
    if spec.kind == "sql":
        found.append((("connection",), spec.connection))
    elif spec.kind == "wait_for" and getattr(spec.wait_for, "sql", None) is not None:
        found.append((("wait_for", "connection"), spec.wait_for.connection))
    elif spec.kind == "crawl" and spec.crawl.connection is not None:
        found.append((("crawl", "connection"), spec.crawl.connection))
    return found


def _python_problem(root: Path, target: str) -> str | None:
    """Why `python: target` cannot be called, found by reading the file (never importing it)."""
    where, _, func = target.rpartition(":")
    if where.endswith(".py"):
        file = Path(where) if Path(where).is_absolute() else root / where
        if not file.is_file():
            return f"python: no such file {where} (relative to the project root {root})"
        return _function_problem(file, func, where)
    module = root.joinpath(*where.split("."))
    for file in (module.with_suffix(".py"), module / "__init__.py"):
        if file.is_file():
            return _function_problem(file, func, where)
    top = where.split(".", 1)[0]
    if (root / top).is_dir() or (root / f"{top}.py").is_file():
        return f"python: no module {where} in the project (looked for {module.relative_to(root)}.py)"
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return f"python: no module {where} (neither in the project nor installed)"
    return None  # an installed package: its functions are not looked into


def _function_problem(file: Path, func: str, where: str) -> str | None:
    try:
        tree = ast.parse(file.read_bytes(), str(file))
    except (SyntaxError, ValueError) as exc:
        line = f" line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        return f"python: {where} does not parse ({type(exc).__name__}{line}: {getattr(exc, 'msg', exc)})"
    except OSError as exc:
        return f"python: cannot read {where}: {exc.strerror or exc}"
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try):
            return None  # defined under a condition: only a run can tell
    if func in names:
        return None
    from flowstage.model.workflow import did_you_mean

    functions = sorted(n for n in names if not n.startswith("_"))
    return f"python: {where} has no function '{func}'{did_you_mean(func, functions)}"


def _engine_problem(engine: str) -> str | None:
    if engine == "spark" and importlib.util.find_spec("pyspark") is None:
        return "engine: spark needs PySpark, which is not installed (pip install 'flowstage[spark]')"
    return None


def project_problems(project: Project) -> list[Problem]:
    """Problems of flowstage.yaml that only show when it is used: an executor whose package is missing."""
    where = str(project.config_file) if project.config_file is not None else "flowstage.yaml"
    if project.executor.startswith("dask://") and importlib.util.find_spec("distributed") is None:
        return [
            Problem(f"executor {project.executor}: needs Dask, which is not installed (pip install 'flowstage[dask]')", where)
        ]
    return []


def duplicate_names(found: list[tuple[Path, str]]) -> list[Problem]:
    """A workflow name declared by two files: a problem at the second one's `name:`."""
    first: dict[str, Path] = {}
    problems: list[Problem] = []
    for path, name in found:
        if name in first:
            problems.append(_Locator(path).problem(("name",), f"workflow '{name}' is declared in {first[name]} too"))
        else:
            first[name] = path
    return problems


__all__ = ["duplicate_names", "project_problems", "variable_warnings", "workflow_problems"]
