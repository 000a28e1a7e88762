"""`deploy`, `workflows`, `versions`, `diff`, `rollback`, `schedule` and `scheduler`."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from flowstage.cli.common import emit_json, project_for, store_for
from flowstage.errors import UsageError
from flowstage.views.records import iso


def _trigger_text(trigger: dict[str, Any] | None) -> str:
    if not trigger:
        return "on demand"
    if trigger.get("schedule"):
        return f"{trigger['schedule']} ({trigger.get('timezone', 'UTC')})"
    after = trigger.get("after") or {}
    names = ", ".join(after.get("workflows", []))
    return f"after {after.get('when', 'all')} of {names} {after.get('status', 'succeeded')}"


def _next_run(definition: dict[str, Any], now: float) -> str | None:
    trigger = definition.get("trigger") or {}
    if not trigger.get("schedule"):
        return None
    from flowstage.engine.scheduling import CronSchedule

    times = CronSchedule(trigger["schedule"], trigger.get("timezone", "UTC")).next_times(now, 1)
    return times[0].isoformat() if times else None


@click.command("deploy")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print what was deployed as JSON.")
def deploy_cmd(paths: tuple[Path, ...], as_json: bool) -> None:
    """Register workflow files (folders are searched): a new version when the content changed."""
    from flowstage.deploy import deploy

    project = project_for(str(paths[0]))
    store = store_for(project)
    outcomes = deploy(project, list(paths), store=store)
    if as_json:
        emit_json(
            [
                {"name": o.name, "version": o.version, "previous": o.previous, "created": o.created, "activated": o.activated}
                for o in outcomes
            ]
        )
        return
    for o in outcomes:
        if o.created:
            was = f" (was {o.previous})" if o.previous else ""
            click.echo(f"{o.name}: version {o.version} deployed{was}")
        elif o.activated:
            click.echo(f"{o.name}: version {o.version} is current again, same content (was {o.previous})")
        else:
            click.echo(f"{o.name}: unchanged, version {o.version}")


@click.command("workflows")
@click.option("--json", "as_json", is_flag=True, help="Print the workflows as a JSON array.")
def workflows_cmd(as_json: bool) -> None:
    """Deployed workflows: current version, trigger, next run, last run."""
    store = store_for(project_for())
    now = time.time()
    found: list[dict[str, Any]] = []
    for w in store.deployments.workflows():
        trigger = w.definition.get("trigger") or None
        last = store.list_runs(workflow=w.name, limit=1)
        found.append(
            {
                "name": w.name,
                "version": w.current_version,
                "versions": w.versions,
                "deployed_at": iso(w.activated_at),
                "trigger": _trigger_text(trigger),
                "next_run": _next_run(w.definition, now),
                "last_run": {"id": last[0].id, "status": last[0].status, "started_at": iso(last[0].started_at)} if last else None,
            }
        )
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no deployed workflows (flowstage deploy workflows/)")
        return
    click.echo(f"{'WORKFLOW':<24} {'VERSION':>7}  {'TRIGGER':<34} {'NEXT RUN':<26} LAST RUN")
    for row in found:
        last_run = f"{row['last_run']['status']} {row['last_run']['started_at'][:19]}" if row["last_run"] else ""
        click.echo(f"{row['name']:<24} {row['version']:>7}  {row['trigger']:<34} {row['next_run'] or '':<26} {last_run}")


@click.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as a JSON array, newest first.")
def versions_cmd(name: str, as_json: bool) -> None:
    """The versions of workflow NAME, newest first (the current one marked)."""
    from flowstage.errors import NotFoundError

    deployments = store_for(project_for()).deployments
    current = deployments.workflow(name)
    if current is None:
        raise NotFoundError(f"workflow {name!r} was never deployed")
    found: list[dict[str, Any]] = [
        {
            "version": v.version,
            "current": v.version == current.current_version,
            "hash": v.content_hash,
            "deployed_at": iso(v.deployed_at),
            "deployed_by": v.deployed_by,
            "source": v.source,
            "files": sorted(v.files),
        }
        for v in deployments.versions(name)
    ]
    if as_json:
        emit_json(found)
        return
    from flowstage.cli.common import print_table, short_time

    rows = [
        [
            "*" if v["current"] else "",
            str(v["version"]),
            short_time(kept.deployed_at),
            v["hash"][:12],
            v["deployed_by"] or "",
            v["source"] or "",
            str(len(v["files"])),
        ]
        for v, kept in zip(found, deployments.versions(name), strict=True)
    ]
    print_table(["CURRENT", "VERSION", "DEPLOYED", "HASH", "BY", "SOURCE", "FILES"], rows, right=(1, 6))


@click.command("diff")
@click.argument("name")
@click.argument("old", type=int)
@click.argument("new", type=int)
def diff_cmd(name: str, old: int, new: int) -> None:
    """A unified diff between versions OLD and NEW of workflow NAME (and the files they reference)."""
    from flowstage.deploy import diff, version_of

    deployments = store_for(project_for()).deployments
    text = diff(version_of(deployments, name, old), version_of(deployments, name, new))
    if text:
        click.echo(text, nl=False)
    else:
        click.echo(f"{name}: versions {old} and {new} are identical")


@click.command("rollback")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the workflow's name and current version as JSON.")
def rollback_cmd(name: str, version: int, as_json: bool) -> None:
    """Make VERSION of workflow NAME current again (the history keeps every version)."""
    from flowstage.deploy import rollback

    outcome = rollback(name, version, store=store_for(project_for()))
    if as_json:
        emit_json(
            {"name": outcome.name, "version": outcome.version, "previous": outcome.previous, "activated": outcome.activated}
        )
    elif outcome.activated:
        click.echo(f"{name}: version {version} is current (was {outcome.previous})")
    else:
        click.echo(f"{name}: version {version} is already current")


@click.command("schedule")
@click.argument("name")
@click.option("--next", "count", default=5, show_default=True, type=click.IntRange(1, 10_000), help="How many fire times.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of times.")
def schedule_cmd(name: str, count: int, as_json: bool) -> None:
    """The next fire times of workflow NAME (its current deployed version, else the file)."""
    from flowstage.app.workflows import resolve_workflow
    from flowstage.engine.scheduling import CronSchedule

    project = project_for(name)
    found = resolve_workflow(project, name)
    trigger = found.workflow.trigger
    if trigger is None or not trigger.schedule:
        what = _trigger_text(trigger.model_dump(mode="json", exclude_none=True) if trigger else None)
        raise UsageError(f"workflow {found.workflow.name!r} has no schedule (it starts {what})")
    times = CronSchedule(trigger.schedule, trigger.timezone).next_times(time.time(), count)
    if as_json:
        emit_json([t.isoformat() for t in times])
        return
    version = f" v{found.version}" if found.version else ""
    click.echo(f"{found.workflow.name}{version}: {trigger.schedule} ({trigger.timezone})")
    for t in times:
        click.echo(t.isoformat())


def _printer(line: str) -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    click.echo(f"{stamp} {line}")
    sys.stdout.flush()


@click.command("scheduler")
@click.option("--workers", default=16, show_default=True, type=click.IntRange(1, 1024), help="Runs driven at once.")
@click.option(
    "--poll", default=1.0, show_default=True, type=click.FloatRange(0.05, 60), help="Seconds between looks at the store."
)
@click.option("--grace", default=10.0, show_default=True, type=click.FloatRange(0), help="On SIGTERM, seconds runs get to end.")
@click.option("--once", is_flag=True, help="Start what is due now, wait for those runs, and exit.")
@click.option("--executor", default=None, metavar="URL", help="Executor: local (default).")
@click.option("--clock-origin", type=float, default=None, hidden=True)
@click.option("--clock-rate", type=float, default=None, hidden=True)
@click.option("--clock-offset", type=float, default=None, hidden=True)
def scheduler_cmd(
    workers: int,
    poll: float,
    grace: float,
    once: bool,
    executor: str | None,
    clock_origin: float | None,
    clock_rate: float | None,
    clock_offset: float | None,
) -> None:
    """Run the schedules and event triggers of deployed workflows until SIGTERM."""
    from flowstage.scheduler import ScaledClock, Scheduler

    project = project_for()
    store = store_for(project)
    clock = None
    if clock_rate is not None or clock_offset is not None:
        # a shifted clock, or one that runs faster than real time: for tests and benchmarks
        origin = time.time() if clock_origin is None else clock_origin
        clock = ScaledClock(origin=origin, rate=clock_rate or 1.0, offset=clock_offset or 0.0)
    scheduler = Scheduler(project, store=store, clock=clock, workers=workers, poll=poll, executor=executor, report=_printer)

    def stop(_signum: int, _frame: Any) -> None:
        scheduler.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.serve(once=once)
    cancelled = scheduler.shutdown(grace=grace)
    if cancelled:
        _printer(f"cancelled {len(cancelled)} run(s) still going after {grace:g}s (resumable): {', '.join(cancelled)}")
    _printer(f"scheduler stopped: {scheduler.stats.started} run(s) started")
    store.close()
    if threading.active_count() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


COMMANDS = [deploy_cmd, workflows_cmd, versions_cmd, diff_cmd, rollback_cmd, schedule_cmd, scheduler_cmd]
