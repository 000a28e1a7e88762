"""`alerts`: the alerts that fired, newest first (of one run with `--run`), and how each delivery went."""

from __future__ import annotations

from typing import Any

import click

from flowstage.cli.common import emit_json, project_for, store_for
from flowstage.errors import NotFoundError
from flowstage.views.records import alert_entry


def _rule(alert: dict[str, Any]) -> str:
    where = f"task {alert['task']} " if alert.get("task") else ""
    if "on" in alert:
        return f"{where}on {alert['on']}"
    return f"{where}{alert.get('metric')} {alert.get('op')} {alert.get('value')}"


@click.command("alerts")
@click.option("--run", "run_id", help="Only the alerts of this run.")
@click.option("--workflow", help="Only the alerts of this workflow.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def alerts_cmd(run_id: str | None, workflow: str | None, limit: int, as_json: bool) -> None:
    """The alerts that fired, newest first: rule, value seen, notifier and delivery (tries, error)."""
    store = store_for(project_for())
    try:
        if run_id is not None:
            if store.get_run(run_id, with_tasks=False) is None:
                raise NotFoundError(f"no run {run_id!r}")
            found = list(reversed(store.alerts.for_run(run_id)))[:limit]  # type: ignore[attr-defined]
        else:
            found = store.alerts.recent(workflow=workflow, limit=limit)  # type: ignore[attr-defined]
        entries = [alert_entry(r) for r in found]
    finally:
        store.close()
    if as_json:
        emit_json(entries)
        return
    if not entries:
        click.echo("no alert fired" + (f" in run {run_id}" if run_id else ""))
        return
    for e in entries:
        tries = f" after {e['tries']} tr{'y' if e['tries'] == 1 else 'ies'}" if e["tries"] else ""
        folded = f" (+{e['repeats']} folded)" if e["repeats"] else ""
        error = f": {e['error']}" if e["error"] else ""
        click.echo(
            f"{e['fired_at']}  {e['workflow']}  run {e['run_id']}  {_rule(e['alert'])}  value {e['value']}  "
            f"→ {e['notifier']}: {e['delivery']}{tries}{folded}{error}"
        )


COMMANDS = [alerts_cmd]
