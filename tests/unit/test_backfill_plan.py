"""The pure parts of a backfill: which logical times a range holds, how times are read, what `reprocess` decides."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstage.app.backfills import decide, logical_times, parse_time
from flowstage.engine.scheduling import CronSchedule
from flowstage.errors import UsageError
from flowstage.stores.backfills import PriorRun, Reprocess

PARIS = ZoneInfo("Europe/Paris")


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def shown(times: list[float], tz: ZoneInfo = PARIS) -> list[str]:
    return [datetime.fromtimestamp(t, tz).isoformat() for t in times]


@pytest.mark.parametrize(
    ("reprocess", "latest", "expected"),
    [
        (Reprocess.NONE, None, "queued"),
        (Reprocess.NONE, "succeeded", "skipped"),
        (Reprocess.NONE, "failed", "skipped"),
        (Reprocess.NONE, "running", "skipped"),
        (Reprocess.FAILED, None, "queued"),
        (Reprocess.FAILED, "succeeded", "skipped"),
        (Reprocess.FAILED, "failed", "queued"),
        (Reprocess.FAILED, "timed_out", "queued"),
        (Reprocess.FAILED, "cancelled", "queued"),
        (Reprocess.FAILED, "running", "skipped"),
        (Reprocess.ALL, None, "queued"),
        (Reprocess.ALL, "succeeded", "queued"),
        (Reprocess.ALL, "failed", "queued"),
    ],
)
def test_reprocess_decides_from_the_latest_earlier_run(reprocess: Reprocess, latest: str | None, expected: str) -> None:
    prior = None if latest is None else PriorRun("r1", 0.0, latest, 0.0)
    assert decide(reprocess, prior) == expected


@pytest.mark.parametrize(
    ("expression", "start", "end", "expected"),
    [
        # both ends included
        ("0 * * * *", "2026-01-01T00:00+01:00", "2026-01-01T02:00+01:00", ["00:00:00+01:00", "01:00:00+01:00", "02:00:00+01:00"]),
        # a start between two fire times begins at the next one
        ("0 * * * *", "2026-01-01T00:30+01:00", "2026-01-01T02:00+01:00", ["01:00:00+01:00", "02:00:00+01:00"]),
        # spring forward: 02:00 does not exist, it fires once at 03:00 with 03:00 itself
        (
            "0 * * * *",
            "2026-03-29T00:00+01:00",
            "2026-03-29T04:00+02:00",
            ["00:00:00+01:00", "01:00:00+01:00", "03:00:00+02:00", "04:00:00+02:00"],
        ),
        ("30 2 * * *", "2026-03-29T00:00+01:00", "2026-03-29T12:00+02:00", ["03:00:00+02:00"]),
        # fall back: the repeated hour fires once, at its first occurrence
        ("0 * * * *", "2026-10-25T01:00+02:00", "2026-10-25T03:00+01:00", ["01:00:00+02:00", "02:00:00+02:00", "03:00:00+01:00"]),
        ("30 2 * * *", "2026-10-25T00:00+02:00", "2026-10-25T12:00+01:00", ["02:30:00+02:00"]),
        # nothing in the range
        ("0 0 * * *", "2026-01-01T01:00+01:00", "2026-01-01T02:00+01:00", []),
    ],
)
def test_logical_times_are_the_schedules_fire_times_in_the_range(
    expression: str, start: str, end: str, expected: list[str]
) -> None:
    times = logical_times(CronSchedule(expression, "Europe/Paris"), at(start), at(end))
    assert [s.split("T")[1] for s in shown(times)] == expected


def test_a_range_of_more_times_than_the_limit_is_refused() -> None:
    hourly = CronSchedule("0 * * * *")
    assert len(logical_times(hourly, at("2026-01-01T00:00+00:00"), at("2026-01-01T09:00+00:00"), limit=10)) == 10
    with pytest.raises(UsageError, match="more than 10 logical times"):
        logical_times(hourly, at("2026-01-01T00:00+00:00"), at("2026-01-01T10:00+00:00"), limit=10)


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2026-03-01", "Europe/Paris", "2026-03-01T00:00:00+01:00"),
        ("2026-03-01T06:00", "Europe/Paris", "2026-03-01T06:00:00+01:00"),
        ("2026-07-01T06:00", "Europe/Paris", "2026-07-01T06:00:00+02:00"),
        ("2026-03-01T06:00+00:00", "Europe/Paris", "2026-03-01T07:00:00+01:00"),
        ("2026-03-01T06:00Z", "Europe/Paris", "2026-03-01T07:00:00+01:00"),
        ("2026-03-29T02:30", "Europe/Paris", "2026-03-29T03:00:00+02:00"),  # in the gap: its end
        ("2026-10-25T02:30", "Europe/Paris", "2026-10-25T02:30:00+02:00"),  # repeated: the first one
        ("2026-03-01T06:00", "UTC", "2026-03-01T07:00:00+01:00"),
    ],
)
def test_a_time_without_an_offset_is_read_in_the_schedules_zone(text: str, zone: str, expected: str) -> None:
    assert shown([parse_time(text, zone, option="--from")]) == [expected]


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "2026-01-01 25:00", "1700000000"])
def test_a_time_that_does_not_parse_names_its_option(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--to .*not a date or time"):
        parse_time(text, "UTC", option="--to")


@settings(max_examples=60, deadline=None)
@given(
    expression=st.sampled_from(["0 * * * *", "*/20 * * * *", "30 2 * * *", "0 0 * * 1", "15 1-3 * * *"]),
    zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
    start=st.integers(
        min_value=int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()), max_value=int(datetime(2026, 12, 31, tzinfo=UTC).timestamp())
    ),
    hours=st.integers(min_value=0, max_value=24 * 10),
)
def test_logical_times_are_what_the_scheduler_fires_strictly_increasing_and_inside(
    expression: str, zone: str, start: int, hours: int
) -> None:
    schedule = CronSchedule(expression, zone)
    end = start + hours * 3600.0
    times = logical_times(schedule, float(start), end)
    assert all(start <= t <= end for t in times)
    assert all(a < b for a, b in itertools.pairwise(times))
    fired = list(itertools.takewhile(lambda t: t <= end, schedule.after(start - 0.001)))
    assert times == [t for t in fired if t >= start]
