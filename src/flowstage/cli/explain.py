"""`explain`: why a task ran, waited or was skipped, and where each of its values came from."""

from __future__ import annotations

from typing import Any

import click

from flowstage.cli.common import brief, emit_json, project_for, store_for


@click.command("explain")
@click.argument("run_id")
@click.argument("task")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
def explain_cmd(run_id: str, task: str, as_json: bool) -> None:
    """Why TASK of RUN_ID ran, waited or was skipped (back to the root cause), its variables and their scopes, its templates rendered."""
    from flowstage.app.explain import explain
    from flowstage.app.runs import get_run

    project = project_for()
    store = store_for(project)
    try:
        found = explain(project, store, get_run(store, run_id), task)
    finally:
        store.close()
    if as_json:
        emit_json(found)
        return
    click.echo(f"task {found['task']} (stage {found['stage']}) of run {found['run']} ({found['workflow']}): {found['status']}")
    click.echo("")
    _print_step(found["decision"], 0)
    roots = found["root_causes"]
    if roots:
        names = ", ".join(f"{r['task']} ({r['status']})" for r in roots)
        click.echo("")
        label = "waiting for" if found["decision"]["verdict"] == "waits" else f"root cause{'s' if len(roots) > 1 else ''}"
        click.echo(f"{label}: {names}")
    if found["if"] is not None:
        click.echo("")
        click.echo(f"if: {found['if']['expression']}  ->  {found['if']['value']}")
    click.echo("")
    if found["variables"]:
        click.echo("variables:")
        width = max(len(v["name"]) for v in found["variables"])
        for v in found["variables"]:
            click.echo(f"  {v['name']:<{width}} = {brief(v['value'], 60):<20}  <- {v['source']}")
    else:
        click.echo("variables: none")
    if found["templates"]:
        click.echo("")
        click.echo("templates:")
        for t in found["templates"]:
            shown = f"error: {t['error']}" if t.get("error") else brief(t["rendered"], 80)
            click.echo(f"  {t['key']}: {brief(t['template'], 60)}  ->  {shown}")


def _print_step(step: dict[str, Any], depth: int) -> None:
    pad = "  " * depth
    arrow = "" if depth == 0 else "<- "
    click.echo(f"{pad}{arrow}{step['task']}: {step['verdict']} ({step['status']}) because {step['because']}")
    if depth == 0 and step["checks"]:
        when = f" (when: {step['when']})" if step["when"] else ""
        click.echo(f"{pad}  conditions{when}:")
        for c in step["checks"]:
            held = {True: "holds", False: "does not hold", None: "not decided yet"}[c["held"]]
            wanted = "pass its stage" if c["condition"] == "stage" else f"be {c['condition']}"
            caught = ", caught" if c["caught"] else ""
            click.echo(f"{pad}    {c['task']} must {wanted}: it is {c['status']}{caught} -> {held}")
    for cause in step["causes"]:
        _print_step(cause, depth + 1)


COMMANDS = [explain_cmd]
