"""Cursor paging of the run history, newest first, without counting.

The cursor is the last (started_at, id) of a page, opaque to clients (base64 of JSON). The run
store has no "runs older than (started_at, id)" query yet, so `runs_page` reads growing
windows of `list_runs` (newest first, ordered by started_at then id) and skips to the cursor;
a store query with that condition would replace the loop without changing the API.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass

from flowstage.app.liveness import effective_status
from flowstage.stores.base import RunStore, StoredRun

Key = tuple[float, str]


def encode_cursor(key: Key) -> str:
    return base64.urlsafe_b64encode(json.dumps([key[0], key[1]]).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Key:
    """The (started_at, id) a cursor names; ValueError when it is not one this API made."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        started, run_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a cursor this API gave") from exc
    if not isinstance(started, int | float) or not isinstance(run_id, str):
        raise ValueError("not a cursor this API gave")
    return float(started), run_id


@dataclass(frozen=True)
class RunsPage:
    runs: list[tuple[StoredRun, str]]  # each run with the status to show
    cursor: str | None  # of the next page, None on the last


def runs_page(store: RunStore, *, workflow: str | None, statuses: Sequence[str], limit: int, cursor: Key | None) -> RunsPage:
    """One page of runs (newest first) older than `cursor`, with the cursor of the next page."""
    wanted = set(statuses)
    # `interrupted` is shown, not stored: such a run is stored as running
    query = sorted({"running" if s == "interrupted" else s for s in wanted}) or None
    window = limit + 1
    while True:
        rows = store.list_runs(workflow=workflow, statuses=query, limit=window)
        found: list[tuple[StoredRun, str]] = []
        for run in rows:
            if cursor is not None and (run.started_at, run.id) >= cursor:
                continue
            shown = effective_status(run)
            if wanted and shown not in wanted:
                continue
            found.append((run, shown))
            if len(found) > limit:
                break
        if len(found) > limit or len(rows) < window:
            break
        window *= 4
    page = found[:limit]
    more = len(found) > limit
    return RunsPage(page, encode_cursor((page[-1][0].started_at, page[-1][0].id)) if more and page else None)


__all__ = ["RunsPage", "decode_cursor", "encode_cursor", "runs_page"]
