"""Backfills: one workflow's schedule run over a range of past logical times, each time at most once.

A backfill is a record in the run store (`Backfill`) with one row per logical time of its range
(`BackfillTime`), keyed by (backfill id, logical time). Whoever drives a backfill — the
`flowstage backfill` command, a second process resuming it, a process restarted after a kill —
starts a time only after `BackfillStore.claim_next` moved that time's row from `queued` to
`running` with the run id it will create: the claim is a compare-and-set inside a transaction
that also checks the backfill's status and its `max_active` limit, so the database lets exactly
one driver start each time (the same mechanism as trigger fires, docs/adr/0004). A driver
killed between its claim and the run's record leaves a claimed time without a run; another
driver takes it over (`take_over`, a compare-and-set on the claim) and creates the run under the
claimed run id, which the runs table's key makes unique.

`BackfillStore` is the port. `MemoryBackfillStore` (stores/memory_backfills.py) is its reference
implementation, `SqlBackfillStore` (stores/sql/backfills.py) keeps backfills in a SQL run store's
database (tables `backfills` and `backfill_times`); a run store hands out its own as
`store.backfills`.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class BackfillStatus(str, Enum):
    """Where a backfill is: queued → running ⇄ paused → done | cancelled."""

    QUEUED = "queued"  # recorded, not driven yet
    RUNNING = "running"  # its times may be started
    PAUSED = "paused"  # no new run starts; running ones finish
    CANCELLED = "cancelled"  # no new run starts; running ones are cancelled
    DONE = "done"  # every time ran (or was skipped)

    def __str__(self) -> str:
        return self.value


#: no transition leaves these
BACKFILL_FINAL = frozenset({BackfillStatus.CANCELLED, BackfillStatus.DONE})


class Reprocess(str, Enum):
    """What a backfill does with logical times that already have a run."""

    NONE = "none"  # run only the times that have no run yet
    FAILED = "failed"  # and the times whose last run did not succeed
    ALL = "all"  # every time again

    def __str__(self) -> str:
        return self.value


#: a logical time's status: queued, running, skipped, or the final status of its run
TIME_QUEUED = "queued"
TIME_RUNNING = "running"
TIME_SKIPPED = "skipped"
TIME_CANCELLED = "cancelled"
#: a time in one of these statuses ended badly: the backfill ends with exit code 1
TIME_FAILED = frozenset({"failed", "timed_out"})
#: no transition leaves these
TIME_FINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled", TIME_SKIPPED})


@dataclass(frozen=True)
class BackfillTime:
    """One logical time of a backfill and the run that ran (or runs) it."""

    logical_time: float
    status: str
    run_id: str | None = None
    #: the earlier run of this time that made it skipped (reprocess none/failed)
    prior_run_id: str | None = None
    claimed_pid: int | None = None
    claimed_host: str | None = None
    claimed_at: float | None = None
    ended_at: float | None = None


@dataclass(frozen=True)
class Backfill:
    """A backfill as the store keeps it; `times` only when asked for (`get`)."""

    id: str
    workflow: str
    version: int | None
    start: float
    end: float
    max_active: int
    reprocess: str
    status: str
    created_at: float
    updated_at: float
    created_by: str | None = None
    #: how many times are in each status
    counts: dict[str, int] = field(default_factory=dict)
    times: tuple[BackfillTime, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class NewBackfill:
    """A backfill to record: its times in order, each queued or skipped (with the run that made it so)."""

    id: str
    workflow: str
    version: int | None
    start: float
    end: float
    max_active: int
    reprocess: str
    created_at: float
    created_by: str | None
    times: Sequence[BackfillTime]


@dataclass(frozen=True)
class PriorRun:
    """A run of the backfilled workflow at one of the range's logical times."""

    id: str
    logical_time: float
    status: str
    started_at: float


class BackfillStore(Protocol):
    def create(self, backfill: NewBackfill) -> None:
        """Record a backfill (status queued) and its times."""
        ...

    def get(self, backfill_id: str) -> Backfill | None:
        """The backfill with its counts and every time, oldest first; None when there is none."""
        ...

    def list(self, *, limit: int = 100) -> builtins.list[Backfill]:
        """Backfills newest first, with their counts (not their times)."""
        ...

    def set_status(self, backfill_id: str, status: str, *, expect: Sequence[str], at: float) -> bool:
        """Compare-and-set of the backfill's status (from one of `expect`); a cancel also cancels its queued times."""
        ...

    def claim_next(self, backfill_id: str, *, run_id: str, pid: int, host: str, at: float) -> BackfillTime | None:
        """Claim the oldest queued time for a run `run_id`, atomically: only while the backfill is
        running and fewer than its `max_active` times are running. None when nothing was claimed."""
        ...

    def take_over(self, backfill_id: str, time: BackfillTime, *, pid: int, host: str, at: float) -> bool:
        """Take a claimed time over from a driver that died before recording its run (compare-and-set on the claim)."""
        ...

    def finish_time(self, backfill_id: str, logical_time: float, *, run_id: str, status: str, at: float) -> bool:
        """Record how the run `run_id` of a running time ended; False when the time is not running that run."""
        ...

    def complete(self, backfill_id: str, *, at: float) -> bool:
        """Mark a running backfill done when none of its times is queued or running."""
        ...

    def prior_runs(self, workflow: str, *, start: float, end: float) -> builtins.list[PriorRun]:
        """Runs of `workflow` whose logical time is in [start, end], oldest start first."""
        ...


class HasBackfills(Protocol):
    """A run store that keeps backfills beside its runs."""

    @property
    def backfills(self) -> BackfillStore: ...


__all__ = [
    "BACKFILL_FINAL",
    "TIME_CANCELLED",
    "TIME_FAILED",
    "TIME_FINAL",
    "TIME_QUEUED",
    "TIME_RUNNING",
    "TIME_SKIPPED",
    "Backfill",
    "BackfillStatus",
    "BackfillStore",
    "BackfillTime",
    "HasBackfills",
    "NewBackfill",
    "PriorRun",
    "Reprocess",
]
