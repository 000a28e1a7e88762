"""Durations as users write them (`30s`, `5m`, `1h30m`, `250ms`, a number of seconds) and back."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstage.model.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("0.5h", 1800.0),
        ("1h 30m", 5400.0),
        (" 10s ", 10.0),
        ("1m1m", 120.0),
        ("0s", 0.0),
        (0, 0.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_reads_units_and_numbers(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "30",
        "s",
        "5x",
        "5 minutes",
        "1h30",
        "-5s",
        "1e3s",
        "1.s",
        "h1",
        "30s!",
        -1,
        -0.5,
        True,
        False,
        None,
        [30],
        {"s": 30},
        math.inf,
        math.nan,
        10**400,
        "9" * 400 + "d",
    ],
)
def test_parse_duration_refuses_what_is_not_a_duration(bad: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (30, "30s"),
        (60, "1m"),
        (90, "1m30s"),
        (5400, "1h30m"),
        (86400, "1d"),
        (90061, "1d1h1m1s"),
        (0.25, "250ms"),
        (1.5, "1500ms"),
        (0.001, "1ms"),
        (0.0005, "0.0005s"),
        (0.1 + 0.2, "0.30000000000000004s"),  # exact, not the nearest millisecond
        (1e-05, "0.00001s"),
    ],
)
def test_format_duration_writes_the_shortest_text(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@settings(max_examples=300, deadline=None, database=None)
@given(seconds=st.integers(min_value=0, max_value=10**9))
def test_whole_seconds_round_trip_exactly(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@settings(max_examples=300, deadline=None, database=None)
@given(ms=st.integers(min_value=0, max_value=10**9))
def test_milliseconds_round_trip_exactly(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == seconds


@settings(max_examples=300, deadline=None, database=None)
@given(seconds=st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_format_duration_reads_back_to_exactly_the_same_seconds(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
