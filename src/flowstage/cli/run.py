"""`run`, `resume` and `cancel`, with live progress on a terminal and a line per change when piped."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowstage.cli.common import emit_json, project_for, store_for
from flowstage.engine.ports import Event, TaskRun
from flowstage.errors import ExitCode
from flowstage.stores.base import StoredRun

if TYPE_CHECKING:
    from flowstage.model.workflow import Workflow

_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "skipped": "dim",
    "cancelled": "yellow",
    "running": "cyan",
    "retrying": "yellow",
    "pending": "dim",
}


class LineProgress:
    """One line per state change (for pipes and logs)."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.t0 = time.monotonic()

    def start(self, run_id: str) -> None:
        self.out.write(f"run {run_id} started\n")
        self.out.flush()

    def __call__(self, event: Event, task: TaskRun | None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
        if event.kind == "task_status" and task is not None:
            extra = ""
            if event.status == "running":
                extra = f" (attempt {event.data.get('attempt', len(task.attempts))})"
            elif event.status == "retrying":
                extra = f" ({event.data.get('error', '')}; retry in {event.data.get('retry_in', 0):g}s)"
            elif event.status == "skipped" and task.reason:
                extra = f" ({task.reason})"
            elif event.status in ("failed", "timed_out") and task.error:
                extra = f" ({task.error})"
            self.out.write(f"{stamp} [{task.stage}] {task.name} {event.status}{extra}\n")
        elif event.kind == "run_finished":
            self.out.write(f"{stamp} run {event.status}\n")
        self.out.flush()

    def stop(self) -> None:
        pass


class LiveProgress:
    """A live table of stages and tasks on a terminal (rich): every task from the start (pending
    ones and later stages too), its attempt, and how many of them are done."""

    #: rows shown at most: what runs now, then the latest changes, then what comes next
    ROWS = 30

    def __init__(self, workflow: Workflow | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=False)
        self.tasks: dict[str, TaskRun] = {}
        self.order: list[str] = []
        self.planned: dict[str, str] = {}  # task -> its stage, for the tasks not started yet
        if workflow is not None:
            stage_names = workflow.stage_names()
            for si, task in workflow.all_tasks():
                self.order.append(task.name)
                self.planned[task.name] = stage_names[si]
        self.changed: list[str] = []  # names in the order of their latest change
        self.t0 = time.monotonic()
        self.run_id = ""
        self._terminal: Any = None
        self.live = Live(console=self.console, refresh_per_second=8, transient=False, get_renderable=self.render)

    def start(self, run_id: str) -> None:
        self.run_id = run_id
        self._terminal = _keys_unechoed()
        self.live.start()

    def __call__(self, event: Event, task: TaskRun | None) -> None:
        if task is not None:
            if task.name not in self.tasks and task.name not in self.planned:
                self.order.append(task.name)
            self.tasks[task.name] = task
            if task.name in self.changed:
                self.changed.remove(task.name)
            self.changed.append(task.name)

    def _rows(self) -> list[str]:
        names = self.order
        if len(names) <= self.ROWS:
            return names
        active = [n for n in self.changed if str(self.tasks[n].status) in ("running", "retrying")]
        recent = [n for n in reversed(self.changed) if n not in active]
        upcoming = [n for n in names if n not in self.tasks]
        picked = list(dict.fromkeys([*active, *recent[: self.ROWS // 3], *upcoming]))[: self.ROWS]
        at = {n: i for i, n in enumerate(names)}
        return sorted(picked, key=lambda n: at.get(n, len(names)))

    def render(self) -> Any:
        from rich.table import Table

        from flowstage.model.statuses import TaskStatus

        final = {s.value for s in TaskStatus if s.value not in ("pending", "running", "retrying")}
        done = sum(1 for t in self.tasks.values() if str(t.status) in final)
        total = len(self.order)
        title = f"run {self.run_id}  {done}/{total} done  {time.monotonic() - self.t0:.1f}s"
        table = Table(title=title, expand=False)
        table.add_column("stage")
        table.add_column("task")
        table.add_column("status")
        table.add_column("attempt", justify="right")
        table.add_column("elapsed", justify="right")
        table.add_column("note", overflow="fold", max_width=60)
        now = time.time()
        for name in self._rows():
            t = self.tasks.get(name)
            if t is None:
                table.add_row(self.planned.get(name, ""), name, f"[{_STYLE['pending']}]pending[/]", "", "", "")
                continue
            status = str(t.status)
            if t.started_at and t.ended_at:
                elapsed = f"{t.ended_at - t.started_at:.1f}s"
            elif t.started_at:
                elapsed = f"{now - t.started_at:.1f}s"
            else:
                elapsed = ""
            attempt = str(len(t.attempts)) if t.attempts else ""
            note = t.reason or t.error or ""
            table.add_row(t.stage, name, f"[{_STYLE.get(status, '')}]{status}[/]", attempt, elapsed, note)
        if total > self.ROWS:
            table.caption = f"{self.ROWS} of {total} tasks shown: those running, the latest changes, the next ones"
        return table

    def stop(self) -> None:
        self.live.stop()
        _keys_echoed(self._terminal)


def _keys_unechoed() -> Any:
    """Keys typed during the live view are not echoed into it (they would leave stale lines);
    the terminal's settings before, to put back."""
    if not sys.stdin.isatty():
        return None
    try:
        import termios

        fd = sys.stdin.fileno()
        before = termios.tcgetattr(fd)
        quiet = termios.tcgetattr(fd)
        quiet[3] &= ~(termios.ECHO | termios.ICANON)
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (ImportError, OSError, ValueError):
        return None
    import atexit

    atexit.register(_keys_echoed, (fd, before))  # put back even if the run ends by an error
    return (fd, before)


def _keys_echoed(saved: Any) -> None:
    if saved is None:
        return
    import termios

    fd, before = saved
    with contextlib.suppress(OSError, ValueError, termios.error):
        termios.tcsetattr(fd, termios.TCSANOW, before)


def _progress(as_json: bool, quiet: bool, workflow: Workflow | None = None) -> Any:
    if as_json or quiet:
        return None
    if sys.stdout.isatty():
        return LiveProgress(workflow)
    return LineProgress(sys.stdout)


def _summary(run: StoredRun) -> str:
    counts: dict[str, int] = {}
    for t in run.tasks:
        counts[str(t.status)] = counts.get(str(t.status), 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    took = (run.ended_at or time.time()) - run.started_at
    return f"run {run.id} ({run.workflow}) {run.status} in {took:.2f}s: {parts}"


def _finish(run: StoredRun, as_json: bool) -> None:
    if as_json:
        from flowstage.views.records import run_record

        emit_json(run_record(run))
    else:
        click.echo(_summary(run))
        failed = [t for t in run.tasks if str(t.status) in ("failed", "timed_out") and t.error]
        for t in failed[:10] if run.status != "succeeded" else []:
            click.echo(f"  {t.name}: {t.error}", err=True)
    raise SystemExit(int(ExitCode.OK if run.status == "succeeded" else ExitCode.RUN_FAILED))


def _detached(run_id: str, as_json: bool) -> None:
    if as_json:
        emit_json({"id": run_id, "status": "running"})
    else:
        click.echo(f"run {run_id} started in the background: flowstage show {run_id} / flowstage logs {run_id} --follow")


def _tell_version(project: Any, found: Any, *, quiet: bool) -> None:
    """On stderr: which deployed version runs, and when the file in workflows/ is not that version."""
    if found.version is None:
        return
    from flowstage.app.workflows import changed_since_deploy

    changed = changed_since_deploy(project, found)
    name = found.workflow.name
    if changed is not None:
        import os

        relative = os.path.relpath(changed)
        changed = changed if relative.startswith("..") else relative
        click.echo(
            f"note: running {name} v{found.version}, the deployed version; {changed} differs from it"
            f" (flowstage deploy {changed} makes it the version that runs)",
            err=True,
        )
    elif not quiet:
        click.echo(f"note: running {name} v{found.version}, the deployed version", err=True)


@click.command("run")
@click.argument("workflow")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="Set a run variable (repeatable).")
@click.option(
    "--executor", default=None, metavar="URL", help="Where tasks run: local (default) or dask://HOST:PORT (a Dask scheduler)."
)
@click.option("--detach", is_flag=True, help="Run in a runner process of its own; print the run id and return.")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress, only the summary.")
def run_cmd(workflow: str, variables: tuple[str, ...], executor: str | None, detach: bool, as_json: bool, quiet: bool) -> None:
    """Run WORKFLOW (a name, a file, or module.py:name of a Workflow built in Python) to its end."""
    from flowstage.app.runs import start_run
    from flowstage.app.workflows import parse_var, python_file, python_ref, resolve_workflow

    module = python_ref(workflow)
    project = project_for(module[0] if module else workflow)
    overrides = dict(parse_var(v) for v in variables)
    store = store_for(project)
    found = resolve_workflow(project, workflow, store=store)  # by name: the current deployed version first
    _tell_version(project, found, quiet=quiet)
    if detach:
        from flowstage.app.detached import detach_run

        path = python_file(project, module[0]) if module else Path(workflow)
        ref = str(path.resolve()) if path.is_file() else workflow
        ref = f"{ref}:{module[1]}" if module else ref
        _detached(detach_run(project, ref, variables=overrides, version=found.version, executor=executor), as_json)
        return
    progress = _progress(as_json, quiet, found.workflow)
    try:
        run = start_run(
            project,
            found.workflow,
            store=store,
            variables=overrides,
            version=found.version,
            source=found.source,
            definition=found.definition,
            executor=executor,
            observer=progress,
            on_created=progress.start if progress else None,
        )
    finally:
        if progress:
            progress.stop()
    _finish(run, as_json)


@click.command("resume")
@click.argument("run_id")
@click.option("--executor", default=None, metavar="URL", help="Where tasks run: local (default) or dask://HOST:PORT.")
@click.option("--detach", is_flag=True, help="Resume in a runner process of its own and return.")
@click.option(
    "--var",
    "variables",
    multiple=True,
    metavar="NAME=VALUE",
    help="A variable holding a password in a URL, which the store keeps masked, given again (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@click.option("-q", "--quiet", is_flag=True)
def resume_cmd(run_id: str, executor: str | None, detach: bool, variables: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """Run again what failed, timed out, was cancelled or never ran in RUN_ID."""
    from flowstage.app.runs import resume_run
    from flowstage.app.workflows import parse_var

    given = dict(parse_var(v) for v in variables)
    project = project_for()
    if detach and given:
        raise click.UsageError("--var is given to a resume in the foreground, not with --detach")
    if detach:
        from flowstage.app.detached import detach_resume

        _detached(detach_resume(project, run_id, executor=executor), as_json)
        return
    store = store_for(project)
    progress = _progress(as_json, quiet)
    try:
        run = resume_run(
            project,
            run_id,
            store=store,
            executor=executor,
            observer=progress,
            on_claimed=progress.start if progress else None,
            variables=given,
        )
    finally:
        if progress:
            progress.stop()
    _finish(run, as_json)


@click.command("cancel")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
def cancel_cmd(run_id: str, as_json: bool) -> None:
    """Stop RUN_ID: running tasks are killed, pending ones cancelled."""
    from flowstage.app.runs import cancel_run

    store = store_for(project_for())
    run = cancel_run(store, run_id)
    if as_json:
        from flowstage.views.records import run_summary

        emit_json(run_summary(run))
    else:
        click.echo(f"run {run.id} {run.status}")


COMMANDS = [run_cmd, resume_cmd, cancel_cmd]
