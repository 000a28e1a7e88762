"""Which alert rules fire: pure functions of the rules and what a task or the run ended with.

A rule with `task:` is looked at when that task ends (any final status but skipped); a rule
without, when the run ends. An `on:` rule fires on its status (`completed`: any final one); a
`metric:` rule when the observed value compares true with its `value` (a metric the task did not
record never fires). What fires carries the rule as written and the observed value: a
notification is built from it, and the record keeps it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowstage.model.workflow import Alert

#: the statuses a task or run ends with that an `on: completed` rule sees
FINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class Firing:
    """One rule that fired: which (its index in the workflow's alerts), on what, and the value seen."""

    rule: int
    alert: Alert
    task: str | None
    status: str
    value: Any

    @property
    def key(self) -> str:
        """What `every:` counts repeats by: a digest of the rule as written."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.alert.as_written(), sort_keys=True).encode("utf-8")).hexdigest()[:32]


def _status_matches(on: str, status: str) -> bool:
    return status in FINAL if on == "completed" else status == on


def _fires(alert: Alert, status: str, metrics: Mapping[str, Any]) -> tuple[bool, Any]:
    if alert.on is not None:
        return _status_matches(alert.on, status), status
    if alert.metric is None or alert.op is None or alert.value is None:  # the model makes this impossible
        return False, None
    observed = metrics.get(alert.metric)
    if isinstance(observed, bool) or not isinstance(observed, int | float):
        return False, observed
    return _OPS[alert.op](observed, alert.value), observed


def task_firings(alerts: Sequence[Alert], task: str, status: str, metrics: Mapping[str, Any]) -> list[Firing]:
    """The rules on `task` that fire now that it ended with `status` and `metrics`."""
    if status not in FINAL:
        return []
    out = []
    for index, alert in enumerate(alerts):
        if alert.task != task:
            continue
        fired, value = _fires(alert, status, metrics)
        if fired:
            out.append(Firing(index, alert, task, status, value))
    return out


def run_firings(alerts: Sequence[Alert], status: str, metrics: Mapping[str, Any]) -> list[Firing]:
    """The run's rules (no `task:`) that fire now that the run ended with `status` and `metrics`."""
    out = []
    for index, alert in enumerate(alerts):
        if alert.task is not None:
            continue
        fired, value = _fires(alert, status, metrics)
        if fired:
            out.append(Firing(index, alert, None, status, value))
    return out


__all__ = ["FINAL", "Firing", "run_firings", "task_firings"]
