"""`init`, `validate` and `schema`."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import click

from flowstage.cli.common import emit_json
from flowstage.errors import DefinitionError, ExitCode, Problem, UsageError


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
def init_cmd(directory: Path) -> None:
    """Create a new project with example workflows and sample data."""
    template = Path(__file__).resolve().parent.parent / "project_template"
    if directory.exists() and any(p.name != ".git" for p in directory.iterdir()):
        existing = [p.name for p in directory.iterdir() if (template / p.name).exists()]
        if existing:
            raise UsageError(f"{directory}: already holds {', '.join(sorted(existing))}; choose an empty folder")
    directory.mkdir(parents=True, exist_ok=True)
    for item in template_files(template):
        rel = item.relative_to(template)
        target = directory / rel
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, target)
    click.echo(f"created a flowstage project in {directory}")
    click.echo(f"  cd {directory} && flowstage run daily_sales")
    click.echo("  flowstage run shop_setup && flowstage run campaign_launch")


def template_files(template: Path) -> list[Path]:
    """The template's own files: never what runs of it wrote (what its .gitignore names — the store,
    out/, generated data — and caches), even when the template is the example project itself."""
    import fnmatch

    ignore = ["__pycache__/", ".flowstage/"]
    with contextlib.suppress(OSError):
        ignore += [line.strip() for line in (template / ".gitignore").read_text().splitlines()]
    patterns = [p for p in ignore if p and not p.startswith("#")]

    def ignored(rel: Path) -> bool:
        for pattern in patterns:
            folder = pattern.endswith("/")
            bare = pattern.strip("/")
            for depth in range(1, len(rel.parts) + 1):
                head = Path(*rel.parts[:depth]).as_posix()
                last = depth == len(rel.parts)
                if (not folder or not last or (template / rel).is_dir()) and (
                    fnmatch.fnmatch(head, bare) or ("/" not in bare and fnmatch.fnmatch(rel.parts[depth - 1], bare))
                ):
                    return True
        return False

    return [item for item in sorted(template.rglob("*")) if not ignored(item.relative_to(template))]


def _is_package(path: Path) -> bool:
    """A dataflow package: under packages/, or a document with `sources:` and `steps:` at the top."""
    if "packages" in path.parts:
        return True
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "\nsources:" in "\n" + text and "\nsteps:" in "\n" + text


def _validate_path(path: Path, names: list[tuple[Path, str]], warnings: list[Problem]) -> list[Problem]:
    """The problems of one file; a valid workflow's name is added to `names`, its warnings to `warnings`."""
    from flowstage.app.workflows import python_ref
    from flowstage.model.loader import load

    if python_ref(str(path)) is not None:
        return _validate_python(str(path), names, warnings)
    if path.name == "flowstage.yaml":
        from flowstage.app.checks import project_problems
        from flowstage.app.registry import notifiers_for
        from flowstage.settings import load_project

        try:
            project = load_project(root=path.parent)
        except DefinitionError as exc:
            return exc.problems + _raw_notifier_problems(path)
        try:
            notifiers_for(project)  # the notifiers' settings too, each at its key
        except DefinitionError as exc:
            return exc.problems
        return project_problems(project)
    try:
        if _is_package(path):
            from flowstage.model.dataflow import load_package

            load_package(path)
        else:
            workflow = load(path, notifiers=_notifiers_for(path))
            names.append((path, workflow.name))
            problems = _package_problems(workflow, path) + _project_fit(workflow, path)
            if not problems:
                from flowstage.app.checks import variable_warnings
                from flowstage.settings import find_root

                warnings.extend(variable_warnings(find_root(path.resolve().parent)[0], workflow, path))
            return problems
    except DefinitionError as exc:
        return exc.problems
    return []


def _validate_python(ref: str, names: list[tuple[Path, str]], warnings: list[Problem]) -> list[Problem]:
    """The problems of a workflow built in Python (``module.py:name``), in the module's project."""
    from flowstage.app.checks import variable_warnings
    from flowstage.app.workflows import load_python, python_file, python_ref
    from flowstage.settings import find_root, load_project

    file, name = python_ref(ref) or (ref, "")
    module = Path(file)
    try:
        module = python_file(load_project(), file)
        root = find_root(module.resolve().parent)[0]
        workflow = load_python(load_project(root=root), f"{module}:{name}").workflow
    except DefinitionError as exc:
        return [_as_written(p, module, file) for p in exc.problems]
    names.append((module, workflow.name))
    problems = _package_problems(workflow, module) + _project_fit(workflow, module)
    if not problems:
        warnings.extend(_as_written(w, module, file) for w in variable_warnings(root, workflow, module))
    return [_as_written(p, module, file) for p in problems]


def _as_written(problem: Problem, module: Path, file: str) -> Problem:
    """`problem` at the module's path as the user typed it."""
    if problem.file == str(module):
        return Problem(problem.message, file, problem.line, problem.column)
    return problem


def _raw_notifier_problems(path: Path) -> list[Problem]:
    """The notifiers' problems of a flowstage.yaml that has others too (as written: without `${...}`)."""
    from flowstage.app.registry import NOTIFIERS
    from flowstage.files import read_definition
    from flowstage.model.yamlsource import parse
    from flowstage.notifiers.config import notifiers_from_config

    try:
        data = parse(read_definition(path, "flowstage.yaml"), str(path)).data
    except DefinitionError:
        return []
    section = data.get("notifiers") if isinstance(data, dict) else None
    if section is None or "${" in repr(section):
        return []  # substituted values are checked once the file's other problems are mended
    try:
        notifiers_from_config({"notifiers": section}, where=str(path), kinds=NOTIFIERS, root=path.parent)
    except DefinitionError as exc:
        return exc.problems
    return []


def _project_fit(workflow: object, path: Path) -> list[Problem]:
    """Whether the workflow fits its project: python targets, connections, engines."""
    from flowstage.app.checks import workflow_problems
    from flowstage.model.workflow import Workflow
    from flowstage.settings import find_root, load_project

    assert isinstance(workflow, Workflow)
    try:
        project = load_project(root=find_root(path.resolve().parent)[0])
    except DefinitionError:
        return []  # flowstage.yaml's own problems are reported for it
    return workflow_problems(project, workflow, path)


def _project_files(folder: Path) -> list[Path]:
    """What `validate FOLDER` checks: in a project (flowstage.yaml or workflows/ in it), flowstage.yaml
    and the files under workflows/ and packages/ — never what tasks wrote (out/, data/); in any
    other folder, every YAML and JSON file."""

    def definitions(under: Path) -> list[Path]:
        return sorted(p for p in under.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and ".flowstage" not in p.parts)

    if (folder / "flowstage.yaml").is_file() or (folder / "workflows").is_dir():
        found = [folder / "flowstage.yaml"] if (folder / "flowstage.yaml").is_file() else []
        for sub in ("workflows", "packages"):
            if (folder / sub).is_dir():
                found.extend(definitions(folder / sub))
        return found
    return definitions(folder)


def _notifiers_for(path: Path) -> list[str] | None:
    """The notifiers of the project a workflow file lives in (None when that project does not load:
    its own problems are reported for flowstage.yaml)."""
    from flowstage.settings import find_root, load_project

    try:
        return load_project(root=find_root(path.resolve().parent)[0]).notifier_names
    except DefinitionError:
        return None


def _package_problems(workflow: object, path: Path) -> list[Problem]:
    """Problems of the package files a workflow's dataflow tasks name (found from the project root)."""
    from flowstage.model.dataflow import load_package
    from flowstage.model.kinds.dataflow import DataflowSpec
    from flowstage.model.workflow import Workflow
    from flowstage.settings import find_root

    assert isinstance(workflow, Workflow)
    root, _ = find_root(path.resolve().parent)
    problems: list[Problem] = []
    for _, task in workflow.all_tasks():
        spec = task.spec
        if isinstance(spec, DataflowSpec) and isinstance(spec.dataflow, str):
            package = Path(spec.dataflow)
            package = package if package.is_absolute() else root / package
            try:
                load_package(package)
            except DefinitionError as exc:
                problems.extend(exc.problems)
    return problems


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@click.option("--strict", is_flag=True, help="Fail (exit 2) on warnings too, e.g. a variable nothing defines.")
def validate_cmd(paths: tuple[Path, ...], as_json: bool, strict: bool) -> None:
    """Check workflow files (and flowstage.yaml, or module.py:name of a Workflow built in Python); errors as file:line:col: message."""
    files: list[Path] = []
    for path in paths:
        files.extend(_project_files(path) if path.is_dir() else [path])
    problems: list[Problem] = []
    warnings: list[Problem] = []
    names: list[tuple[Path, str]] = []
    for f in dict.fromkeys(files):
        problems.extend(_validate_path(f, names, warnings))
    from flowstage.app.checks import duplicate_names

    problems.extend(duplicate_names(names))
    if as_json:
        found = [(p, "error") for p in problems] + [(w, "warning") for w in warnings]
        emit_json([{"file": p.file, "line": p.line, "column": p.column, "message": p.message, "level": lv} for p, lv in found])
    else:
        for p in [*problems, *warnings]:
            click.echo(str(p), err=True)
        if not problems and not (strict and warnings):
            counted = f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})" if warnings else ""
            click.echo(f"{len(files)} file{'s' if len(files) != 1 else ''} valid{counted}")
    if problems or (strict and warnings):
        raise SystemExit(int(ExitCode.INVALID_INPUT))


@click.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of workflow files (for editors)."""
    from flowstage.model.schema import workflow_schema

    emit_json(workflow_schema())


COMMANDS = [init_cmd, validate_cmd, schema_cmd]
