"""`notify test NAME`: send a sample notification through one of flowstage.yaml's notifiers.

Each try's outcome is printed; the exit code is 0 when delivered, 3 when every try failed
(at most 3 tries within 10 s, as for a real alert), 2 for a notifier that is not configured.
"""

from __future__ import annotations

import logging

import click

from flowstage.cli.common import project_for
from flowstage.errors import NotFoundError
from flowstage.notifiers.base import Notification


def sample_notification(name: str) -> Notification:
    """What `notify test` sends: a failed run of a workflow named "sample"."""
    return Notification(
        body={
            "workflow": "sample",
            "run_id": "sample-run",
            "status": "failed",
            "task": "extract",
            "alert": {"on": "failed", "notify": [name]},
            "value": "failed",
        },
        failed_tasks=(("extract", "sample error: this is a test notification from `flowstage notify test`"),),
    )


@click.group("notify")
def notify_group() -> None:
    """The notifiers of flowstage.yaml: send a test notification."""


@notify_group.command("test")
@click.argument("name")
def test_cmd(name: str) -> None:
    """Send a sample notification (workflow "sample", failed) through notifier NAME."""
    from flowstage.app.registry import notifiers_for
    from flowstage.model.workflow import did_you_mean
    from flowstage.notifiers import NotifierError, deliver

    notifiers = notifiers_for(project_for())
    if name not in notifiers:
        known = ", ".join(sorted(notifiers)) or "none (add them under `notifiers:` in flowstage.yaml)"
        raise NotFoundError(f"no notifier {name!r}{did_you_mean(name, list(notifiers))}; notifiers: {known}")
    notifier = notifiers[name]

    def said(n: int, error: str | None) -> None:
        click.echo(f"try {n}: delivered" if error is None else f"try {n}: failed: {error}")

    quiet = logging.NullHandler()  # each try is printed here: its warning need not be printed again
    logging.getLogger("flowstage.notifiers").addHandler(quiet)
    try:
        delivery = deliver(notifier, sample_notification(name), on_try=said)
    finally:
        logging.getLogger("flowstage.notifiers").removeHandler(quiet)
    if delivery.status != "delivered":
        raise NotifierError(f"failed after {delivery.tries} {'try' if delivery.tries == 1 else 'tries'}: {delivery.error}")
    click.echo(f"delivered ({notifier.kind} {name})")


COMMANDS = [notify_group]
