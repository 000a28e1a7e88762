"""Scheduling rules: cron fire times across DST, catch-up after downtime, ALL/ANY event triggers.

Pure functions of plain numbers: no store, no clock, no sleeping.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstage.engine.scheduling import (
    MAX_CATCH_UP,
    CronSchedule,
    EndedRun,
    due_times,
    event_fires,
    waiting_for,
    wall_to_instant,
)
from flowstage.model.workflow import AfterWorkflows

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --------------------------------------------------------------------------- cron across DST
# (expression, zone, after, the next fire times as ISO 8601 in the zone)
CRON_CASES = [
    # Paris, clocks forward on 2026-03-29 at 02:00 -> 03:00: 02:xx does not exist that day
    ("30 2 * * *", PARIS, "2026-03-28T03:00:00+01:00", ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
    ("0 2 * * *", PARIS, "2026-03-28T03:00:00+01:00", ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]),
    ("*/15 2 * * *", PARIS, "2026-03-28T23:00:00+01:00", ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]),
    ("0 2,3 * * *", PARIS, "2026-03-29T00:00:00+01:00", ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]),
    (
        "*/30 * * * *",
        PARIS,
        "2026-03-29T01:00:00+01:00",
        ["2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"],
    ),
    ("30 23 * * *", PARIS, "2026-03-28T12:00:00+01:00", ["2026-03-28T23:30:00+01:00", "2026-03-29T23:30:00+02:00"]),
    # Paris, clocks back on 2026-10-25 at 03:00 -> 02:00: 02:xx happens twice, fires once
    ("30 2 * * *", PARIS, "2026-10-24T12:00:00+02:00", ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
    (
        "0 * * * *",
        PARIS,
        "2026-10-25T00:30:00+02:00",
        ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00"],
    ),
    # starting inside the second pass of the repeated hour: 02:30 already fired in the first pass
    ("30 2 * * *", PARIS, "2026-10-25T02:15:00+01:00", ["2026-10-26T02:30:00+01:00"]),
    ("30 23 * * *", PARIS, "2026-10-24T12:00:00+02:00", ["2026-10-24T23:30:00+02:00", "2026-10-25T23:30:00+01:00"]),
    # New York, clocks forward on 2026-03-08 at 02:00 -> 03:00
    ("30 2 * * *", NEW_YORK, "2026-03-07T12:00:00-05:00", ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    (
        "*/30 * * * *",
        NEW_YORK,
        "2026-03-08T01:00:00-05:00",
        ["2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"],
    ),
    ("0 0 * * *", NEW_YORK, "2026-03-07T12:00:00-05:00", ["2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"]),
    # New York, clocks back on 2026-11-01 at 02:00 -> 01:00: 01:xx happens twice, fires once
    ("30 1 * * *", NEW_YORK, "2026-10-31T12:00:00-04:00", ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    ("30 1 * * *", NEW_YORK, "2026-11-01T01:10:00-05:00", ["2026-11-02T01:30:00-05:00"]),
    (
        "*/20 * * * *",
        NEW_YORK,
        "2026-11-01T00:50:00-04:00",
        ["2026-11-01T01:00:00-04:00", "2026-11-01T01:20:00-04:00", "2026-11-01T01:40:00-04:00", "2026-11-01T02:00:00-05:00"],
    ),
    ("0 9 * * 1-5", NEW_YORK, "2026-10-30T10:00:00-04:00", ["2026-11-02T09:00:00-05:00", "2026-11-03T09:00:00-05:00"]),
    # UTC has no changes
    ("30 2 * * *", "UTC", "2026-03-29T00:00:00+00:00", ["2026-03-29T02:30:00+00:00", "2026-03-30T02:30:00+00:00"]),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), CRON_CASES)
def test_cron_next_times_are_dst_correct(expression: str, zone: str, after: str, expected: list[str]) -> None:
    times = CronSchedule(expression, zone).next_times(ts(after), len(expected))
    assert [t.isoformat() for t in times] == expected


def test_next_times_are_in_the_schedule_zone_with_its_offset() -> None:
    (first,) = CronSchedule("30 23 * * *", PARIS).next_times(ts("2026-01-10T00:00:00+00:00"), 1)
    assert first.isoformat() == "2026-01-10T23:30:00+01:00"
    assert first.tzinfo == ZoneInfo(PARIS)


@pytest.mark.parametrize(
    ("wall", "zone", "expected"),
    [
        ("2026-03-29T02:30:00", PARIS, "2026-03-29T01:00:00+00:00"),  # in the gap: the end of the gap
        ("2026-03-29T03:00:00", PARIS, "2026-03-29T01:00:00+00:00"),
        ("2026-10-25T02:30:00", PARIS, "2026-10-25T00:30:00+00:00"),  # twice: the first one
        ("2026-03-08T02:59:00", NEW_YORK, "2026-03-08T07:00:00+00:00"),
        ("2026-11-01T01:30:00", NEW_YORK, "2026-11-01T05:30:00+00:00"),
        ("2026-07-01T12:00:00", "UTC", "2026-07-01T12:00:00+00:00"),
    ],
)
def test_wall_time_maps_to_one_instant(wall: str, zone: str, expected: str) -> None:
    from flowstage.engine.scheduling import zone as tz_of

    assert wall_to_instant(datetime.fromisoformat(wall), tz_of(zone)) == ts(expected)


# A brute-force oracle for the property test: every wall minute of the day that the expression
# matches fires once, at that wall time's first occurrence, or at the end of the gap it falls in.
def _matches(field: str, value: int) -> bool:
    if field == "*":
        return True
    if field.startswith("*/"):
        return value % int(field[2:]) == 0
    return value in {int(v) for v in field.split(",")}


def _oracle(minute: str, hour: str, zone: str, start: datetime, end: datetime) -> list[float]:
    from flowstage.engine.scheduling import zone as tz_of

    tz = tz_of(zone)
    out: set[float] = set()
    wall = start
    while wall < end:
        if _matches(minute, wall.minute) and _matches(hour, wall.hour):
            out.add(wall_to_instant(wall, tz))
        wall += timedelta(minutes=1)
    return sorted(out)


MINUTES = st.sampled_from(["0", "30", "15,45", "*/20", "*/30", "59", "*"])
HOURS = st.sampled_from(["*", "1", "2", "3", "1,2", "2,3", "*/2", "0"])
DAYS = st.sampled_from(
    [(PARIS, "2026-03-29"), (PARIS, "2026-10-25"), (NEW_YORK, "2026-03-08"), (NEW_YORK, "2026-11-01"), (PARIS, "2026-06-01")]
)


@settings(max_examples=60, deadline=None)
@given(minute=MINUTES, hour=HOURS, day=DAYS)
def test_every_matching_wall_time_fires_exactly_once_on_dst_days(minute: str, hour: str, day: tuple[str, str]) -> None:
    zone, date = day
    start = datetime.fromisoformat(date) - timedelta(hours=2)
    end = datetime.fromisoformat(date) + timedelta(hours=26)
    expected = _oracle(minute, hour, zone, start + timedelta(hours=1), end - timedelta(hours=1))
    schedule = CronSchedule(f"{minute} {hour} * * *", zone)
    from flowstage.engine.scheduling import zone as tz_of

    first = wall_to_instant(start + timedelta(hours=1), tz_of(zone)) - 1
    last = wall_to_instant(end - timedelta(hours=1), tz_of(zone))
    got = []
    for at in schedule.after(first):
        if at >= last:
            break
        got.append(at)
    assert got == expected
    assert got == sorted(set(got))  # strictly increasing: no instant twice
    walls = [datetime.fromtimestamp(t, tz_of(zone)).replace(tzinfo=None) for t in got]
    assert len(walls) == len(set(walls))  # no wall time twice


@settings(max_examples=60, deadline=None)
@given(
    expression=st.sampled_from(["*/5 * * * *", "0 * * * *", "30 2 * * *", "0 0 * * 0", "15 3 1 * *"]),
    zone=st.sampled_from([PARIS, NEW_YORK, "UTC", "Asia/Kolkata"]),
    after=st.floats(min_value=1.7e9, max_value=1.9e9),
)
def test_fire_times_are_after_the_start_and_strictly_increasing(expression: str, zone: str, after: float) -> None:
    times = [t.timestamp() for t in CronSchedule(expression, zone).next_times(after, 5)]
    assert len(times) == 5
    assert times[0] > after
    assert all(a < b for a, b in itertools.pairwise(times))


# --------------------------------------------------------------------------- catch-up
HOURLY = CronSchedule("0 * * * *", "UTC")
T0 = ts("2026-05-01T00:00:00+00:00")
HOUR = 3600.0


@pytest.mark.parametrize(
    ("since", "now", "catch_up", "expected"),
    [
        (T0, T0 + 59 * 60, True, []),  # nothing due yet
        (T0, T0 + HOUR, True, [T0 + HOUR]),  # due exactly now
        (T0, T0 + HOUR + 1, False, [T0 + HOUR]),
        (T0, T0 + 3 * HOUR + 600, True, [T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]),  # every missed interval
        (T0, T0 + 3 * HOUR + 600, False, [T0 + 3 * HOUR]),  # only the latest
        (T0 + 3 * HOUR, T0 + 3 * HOUR + 600, True, []),  # already fired: never twice
        (T0 + 1800, T0 + 2 * HOUR, True, [T0 + HOUR, T0 + 2 * HOUR]),  # deployed mid-interval
        (T0, T0, True, []),
        (T0 + HOUR, T0, True, []),  # a clock behind the last fire
    ],
)
def test_due_times_after_downtime(since: float, now: float, catch_up: bool, expected: list[float]) -> None:
    assert due_times(HOURLY, since=since, now=now, catch_up=catch_up) == expected


def test_catch_up_after_a_long_downtime_runs_the_latest_intervals_up_to_the_cap() -> None:
    every_minute = CronSchedule("* * * * *", "UTC")
    due = due_times(every_minute, since=T0, now=T0 + 3 * 86_400, catch_up=True)
    assert len(due) == MAX_CATCH_UP
    assert due[-1] == T0 + 3 * 86_400
    assert due == sorted(due)


def test_without_catch_up_a_month_of_downtime_starts_one_run() -> None:
    daily = CronSchedule("30 23 * * *", PARIS)
    since = ts("2026-01-01T23:30:00+01:00")
    now = ts("2026-02-10T12:00:00+01:00")
    assert due_times(daily, since=since, now=now, catch_up=False) == [ts("2026-02-09T23:30:00+01:00")]


def test_catch_up_across_the_spring_gap_fires_the_missing_time_once() -> None:
    daily = CronSchedule("30 2 * * *", PARIS)
    since = ts("2026-03-27T02:30:00+01:00")
    now = ts("2026-03-30T12:00:00+02:00")
    assert due_times(daily, since=since, now=now, catch_up=True) == [
        ts("2026-03-28T02:30:00+01:00"),
        ts("2026-03-29T03:00:00+02:00"),
        ts("2026-03-30T02:30:00+02:00"),
    ]


@settings(max_examples=80, deadline=None)
@given(
    since_hours=st.integers(min_value=0, max_value=200),
    down_minutes=st.integers(min_value=0, max_value=60 * 72),
    catch_up=st.booleans(),
)
def test_due_times_lie_in_the_missed_window_and_split_it_cleanly(since_hours: int, down_minutes: int, catch_up: bool) -> None:
    since = T0 + since_hours * HOUR
    now = since + down_minutes * 60
    due = due_times(HOURLY, since=since, now=now, catch_up=catch_up)
    assert all(since < t <= now for t in due)
    every = due_times(HOURLY, since=since, now=now, catch_up=True)
    assert due == (every if catch_up else every[-1:])
    # firing up to a middle point and then the rest gives every time once
    middle = since + (now - since) / 2
    first = due_times(HOURLY, since=since, now=middle, catch_up=True)
    rest = due_times(HOURLY, since=first[-1] if first else since, now=now, catch_up=True)
    assert first + rest == every


# --------------------------------------------------------------------------- event triggers
def run(run_id: str, workflow: str, status: str, at: float) -> EndedRun:
    return EndedRun(run_id, workflow, status, at)


ALL_AB = AfterWorkflows(workflows=["a", "b"], status="succeeded", when="all")
ANY_AB = AfterWorkflows(workflows=["a", "b"], status="succeeded", when="any")


@pytest.mark.parametrize(
    ("rule", "runs", "expected"),
    [
        (ALL_AB, [], []),
        (ALL_AB, [run("1", "a", "succeeded", 1)], []),  # b has not succeeded yet
        (ALL_AB, [run("1", "a", "succeeded", 1), run("2", "b", "succeeded", 2)], [(2, ("1", "2"))]),
        (ALL_AB, [run("1", "a", "succeeded", 1), run("2", "b", "failed", 2)], []),  # b failed: not the status asked
        (
            ALL_AB,
            [run("1", "a", "succeeded", 1), run("2", "a", "succeeded", 2), run("3", "b", "succeeded", 3)],
            [(3, ("1", "2", "3"))],
        ),
        (
            ALL_AB,
            [run("1", "a", "succeeded", 1), run("2", "b", "succeeded", 2), run("3", "a", "succeeded", 3)],
            [(2, ("1", "2"))],  # run 3 ended after the rule held: it counts towards the next start
        ),
        (
            ALL_AB,
            [run(str(i), "ab"[i % 2], "succeeded", i) for i in range(6)],
            [(1, ("0", "1")), (3, ("2", "3")), (5, ("4", "5"))],
        ),
        (ANY_AB, [], []),
        (ANY_AB, [run("1", "a", "succeeded", 1)], [(1, ("1",))]),
        (ANY_AB, [run("2", "b", "succeeded", 2), run("1", "a", "succeeded", 1)], [(1, ("1",)), (2, ("2",))]),
        (ANY_AB, [run("1", "a", "failed", 1), run("2", "c", "succeeded", 2)], []),  # wrong status, unwatched workflow
        (
            AfterWorkflows(workflows=["a"], status="failed"),
            [run("1", "a", "timed_out", 1), run("2", "a", "cancelled", 2), run("3", "a", "failed", 3)],
            [(1, ("1",)), (3, ("3",))],
        ),
        (
            AfterWorkflows(workflows=["a", "b"], status="completed", when="all"),
            [run("1", "a", "failed", 1), run("2", "b", "cancelled", 2)],
            [(2, ("1", "2"))],
        ),
    ],
)
def test_event_rules(rule: AfterWorkflows, runs: list[EndedRun], expected: list[tuple[float, tuple[str, ...]]]) -> None:
    assert [(f.logical_time, f.consumed) for f in event_fires(rule, runs)] == expected


def test_an_event_fire_says_which_runs_made_the_rule_hold() -> None:
    (fire,) = event_fires(ALL_AB, [run("r1", "a", "succeeded", 1), run("r2", "b", "succeeded", 2)])
    assert fire.reason == "a succeeded (run r1) and b succeeded (run r2)"


def test_all_rule_tells_what_it_still_waits_for() -> None:
    assert waiting_for(ALL_AB, [run("1", "a", "succeeded", 1)]) == ["b"]
    assert waiting_for(ALL_AB, [run("1", "a", "succeeded", 1), run("2", "b", "succeeded", 2)]) == ["a", "b"]


RUNS = st.lists(
    st.builds(
        EndedRun,
        id=st.uuids().map(str),
        workflow=st.sampled_from(["a", "b", "c"]),
        status=st.sampled_from(["succeeded", "failed", "timed_out", "cancelled"]),
        ended_at=st.floats(min_value=0, max_value=1000, allow_nan=False),
    ),
    max_size=30,
)


@given(runs=RUNS, when=st.sampled_from(["all", "any"]), status=st.sampled_from(["succeeded", "failed", "completed"]))
def test_each_run_is_consumed_by_one_fire_at_most(runs: list[EndedRun], when: str, status: str) -> None:
    rule = AfterWorkflows(workflows=["a", "b"], status=status, when=when)
    fires = event_fires(rule, runs)
    consumed = [i for f in fires for i in f.consumed]
    assert len(consumed) == len(set(consumed))
    assert [f.logical_time for f in fires] == sorted(f.logical_time for f in fires)
    by_id = {r.id: r for r in runs}
    for f in fires:
        watched = {by_id[i].workflow for i in f.consumed}
        assert watched <= {"a", "b"}
        if when == "all":
            assert watched == {"a", "b"}
        else:
            assert len(f.consumed) == 1
    # feeding back only what was not consumed never fires the same runs again
    left = [r for r in runs if r.id not in set(consumed)]
    again = event_fires(rule, left)
    assert not {i for f in again for i in f.consumed} & set(consumed)


def test_times_are_aware_utc_offsets() -> None:
    (t,) = CronSchedule("0 12 * * *", "UTC").next_times(ts("2026-05-01T00:00:00+00:00"), 1)
    assert t.utcoffset() == timedelta(0)
    assert t.tzinfo is UTC
