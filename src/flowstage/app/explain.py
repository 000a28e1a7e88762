"""`flowstage explain RUN TASK`: why a task ran, waited or was skipped, and with which values.

Read from the record alone (the run's stored definition, its overrides and each task's recorded
variables and saved values), so it explains runs of any age, runs of other hosts and runs still
going. The decision chain comes from `engine.explain` (the runner's own rules); here each of the
task's variables is traced to the scope it came from, and its templates are rendered again with
the values recorded for its last attempt.
"""

from __future__ import annotations

from typing import Any

from flowstage.engine import attempts
from flowstage.engine.explain import Step, why
from flowstage.engine.plan import compile_plan
from flowstage.engine.ports import TaskRun
from flowstage.errors import FlowstageError, NotFoundError
from flowstage.model import templates
from flowstage.model.statuses import TASK_FINAL, TaskStatus
from flowstage.model.workflow import Task, Workflow
from flowstage.settings import Project
from flowstage.stores.base import RunStore, StoredRun


def explain(project: Project, store: RunStore, run: StoredRun, task_name: str) -> dict[str, Any]:
    """The explanation of one task of `run` as plain data (what `explain --json` prints)."""
    from flowstage.app.definitions import validate_definition
    from flowstage.app.liveness import effective_status
    from flowstage.app.runs import logical_datetime

    records = {t.name: t for t in run.tasks}
    record = records.get(task_name)
    if record is None:
        known = ", ".join(t.name for t in run.tasks[:20])
        raise NotFoundError(f"run {run.id} has no task {task_name!r} (its tasks: {known})")
    workflow, _ = validate_definition(project, dict(run.definition))
    plan = compile_plan(workflow)
    node = plan.nodes[task_name]
    task = node.task

    def status(name: str) -> TaskStatus:
        found = records.get(name)
        return TaskStatus(found.status) if found is not None else TaskStatus.PENDING

    chain = why(
        plan,
        status,
        task_name,
        reasons={t.name: t.reason for t in run.tasks},
        errors={t.name: t.error for t in run.tasks},
        ended={t.name: t.ended_at for t in run.tasks if TaskStatus(t.status) in TASK_FINAL},
        decided={t.name: _decided_at(t) for t in run.tasks},
    )
    origin = _override_origin(store, run)
    scope, sources = _scope(workflow, task, run, record, origin, project)
    info = attempts.RunInfo(
        run.id, run.workflow, run.version, logical_datetime(workflow, run.logical_time), run.root, run.runner_host or ""
    )
    return {
        "run": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "run_status": effective_status(run),
        "task": task_name,
        "stage": record.stage,
        "status": str(record.status),
        "attempts": len(record.attempts),
        "decision": chain.to_dict(),
        "root_causes": [s.to_dict() | {"causes": []} for s in _roots(chain)] if chain.causes else [],
        "if": _if(task, scope, info, record.stage),
        "variables": sources,
        "templates": _templates(task, scope, info, record),
    }


def _decided_at(record: TaskRun) -> float | None:
    """When the runner decided the task: its first attempt's start, or when it was skipped."""
    if record.attempts and isinstance(record.attempts[0].get("started_at"), int | float):
        return float(record.attempts[0]["started_at"])
    if TaskStatus(record.status) is TaskStatus.SKIPPED:
        return record.ended_at
    return record.started_at


def _roots(step: Step) -> list[Step]:
    """The steps where the chain ends: what happened first."""
    if not step.causes:
        return [step]
    out: list[Step] = []
    for cause in step.causes:
        for found in _roots(cause):
            if all(found.task != o.task for o in out):
                out.append(found)
    return out


def _override_origin(store: RunStore, run: StoredRun) -> str:
    """Where the run's overrides came from: a parent task, a trigger, or whoever started it."""
    if run.parent_run_id:
        return f"the parent run {run.parent_run_id}'s `workflow:` task"
    try:
        fires = store.deployments.fires(run.workflow, limit=10_000)
    except FlowstageError:
        fires = []
    for fire in fires:
        if fire.run_id == run.id:
            return "the trigger's variables (a scheduled run)" if fire.kind == "schedule" else "the trigger's variables"
    return "--var (or the API's run variables)"


def _scope(
    workflow: Workflow, task: Task, run: StoredRun, record: TaskRun, origin: str, project: Project
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The task's variables and, for each, the scope that gave its value (highest first)."""
    savers = _savers(run, record)
    own = dict(task.variables)
    package: dict[str, Any] = {}
    package_name = None
    if task.spec.kind == "dataflow":
        package, package_name = _package_variables(task, project)
    if record.variables:
        scope = dict(record.variables)
    else:  # never started: what it would have seen when it was decided
        scope = {**workflow.variables, **run.overrides}
        scope.update({name: value for name, (value, _) in savers.items()})
        for name in own:
            scope.pop(name, None)
    out = []
    for name in sorted(scope):
        value = scope[name]
        if name in own:
            raw = own[name]
            source = "the task's variables:" + (f" ({raw!r} rendered)" if templates.contains_template(raw) else "")
        elif name in package:
            source = f"the dataflow package's variables: ({package_name})"
        elif name in savers:
            _, saver = savers[name]
            source = f"saved by task {saver}"
        elif name in run.overrides:
            source = origin
        elif name in workflow.variables:
            source = "the workflow's variables:"
        else:
            source = "the run's variables"
        out.append({"name": name, "value": value, "source": source})
    return scope, out


def _savers(run: StoredRun, record: TaskRun) -> dict[str, tuple[Any, str]]:
    """For each saved variable, its value and the task that saved it last before `record` started."""
    began = record.started_at if record.started_at is not None else record.ended_at
    done = sorted(
        (t for t in run.tasks if t.saved and t.name != record.name and t.ended_at is not None),
        key=lambda t: t.ended_at or 0.0,
    )
    found: dict[str, tuple[Any, str]] = {}
    for t in done:
        if began is not None and (t.ended_at or 0.0) > began:
            continue
        for name, value in t.saved.items():
            found[name] = (value, t.name)
    return found


def _package_variables(task: Task, project: Project) -> tuple[dict[str, Any], str]:
    from flowstage.tasks.dataflow import package_of

    try:
        package, file = package_of(task.spec, project.root)  # type: ignore[arg-type]
    except FlowstageError:
        return {}, ""
    return dict(package.variables), file or "inline"


def _context(task: Task, scope: dict[str, Any], info: attempts.RunInfo, stage: str, attempt: int) -> dict[str, Any]:
    return {"var": dict(scope), "run": info.context(), "task": {"name": task.name, "attempt": attempt, "stage": stage}}


def _if(task: Task, scope: dict[str, Any], info: attempts.RunInfo, stage: str) -> dict[str, Any] | None:
    if task.if_ is None:
        return None
    try:
        value: Any = bool(templates.evaluate(task.if_, _context(task, scope, info, stage, 1)))
    except FlowstageError as exc:
        value = f"cannot be evaluated: {exc}"
    return {"expression": task.if_, "value": value}


def _templates(task: Task, scope: dict[str, Any], info: attempts.RunInfo, record: TaskRun) -> list[dict[str, Any]]:
    """Each templated value of the task, as written and as rendered for its last attempt."""
    last = record.attempts[-1] if record.attempts else {}
    number = int(last.get("number") or 1)
    ctx = _context(task, scope, info, record.stage, number)
    if "item" in last or "instance" in last:
        ctx["task"].update({"instance": last.get("instance"), "item": last.get("item")})
    found: list[tuple[str, Any, bool]] = [(f"with.{k}", v, False) for k, v in task.with_.items()]
    spec = task.spec.model_dump(by_alias=True)
    for name in task.spec.template_fields:
        found.extend(_leaves(name, spec.get(name), shell=(name == task.spec.kind == "shell")))
    if isinstance(task.for_each, str):
        found.append(("for_each", task.for_each, False))
    out = []
    for where, raw, shell in found:
        if not templates.contains_template(raw):
            continue
        try:
            rendered: Any = templates.render(raw, ctx, shell=shell)
            error = None
        except FlowstageError as exc:
            rendered, error = None, str(exc)
        out.append({"key": where, "template": raw, "rendered": rendered, **({"error": error} if error else {})})
    return out


def _leaves(where: str, value: Any, *, shell: bool) -> list[tuple[str, Any, bool]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(f"{where}.{k}", v, shell=shell)]
    return [(where, value, shell)]


__all__ = ["explain"]
