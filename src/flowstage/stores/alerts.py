"""The alerts port: each alert that fired, to which notifier, and how its delivery went.

One record per (firing, notifier): the rule as written, the task (None for a run rule), the status
the run or task ended with, the observed value, and the delivery — `pending` until tried, then
`delivered` or `failed` with the tries and the last error (masked), or `suppressed` when the
rule's `every:` period already had a notification (the next one counts it in `repeats`). Adding a
record also appends an `alert_fired` event to the run's event log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from flowstage.engine.ports import Event

DELIVERIES = ("pending", "delivered", "failed", "suppressed")


@dataclass(frozen=True)
class AlertRecord:
    id: int
    run_id: str
    workflow: str
    rule: int
    alert: dict[str, Any]
    rule_key: str
    task: str | None
    status: str
    value: Any
    notifier: str
    fired_at: float
    delivery: str = "pending"
    tries: int = 0
    error: str | None = None
    delivered_at: float | None = None
    repeats: int = 0


class AlertStore(Protocol):
    """Where the alerts that fired are kept (beside the runs)."""

    def add(
        self,
        *,
        run_id: str,
        workflow: str,
        rule: int,
        alert: dict[str, Any],
        rule_key: str,
        task: str | None,
        status: str,
        value: Any,
        notifier: str,
        at: float,
        delivery: str = "pending",
    ) -> AlertRecord:
        """Record a firing for one notifier (and its `alert_fired` event)."""
        ...

    def settle(self, alert_id: int, *, delivery: str, tries: int, error: str | None, at: float, repeats: int = 0) -> None:
        """Record how the delivery went."""
        ...

    def for_run(self, run_id: str) -> list[AlertRecord]:
        """The alerts of one run, in the order they fired."""
        ...

    def recent(self, *, workflow: str | None = None, limit: int = 100) -> list[AlertRecord]:
        """The newest alerts first."""
        ...

    def last_sent(self, workflow: str, rule_key: str, notifier: str) -> AlertRecord | None:
        """The newest alert of this rule and notifier that was not suppressed (what `every:` measures from)."""
        ...

    def suppressed_since(self, workflow: str, rule_key: str, notifier: str, since: float) -> int:
        """How many firings of this rule and notifier were suppressed after `since`."""
        ...


def fired_event(record: AlertRecord) -> Event:
    """The `alert_fired` event of a record, appended to its run's log when it is added."""
    data = {
        "alert_id": record.id,
        "rule": record.rule,
        "alert": record.alert,
        "notifier": record.notifier,
        "value": record.value,
        "delivery": record.delivery,
    }
    return Event(record.run_id, record.fired_at, "alert_fired", record.task, None, data)


__all__ = ["DELIVERIES", "AlertRecord", "AlertStore", "fired_event"]
