"""The in-memory backfill store: the reference implementation of `BackfillStore` (stores/backfills.py).

What a `MemoryRunStore` hands out as `store.backfills`. Every operation runs under one lock, so
a claim checks the backfill's status and `max_active` and takes its time in one step, as the
SQL store's transaction does.
"""

from __future__ import annotations

import builtins
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

from flowstage.stores.backfills import (
    TIME_CANCELLED,
    TIME_QUEUED,
    TIME_RUNNING,
    Backfill,
    BackfillStatus,
    BackfillTime,
    NewBackfill,
    PriorRun,
)
from flowstage.stores.base import StoredRun


class MemoryBackfillStore:
    """Backfills kept in this process's memory, beside a memory run store's runs."""

    def __init__(self, runs: Callable[[], Sequence[StoredRun]]) -> None:
        self._runs = runs
        self._lock = threading.Lock()
        self._heads: dict[str, Backfill] = {}
        self._times: dict[str, dict[float, BackfillTime]] = {}

    def create(self, backfill: NewBackfill) -> None:
        head = Backfill(
            id=backfill.id,
            workflow=backfill.workflow,
            version=backfill.version,
            start=backfill.start,
            end=backfill.end,
            max_active=backfill.max_active,
            reprocess=backfill.reprocess,
            status=BackfillStatus.QUEUED.value,
            created_at=backfill.created_at,
            updated_at=backfill.created_at,
            created_by=backfill.created_by,
        )
        with self._lock:
            if backfill.id in self._heads:
                raise ValueError(f"backfill {backfill.id} exists")
            self._heads[backfill.id] = head
            self._times[backfill.id] = {t.logical_time: t for t in sorted(backfill.times, key=lambda t: t.logical_time)}

    def _view(self, backfill_id: str, *, with_times: bool) -> Backfill:
        times = self._times[backfill_id]
        counts = dict(Counter(t.status for t in times.values()))
        shown = tuple(sorted(times.values(), key=lambda t: t.logical_time)) if with_times else ()
        return replace(self._heads[backfill_id], counts=counts, times=shown)

    def get(self, backfill_id: str) -> Backfill | None:
        with self._lock:
            if backfill_id not in self._heads:
                return None
            return self._view(backfill_id, with_times=True)

    def list(self, *, limit: int = 100) -> builtins.list[Backfill]:
        with self._lock:
            found = [self._view(i, with_times=False) for i in self._heads]
        return sorted(found, key=lambda b: (-b.created_at, b.id))[:limit]

    def set_status(self, backfill_id: str, status: str, *, expect: Sequence[str], at: float) -> bool:
        with self._lock:
            head = self._heads.get(backfill_id)
            if head is None or head.status not in expect:
                return False
            self._heads[backfill_id] = replace(head, status=status, updated_at=at)
            if status == BackfillStatus.CANCELLED.value:
                times = self._times[backfill_id]
                for key, t in times.items():
                    if t.status == TIME_QUEUED:
                        times[key] = replace(t, status=TIME_CANCELLED, ended_at=at)
            return True

    def claim_next(self, backfill_id: str, *, run_id: str, pid: int, host: str, at: float) -> BackfillTime | None:
        with self._lock:
            head = self._heads.get(backfill_id)
            if head is None or head.status != BackfillStatus.RUNNING.value:
                return None
            times = self._times[backfill_id]
            if sum(1 for t in times.values() if t.status == TIME_RUNNING) >= head.max_active:
                return None
            queued = [t for t in times.values() if t.status == TIME_QUEUED]
            if not queued:
                return None
            first = min(queued, key=lambda t: t.logical_time)
            claimed = replace(
                first, status=TIME_RUNNING, run_id=run_id, claimed_pid=pid, claimed_host=host, claimed_at=at, ended_at=None
            )
            times[first.logical_time] = claimed
            self._heads[backfill_id] = replace(head, updated_at=at)
            return claimed

    def take_over(self, backfill_id: str, time: BackfillTime, *, pid: int, host: str, at: float) -> bool:
        with self._lock:
            now = self._times.get(backfill_id, {}).get(time.logical_time)
            same = now is not None and (now.status, now.run_id, now.claimed_pid, now.claimed_host, now.claimed_at) == (
                TIME_RUNNING,
                time.run_id,
                time.claimed_pid,
                time.claimed_host,
                time.claimed_at,
            )
            if not same or now is None:
                return False
            self._times[backfill_id][time.logical_time] = replace(now, claimed_pid=pid, claimed_host=host, claimed_at=at)
            return True

    def finish_time(self, backfill_id: str, logical_time: float, *, run_id: str, status: str, at: float) -> bool:
        with self._lock:
            now = self._times.get(backfill_id, {}).get(logical_time)
            if now is None or now.status != TIME_RUNNING or now.run_id != run_id:
                return False
            self._times[backfill_id][logical_time] = replace(now, status=status, ended_at=at)
            self._heads[backfill_id] = replace(self._heads[backfill_id], updated_at=at)
            return True

    def complete(self, backfill_id: str, *, at: float) -> bool:
        with self._lock:
            head = self._heads.get(backfill_id)
            if head is None or head.status != BackfillStatus.RUNNING.value:
                return False
            if any(t.status in (TIME_QUEUED, TIME_RUNNING) for t in self._times[backfill_id].values()):
                return False
            self._heads[backfill_id] = replace(head, status=BackfillStatus.DONE.value, updated_at=at)
            return True

    def prior_runs(self, workflow: str, *, start: float, end: float) -> builtins.list[PriorRun]:
        found = [
            PriorRun(r.id, r.logical_time, r.status, r.started_at)
            for r in self._runs()
            if r.workflow == workflow and start <= r.logical_time <= end
        ]
        return sorted(found, key=lambda r: (r.started_at, r.id))


__all__ = ["MemoryBackfillStore"]
