"""`runs`, `show`, `logs` and `graph`: reading the record back."""

from __future__ import annotations

import time
from pathlib import Path

import click

from flowstage.cli.common import brief, emit_json, number, print_table, project_for, short_time, store_for
from flowstage.errors import UsageError
from flowstage.logging import LEVELS, level_name
from flowstage.views.records import iso, json_safe_text, json_text

_UTC_HELP = "Times in UTC (default: local time, its zone named)."


@click.command("runs")
@click.argument("workflow", required=False)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["running", "succeeded", "failed", "cancelled", "timed_out", "interrupted"]),
    help="Only runs with this status (repeatable).",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100000), help="At most this many runs.")
@click.option("--utc", is_flag=True, help=_UTC_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON array, newest first.")
def runs_cmd(workflow: str | None, statuses: tuple[str, ...], limit: int, utc: bool, as_json: bool) -> None:
    """Run history, newest first."""
    from flowstage.app.liveness import effective_status
    from flowstage.views.records import run_summary

    store = store_for(project_for())
    wanted = set(statuses)
    query_statuses = [s if s != "interrupted" else "running" for s in wanted] or None
    found = []
    starts = []
    for run in store.list_runs(workflow=workflow, statuses=query_statuses, limit=limit):
        shown = effective_status(run)
        if wanted and shown not in wanted:
            continue
        found.append(run_summary(run, shown))
        starts.append(run.started_at)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no runs")
        return
    rows = []
    for r, started in zip(found, starts, strict=True):
        duration = f"{r['duration_seconds']:.2f}s" if r["duration_seconds"] is not None else ""
        version = f"v{r['version']}" if r.get("version") else ""
        rows.append([r["id"], r["workflow"], version, r["status"], short_time(started, utc=utc), duration])
    print_table(["ID", "WORKFLOW", "VERSION", "STATUS", "STARTED", "DURATION"], rows, right=(5,))


@click.command("show")
@click.argument("run_id")
@click.option("--utc", is_flag=True, help=_UTC_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
def show_cmd(run_id: str, utc: bool, as_json: bool) -> None:
    """The dynamic view of RUN_ID: each task's status, attempts, times, error, metrics, saved variables."""
    from flowstage.app.liveness import effective_status
    from flowstage.app.runs import get_run
    from flowstage.views.records import run_code, run_metrics, run_record

    store = store_for(project_for())
    run = get_run(store, run_id)
    shown = effective_status(run)
    code = run_code(store, run_id)
    if as_json:
        emit_json(run_record(run, shown, code))
        return
    took = f"{run.ended_at - run.started_at:.2f}s" if run.ended_at else ""
    click.echo(f"run {run.id}  workflow {run.workflow}" + (f" v{run.version}" if run.version else "") + f"  {shown}  {took}")
    click.echo(
        f"started {short_time(run.started_at, utc=utc)}"
        + (f"  ended {short_time(run.ended_at, utc=utc)}" if run.ended_at else "")
    )
    for r in run.resumes:
        click.echo(f"resumed by {r.get('by')} at {short_time(r.get('at'), utc=utc)}")
    if code is not None:
        files = ", ".join(f"{path} {digest.removeprefix('sha256:')[:12]}" for path, digest in code["files"].items())
        click.echo(f"code: v{code['version']} files {files}")
    if run.variables:
        click.echo("variables: " + ", ".join(f"{k}={brief(v)}" for k, v in run.variables.items()))
    measured = run_metrics(run)
    counts = ", ".join(f"{n} {status}" for status, n in measured["tasks"].items())
    click.echo(f"metrics: runtime_seconds={number(measured['runtime_seconds'])}" + (f", tasks: {counts}" if counts else ""))
    click.echo("")
    width = max((len(t.name) for t in run.tasks), default=4)
    swidth = max((len(t.stage) for t in run.tasks), default=5)
    for t in run.tasks:
        took = f"{t.ended_at - t.started_at:.2f}s" if t.started_at and t.ended_at else ""
        line = f"{t.stage:<{swidth}}  {t.name:<{width}}  {t.status!s:<10} {took:>8}  attempts {len(t.attempts)}"
        click.echo(line)
        if t.reason:
            click.echo(f"{'':<{swidth}}  {'':<{width}}  reason: {t.reason}")
        if t.error:
            click.echo(f"{'':<{swidth}}  {'':<{width}}  error: {t.error}")
        if t.saved:  # the value itself: `show --json` (the run's variables above only name it)
            saved = ", ".join(f"{k}={brief(v, 40)}" for k, v in t.saved.items())
            click.echo(f"{'':<{swidth}}  {'':<{width}}  saved: {saved}")
        metrics = {k: v for k, v in t.metrics.items() if k not in ("attempts",)}
        if metrics:
            click.echo(f"{'':<{swidth}}  {'':<{width}}  metrics: " + ", ".join(f"{k}={number(v)}" for k, v in metrics.items()))
    fired = store.alerts.for_run(run_id)  # type: ignore[attr-defined]
    if fired:
        click.echo("")
        for a in fired:
            rule = (
                f"on {a.alert['on']}"
                if a.alert.get("on")
                else f"{a.alert.get('metric')} {a.alert.get('op')} {a.alert.get('value')}"
            )
            where = f"task {a.task} " if a.task else ""
            tries = f" after {a.tries} tr{'y' if a.tries == 1 else 'ies'}" if a.tries else ""
            click.echo(
                f"alert {where}{rule}: value {a.value} -> {a.notifier} {a.delivery}{tries}" + (f": {a.error}" if a.error else "")
            )


#: log lines read from the store at a time: `logs` pages through all of them, printing as it goes
LOG_PAGE = 5_000


class _JsonArray:
    """A JSON array printed item by item (the layout `emit_json` gives a list), so no page is held."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, item: dict[str, object]) -> None:
        body = "\n".join("  " + line for line in json_text(item).splitlines())
        click.echo(("[\n" if self.count == 0 else ",\n") + body, nl=False)
        self.count += 1

    def close(self) -> None:
        click.echo("\n]" if self.count else "[]")


@click.command("logs")
@click.argument("run_id")
@click.argument("task", required=False)
@click.option("--level", default="debug", type=click.Choice(list(LEVELS)), help="Lowest level shown.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option("--utc", is_flag=True, help=_UTC_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the lines as a JSON array (times in ISO 8601).")
def logs_cmd(run_id: str, task: str | None, level: str, follow: bool, utc: bool, as_json: bool) -> None:
    """Log lines of RUN_ID (of one TASK), every one of them, printed as they are read."""
    from flowstage.app.liveness import effective_status
    from flowstage.app.runs import get_run

    store = store_for(project_for())
    run = get_run(store, run_id)
    if task is not None and task not in {t.name for t in run.tasks}:
        raise UsageError(f"run {run_id} has no task {task!r}")
    after = 0
    array = _JsonArray() if as_json else None
    while True:
        lines = store.logs(run_id, task=task, min_level=LEVELS[level], after=after, limit=LOG_PAGE)
        for stored in lines:
            after = stored.id
            ln = stored.line
            if array is not None:
                array.add(
                    {
                        "id": stored.id,
                        "at": iso(ln.at),
                        "level": level_name(ln.level),
                        "task": ln.task,
                        "attempt": ln.attempt,
                        "message": ln.message,
                    }
                )
            else:
                where = f"{ln.task}#{ln.attempt}" if ln.task and ln.attempt else (ln.task or "run")
                click.echo(
                    json_safe_text(f"{short_time(ln.at, utc=utc)} {level_name(ln.level).upper():<8} {where}: {ln.message}")
                )
        if len(lines) == LOG_PAGE:
            continue  # a full page: there may be more already
        if not follow:
            break
        current = get_run(store, run_id)
        if effective_status(current) != "running" and len(lines) == 0:
            break
        if not lines:
            time.sleep(0.3)
    if array is not None:
        array.close()


@click.command("graph")
@click.argument("workflow", required=False)
@click.option("--run", "run_id", default=None, help="Show the dynamic view of this run.")
@click.option("--format", "fmt", default="text", type=click.Choice(["text", "mermaid", "dot", "svg", "json"]))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def graph_cmd(workflow: str | None, run_id: str | None, fmt: str, output: Path | None) -> None:
    """The static view of WORKFLOW, or with --run the dynamic view of a run."""
    from flowstage.app.runs import get_run
    from flowstage.app.workflows import find_workflow
    from flowstage.engine.plan import compile_plan
    from flowstage.model.workflow import Workflow
    from flowstage.views import graph

    project = project_for(workflow)
    statuses = None
    reasons: dict[str, str] = {}
    if run_id is not None:
        run = get_run(store_for(project), run_id)
        wf = Workflow.model_validate(run.definition)
        statuses = {t.name: str(t.status) for t in run.tasks}
        reasons = {t.name: t.reason for t in run.tasks if t.reason}
    elif workflow is None:
        raise UsageError("name a WORKFLOW (or a file), or give --run RUN_ID")
    else:
        wf, _ = find_workflow(project, workflow)
    plan = compile_plan(wf)
    if fmt == "json":
        import json

        text = json.dumps(graph.graph_data(plan, statuses), indent=2) + "\n"
    else:
        text = graph.render(plan, fmt, statuses, reasons)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"-o {output}: cannot write it ({exc.strerror or exc})") from None
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


COMMANDS = [runs_cmd, show_cmd, logs_cmd, graph_cmd]
