"""The run record of SPEC §5.1 as plain JSON data, and the JSON text every `--json` prints.

JSON has no NaN nor infinity, and UTF-8 cannot hold a lone surrogate (what Python makes of bytes
that are not UTF-8, in an argument such as ``--var x=$'\\xff'``): `json_text` writes NaN and
±infinity as ``null`` and each lone surrogate as U+FFFD, so what it prints is always valid JSON in
valid UTF-8. Data without them costs nothing more than `json.dumps`.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from flowstage.engine.ports import TaskRun
from flowstage.stores.base import StoredRun

_SURROGATE = re.compile("[\ud800-\udfff]")


def _finite(value: Any) -> Any:
    """`value` with NaN and ±infinity replaced by None, inside lists and mappings too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_safe_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (a well-formed pair becomes its character)."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """`data` as JSON that is valid JSON and valid UTF-8: NaN and ±infinity as null, lone surrogates as U+FFFD."""
    import json

    try:
        text = json.dumps(data, indent=indent, default=str, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere
        text = json.dumps(_finite(data), indent=indent, default=str, ensure_ascii=False, allow_nan=False)
    return json_safe_text(text)


def iso(ts: float | None) -> str | None:
    """ISO 8601 with a UTC offset, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _attempt(a: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key in ("started_at", "ended_at"):
        if isinstance(out.get(key), int | float):
            out[key] = iso(out[key])
    return out


def task_record(t: TaskRun) -> dict[str, Any]:
    return {
        "name": t.name,
        "stage": t.stage,
        "status": str(t.status),
        "reason": t.reason,
        "attempts": [_attempt(a) for a in t.attempts],
        "started_at": iso(t.started_at),
        "ended_at": iso(t.ended_at),
        "error": t.error,
        "metrics": t.metrics,
        "saved": t.saved,
        "variables": t.variables,
    }


def run_summary(run: StoredRun, status: str | None = None) -> dict[str, Any]:
    duration = None
    if run.ended_at is not None:
        duration = round(run.ended_at - run.started_at, 3)
    return {
        "id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "status": status or run.status,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "duration_seconds": duration,
    }


def run_code(store: Any, run_id: str) -> dict[str, Any] | None:
    """Which deployed version's files a run reads (recorded right after it started), if any."""
    for _, event in store.events(run_id, limit=4):
        if event.kind == "run_code":
            return {"version": event.data.get("version"), "files": dict(event.data.get("files") or {})}
    return None


def run_record(run: StoredRun, status: str | None = None, code: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole run: summary, variables, every task with its attempts."""
    out = run_summary(run, status)
    if code is not None:
        out["code"] = code
    out.update(
        {
            "variables": run.variables,
            "logical_time": iso(run.logical_time),
            "resumes": [{"by": r.get("by"), "at": iso(r.get("at"))} for r in run.resumes],
            "parent_run_id": run.parent_run_id,
            "metrics": run_metrics(run),
            "tasks": [task_record(t) for t in run.tasks],
        }
    )
    return out


def run_metrics(run: StoredRun) -> dict[str, Any]:
    """The run's own metrics: its runtime (once it ended; None while it runs) and its tasks by status."""
    counts: dict[str, int] = {}
    for task in run.tasks:
        counts[str(task.status)] = counts.get(str(task.status), 0) + 1
    runtime = round(max(0.0, run.ended_at - run.started_at), 3) if run.ended_at is not None else None
    return {"runtime_seconds": runtime, "tasks": dict(sorted(counts.items()))}


def alert_entry(r: Any) -> dict[str, Any]:
    """An alert that fired, as `flowstage alerts --json`, the API and the UI give it."""
    return {
        "id": r.id,
        "run_id": r.run_id,
        "workflow": r.workflow,
        "task": r.task,
        "status": r.status,
        "alert": r.alert,
        "value": r.value,
        "notifier": r.notifier,
        "delivery": r.delivery,
        "tries": r.tries,
        "error": r.error,
        "repeats": r.repeats,
        "fired_at": iso(r.fired_at),
        "delivered_at": iso(r.delivered_at),
    }
