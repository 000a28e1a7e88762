"""`backfill`: run a deployed workflow's schedule over a past range, each logical time at most once.

``flowstage backfill NAME --from T1 --to T2`` records a backfill and drives it in the foreground;
``backfill list|show|pause|resume|cancel`` look after recorded ones. The driving logic lives in
`flowstage.app.backfills`; here are the arguments, the output and the exit codes (0 done, 1 a
backfill that ended with failed runs or was cancelled, 2 bad input, 3 store unreachable).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from flowstage.cli.common import emit_json, print_table, project_for, store_for
from flowstage.errors import ExitCode

if TYPE_CHECKING:
    from flowstage.settings import Project
    from flowstage.stores.backfills import Backfill
    from flowstage.stores.base import RunStore

_SUBCOMMANDS = ("list", "show", "pause", "resume", "cancel", "start")


class _BackfillGroup(click.Group):
    """`backfill NAME ...` starts a backfill; `backfill list|show|...` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in _SUBCOMMANDS and not args[0].startswith("-"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


def _counts_text(backfill: Backfill) -> str:
    from flowstage.app.backfills import times_by_status

    return ", ".join(f"{n} {s}" for s, n in times_by_status(backfill).items()) or "no times"


def _printer(line: str) -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    click.echo(f"{stamp} {line}")
    sys.stdout.flush()


def _drive(project: Project, store: RunStore, backfill_id: str, *, executor: str | None, quiet: bool) -> None:
    """Drive the backfill in the foreground and exit with its outcome's code."""
    from flowstage.app.backfills import BackfillDriver, failed_times

    driver = BackfillDriver(project, store, backfill_id, executor=executor, report=(lambda _line: None) if quiet else _printer)
    signals = {"count": 0}

    def stop(_signum: int, _frame: Any) -> None:
        signals["count"] += 1
        if signals["count"] > 1:  # a second signal: stop now; the runs left are resumed by `backfill resume`
            sys.stdout.flush()
            os._exit(130)
        driver.request_pause()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    backfill = driver.run()
    summary = f"backfill {backfill.id} {backfill.status}: {_counts_text(backfill)}"
    if backfill.status == "paused":
        summary += f" (continue with `flowstage backfill resume {backfill.id}`)"
    click.echo(summary)
    failed = failed_times(backfill)
    store.close()
    code = ExitCode.OK
    if backfill.status == "cancelled" or (backfill.status == "done" and failed):
        code = ExitCode.RUN_FAILED
    sys.stdout.flush()
    if threading.active_count() > 1:
        sys.stderr.flush()
        os._exit(int(code))
    sys.exit(int(code))


@click.group("backfill", cls=_BackfillGroup)
def backfill_group() -> None:
    """Run a deployed workflow's schedule over a past range, each logical time at most once.

    \b
    flowstage backfill NAME --from T1 --to T2 [--max-active N] [--reprocess none|failed|all]
      (every option: flowstage backfill start --help)
    flowstage backfill list|show|pause|resume|cancel ...
    """


@backfill_group.command("start", hidden=True)
@click.argument("name")
@click.option("--from", "start", required=True, metavar="T1", help="First logical time (ISO date or time; the schedule's zone).")
@click.option("--to", "end", required=True, metavar="T2", help="Last logical time (included).")
@click.option("--max-active", type=int, default=None, metavar="N", help="Runs at once (default: the trigger's max_active_runs).")
@click.option(
    "--reprocess",
    default="none",
    show_default=True,
    metavar="failed|all|none",
    help="Times that already have a run: none skips them, failed runs again those whose last run did not succeed, all runs every time.",
)
@click.option("--executor", default=None, metavar="URL", help="Executor: local (default).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line.")
def start_cmd(name: str, start: str, end: str, max_active: int | None, reprocess: str, executor: str | None, quiet: bool) -> None:
    """Backfill workflow NAME over [T1, T2] and drive it in the foreground."""
    from flowstage.app.backfills import create_backfill, mark_running

    project = project_for()
    store = store_for(project)
    backfill = create_backfill(project, store, name, start=start, end=end, max_active=max_active, reprocess=reprocess)
    click.echo(
        f"backfill {backfill.id}: {backfill.workflow} v{backfill.version}, {backfill.total} logical time(s) "
        f"({_counts_text(backfill)}), at most {backfill.max_active} at once"
    )
    sys.stdout.flush()
    mark_running(store, backfill.id)
    _drive(project, store, backfill.id, executor=executor, quiet=quiet)


@backfill_group.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000), help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, newest first.")
def list_cmd(limit: int, as_json: bool) -> None:
    """Backfills, newest first: workflow, range, status, counts."""
    from flowstage.app.backfills import backfill_record, backfill_zone, local_time

    store = store_for(project_for())
    found = store.backfills.list(limit=limit)
    if as_json:
        emit_json([backfill_record(store, b, with_times=False) for b in found])
        return
    if not found:
        click.echo("no backfills (start one with `flowstage backfill NAME --from T1 --to T2`)")
        return
    rows = []
    for b in found:
        tz = backfill_zone(store, b)
        rows.append(
            [b.id, b.workflow, f"v{b.version}", local_time(b.start, tz), local_time(b.end, tz), b.status, _counts_text(b)]
        )
    print_table(["ID", "WORKFLOW", "VERSION", "FROM", "TO", "STATUS", "TIMES"], rows)


@backfill_group.command("show")
@click.argument("backfill_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the backfill with every logical time as JSON.")
def show_cmd(backfill_id: str, as_json: bool) -> None:
    """A backfill: range, status, counts by status, each logical time with its run id and status."""
    from flowstage.app.backfills import backfill_record, get_backfill

    store = store_for(project_for())
    backfill = get_backfill(store, backfill_id)
    entry = backfill_record(store, backfill, with_times=True)
    if as_json:
        emit_json(entry)
        return
    click.echo(f"backfill {backfill.id}: {backfill.workflow} v{backfill.version} {backfill.status}")
    click.echo(f"range: {entry['from']} .. {entry['to']} ({entry['timezone']}), {backfill.total} logical time(s)")
    click.echo(
        f"max active: {backfill.max_active}, reprocess: {backfill.reprocess}, created {entry['created_at']} by {backfill.created_by}"
    )
    click.echo(f"times: {_counts_text(backfill)}")
    print_table(
        ["LOGICAL TIME", "STATUS", "RUN"],
        [
            [t["logical_time"], t["status"], t["run_id"] or (f"(earlier run {t['prior_run_id']})" if t["prior_run_id"] else "")]
            for t in entry["times"]
        ],
    )


@backfill_group.command("pause")
@click.argument("backfill_id", metavar="ID")
def pause_cmd(backfill_id: str) -> None:
    """No new run of the backfill starts; the running ones finish."""
    from flowstage.app.backfills import pause_backfill

    backfill = pause_backfill(store_for(project_for()), backfill_id)
    click.echo(
        f"backfill {backfill.id} paused: {_counts_text(backfill)} (continue with `flowstage backfill resume {backfill.id}`)"
    )


@backfill_group.command("resume")
@click.argument("backfill_id", metavar="ID")
@click.option("--executor", default=None, metavar="URL", help="Executor: local (default).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line.")
def resume_cmd(backfill_id: str, executor: str | None, quiet: bool) -> None:
    """Continue a paused or killed backfill in the foreground: running runs are waited for (or resumed), the rest started."""
    from flowstage.app.backfills import mark_running

    project = project_for()
    store = store_for(project)
    backfill = mark_running(store, backfill_id)
    click.echo(f"backfill {backfill.id}: resuming, {_counts_text(backfill)}")
    sys.stdout.flush()
    _drive(project, store, backfill.id, executor=executor, quiet=quiet)


@backfill_group.command("cancel")
@click.argument("backfill_id", metavar="ID")
def cancel_cmd(backfill_id: str) -> None:
    """No new run starts; the queued times are cancelled and the running runs cancelled."""
    from flowstage.app.backfills import cancel_backfill

    backfill = cancel_backfill(store_for(project_for()), backfill_id)
    click.echo(f"backfill {backfill.id} cancelled: {_counts_text(backfill)}")


COMMANDS = [backfill_group]
