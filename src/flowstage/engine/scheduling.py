"""Scheduling decisions: cron fire times across DST, catch-up after downtime, ALL/ANY event triggers.

No I/O and no clock reads here: callers pass `now` (the scheduler service reads it from an
injected `Clock`), so every rule is tested with plain numbers.

Cron times are wall times in the trigger's time zone, and every wall time the expression matches
fires exactly once a day, whatever the clocks do:
- a wall time that does not exist (the hour skipped when clocks go forward) fires once, at the
  first valid instant after the gap (``30 2 * * *`` in Paris on the last Sunday of March fires
  at 03:00+02:00); several missing times that all land there fire once;
- a wall time that exists twice (the hour repeated when clocks go back) fires once, at its first
  occurrence. An hourly schedule therefore does not fire again in the repeated hour; a schedule
  that must follow elapsed time uses ``timezone: UTC``.
cronsim matches the expression; the mapping from wall time to instant is done here, because
cronsim given an aware start inside the repeated hour can answer an instant before the start.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from msgspec import Struct

from flowstage.model.conditions import When
from flowstage.model.workflow import AfterWorkflows

#: a catch-up after a long downtime runs at most this many missed intervals (the latest ones)
MAX_CATCH_UP = 1000
#: how many matches to look at before giving up on finding a later one (a guard, never reached by a real cron)
_MAX_SCAN = 1_000_000


@lru_cache(maxsize=256)
def zone(name: str) -> tzinfo:
    """The tzinfo of an IANA zone name (UTC for "UTC")."""
    return UTC if name.upper() == "UTC" else ZoneInfo(name)


def _wall(instant: float, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(instant, tz).replace(tzinfo=None)


def wall_to_instant(wall: datetime, tz: tzinfo) -> float:
    """The instant (epoch seconds) a naive wall time fires at in `tz`.

    An ambiguous wall time maps to its first occurrence; a wall time inside a gap maps to the
    end of the gap (the first valid instant after it).
    """
    if tz is UTC:
        return wall.replace(tzinfo=UTC).timestamp()
    first = wall.replace(tzinfo=tz, fold=0).timestamp()
    if _wall(first, tz) == wall:
        return first
    # In a gap: fold=1 reads the wall time with the offset after the change (an earlier instant),
    # fold=0 with the offset before (a later one); the change itself lies between them.
    lo = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    hi = int(first) + 1
    lo, hi = min(lo, hi), max(lo, hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if _wall(mid, tz) >= wall:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


class CronSchedule(Struct, frozen=True):
    """A 5-field cron expression read in a time zone."""

    expression: str
    timezone: str = "UTC"

    def after(self, instant: float) -> Iterator[float]:
        """Fire instants strictly after `instant`, in order, each once."""
        from cronsim import CronSim  # loaded by the scheduler, not by every run

        tz = zone(self.timezone)
        start = _wall(instant, tz)
        last = instant
        for scanned, wall in enumerate(CronSim(self.expression, start)):
            if scanned >= _MAX_SCAN:
                return
            at = wall_to_instant(wall, tz)
            if at > last:
                last = at
                yield at

    def next_after(self, instant: float) -> float | None:
        """The first fire instant after `instant` (None if the expression never matches again)."""
        return next(self.after(instant), None)

    def next_times(self, instant: float, count: int) -> list[datetime]:
        """The next `count` fire times after `instant`, as aware datetimes in the schedule's zone."""
        tz = zone(self.timezone)
        out: list[datetime] = []
        for at in self.after(instant):
            if len(out) >= count:
                break
            out.append(datetime.fromtimestamp(at, tz))
        return out

    def latest_at_or_before(self, instant: float, *, since: float) -> float | None:
        """The last fire instant in (since, instant], found without walking a long downtime."""
        for window in (3_600.0, 86_400.0, 32 * 86_400.0, 400 * 86_400.0, None):
            lower = since if window is None else max(since, instant - window)
            found = None
            for at in self.after(lower):
                if at > instant:
                    break
                found = at
            if found is not None or lower <= since:
                return found
        return None  # pragma: no cover - the loop ends with lower == since


def due_times(schedule: CronSchedule, *, since: float, now: float, catch_up: bool, limit: int = MAX_CATCH_UP) -> list[float]:
    """Which fire times to start now, oldest first.

    `since` is the last time already fired (or the moment the schedule was deployed). With
    `catch_up`, every interval missed in (since, now] runs (at most the latest `limit`); without,
    only the latest one, so a scheduler that was down for a week starts one run, not seven.
    """
    if now <= since:
        return []
    if not catch_up:
        latest = schedule.latest_at_or_before(now, since=since)
        return [] if latest is None else [latest]
    missed: deque[float] = deque(maxlen=max(1, limit))
    for at in schedule.after(since):
        if at > now:
            break
        missed.append(at)
    return list(missed)


# --------------------------------------------------------------------------- event triggers
#: which run statuses each `after: {status: ...}` accepts
STATUS_RULES: dict[str, frozenset[str]] = {
    "succeeded": frozenset({"succeeded"}),
    "failed": frozenset({"failed", "timed_out"}),
    "completed": frozenset({"succeeded", "failed", "timed_out", "cancelled"}),
}


class EndedRun(Struct, frozen=True):
    """A run of a watched workflow that has ended."""

    id: str
    workflow: str
    status: str
    ended_at: float


class EventFire(Struct, frozen=True):
    """One start of the watching workflow: when its rule held, and the runs that made it hold."""

    logical_time: float
    consumed: tuple[str, ...]
    reason: str


def event_fires(rule: AfterWorkflows, runs: Sequence[EndedRun]) -> list[EventFire]:
    """The starts that `runs` (ended, not consumed by an earlier start) call for, oldest first.

    ANY fires once per matching run. ALL fires once every watched workflow has a matching run
    since the previous start; the runs of that window are consumed by it, and runs that ended
    after the rule held count towards the next start.
    """
    accepted = STATUS_RULES[rule.status]
    watched = set(rule.workflows)
    relevant = sorted(
        (r for r in runs if r.workflow in watched and r.status in accepted),
        key=lambda r: (r.ended_at, r.id),
    )
    if rule.when == When.ANY:
        return [EventFire(r.ended_at, (r.id,), f"{r.workflow} {r.status} (run {r.id})") for r in relevant]
    fires: list[EventFire] = []
    window: list[EndedRun] = []
    latest: dict[str, EndedRun] = {}
    for r in relevant:
        window.append(r)
        latest[r.workflow] = r
        if len(latest) == len(watched):
            reason = " and ".join(f"{w} {latest[w].status} (run {latest[w].id})" for w in rule.workflows)
            fires.append(EventFire(r.ended_at, tuple(x.id for x in window), reason))
            window, latest = [], {}
    return fires


def waiting_for(rule: AfterWorkflows, runs: Sequence[EndedRun]) -> list[str]:
    """The watched workflows an ALL rule still waits for (after the starts `runs` call for)."""
    accepted = STATUS_RULES[rule.status]
    fired = event_fires(rule, runs)
    consumed = {i for f in fired for i in f.consumed}
    seen = {r.workflow for r in runs if r.status in accepted and r.id not in consumed and r.workflow in rule.workflows}
    return [w for w in rule.workflows if w not in seen]


__all__ = [
    "MAX_CATCH_UP",
    "STATUS_RULES",
    "CronSchedule",
    "EndedRun",
    "EventFire",
    "due_times",
    "event_fires",
    "waiting_for",
    "wall_to_instant",
    "zone",
]
