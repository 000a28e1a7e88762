"""The in-memory alert store: the reference implementation of `AlertStore` (stores/alerts.py)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flowstage.engine.ports import Event
from flowstage.stores.alerts import AlertRecord, fired_event


class MemoryAlertStore:
    """Alerts kept in this process's memory; `add_event` appends to the run store's event log."""

    def __init__(self, add_event: Callable[[Event], None]) -> None:
        self._lock = threading.Lock()
        self._rows: list[AlertRecord] = []
        self._add_event = add_event

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
        with self._lock:
            record = AlertRecord(
                len(self._rows) + 1,
                run_id,
                workflow,
                rule,
                copy.deepcopy(alert),
                rule_key,
                task,
                status,
                value,
                notifier,
                at,
                delivery,
            )
            self._rows.append(record)
        self._add_event(fired_event(record))
        return record

    def settle(self, alert_id: int, *, delivery: str, tries: int, error: str | None, at: float, repeats: int = 0) -> None:
        with self._lock:
            row = self._rows[alert_id - 1]
            self._rows[alert_id - 1] = replace(row, delivery=delivery, tries=tries, error=error, delivered_at=at, repeats=repeats)

    def for_run(self, run_id: str) -> list[AlertRecord]:
        with self._lock:
            return [r for r in self._rows if r.run_id == run_id]

    def recent(self, *, workflow: str | None = None, limit: int = 100) -> list[AlertRecord]:
        with self._lock:
            found = [r for r in reversed(self._rows) if workflow is None or r.workflow == workflow]
        return found[:limit]

    def last_sent(self, workflow: str, rule_key: str, notifier: str) -> AlertRecord | None:
        with self._lock:
            for r in reversed(self._rows):
                if (r.workflow, r.rule_key, r.notifier) == (workflow, rule_key, notifier) and r.delivery != "suppressed":
                    return r
        return None

    def suppressed_since(self, workflow: str, rule_key: str, notifier: str, since: float) -> int:
        with self._lock:
            return sum(
                1
                for r in self._rows
                if (r.workflow, r.rule_key, r.notifier) == (workflow, rule_key, notifier)
                and r.delivery == "suppressed"
                and r.fired_at > since
            )


__all__ = ["MemoryAlertStore"]
