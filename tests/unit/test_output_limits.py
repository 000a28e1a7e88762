"""Log lines cut at their cap with a marker (`cap_line`, `LineBuffer`), and JSON text that is always valid."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstage.logging import LineBuffer, cap_line
from flowstage.views.records import json_text


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly 10", 10, "exactly 10"),
        ("0123456789abc", 10, "0123456789 … [3 bytes cut]"),
        ("ééééé", 5, "éé … [6 bytes cut]"),  # a character split by the cut goes with the rest
        ("0123456789abc … [100 bytes cut]", 10, "0123456789 … [103 bytes cut]"),  # cut again: the counts add up
    ],
)
def test_cap_line(text: str, limit: int, expected: str) -> None:
    assert cap_line(text, limit) == expected


def test_cap_line_counts_bytes_cut_before() -> None:
    assert cap_line("abc", 10, cut=5) == "abc … [5 bytes cut]"


def feed(chunks: list[bytes], hold: int) -> list[str]:
    out: list[str] = []
    lines = LineBuffer(out.append, hold=hold)
    for chunk in chunks:
        lines.feed(chunk)
    lines.close()
    return out


def test_a_line_buffer_cuts_lines_across_chunks_and_keeps_the_last_one() -> None:
    assert feed([b"one\ntw", b"o\r\nthree is lo", b"nger\n", b"", b"tail"], hold=8) == [
        "one",
        "two",
        "three is … [7 bytes cut]",
        "tail",
    ]


def test_a_line_buffer_replaces_bytes_that_are_not_utf8() -> None:
    assert feed([b"a\xffb\n"], hold=100) == ["a\ufffdb"]


@given(st.lists(st.text(alphabet="ab\n", max_size=40).map(str.encode), max_size=8), st.integers(1, 30))
@settings(max_examples=200, deadline=None)
def test_a_line_buffer_holds_at_most_its_limit_and_counts_every_byte(chunks: list[bytes], hold: int) -> None:
    data = b"".join(chunks)
    lines = feed(chunks, hold)
    whole = data.split(b"\n")
    if whole and whole[-1] == b"":
        whole.pop()
    assert len(lines) == len(whole)
    for line, raw in zip(lines, whole, strict=True):
        if len(raw) > hold:
            assert line.endswith(f" … [{len(raw) - hold:,} bytes cut]")


DATA: list[Any] = [
    {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": 1.5, "nested": [{"x": math.nan}, (math.inf, 2)]},
    {"text": "a\udcffb", "pair": "\ud83d\ude00", "emoji": "😀"},
    ["plain", 1, None, True],
]


@pytest.mark.parametrize("data", DATA)
def test_json_text_is_valid_json_in_valid_utf8(data: Any) -> None:
    def refuse(constant: str) -> Any:
        raise AssertionError(constant)

    text = json_text(data)
    parsed = json.loads(text.encode("utf-8").decode("utf-8"), parse_constant=refuse)
    assert parsed is not None


def test_json_text_writes_nan_and_infinity_as_null_and_lone_surrogates_as_replacement() -> None:
    assert json.loads(json_text(DATA[0])) == {
        "nan": None,
        "inf": None,
        "ninf": None,
        "ok": 1.5,
        "nested": [{"x": None}, [None, 2]],
    }
    assert json.loads(json_text(DATA[1])) == {"text": "a\ufffdb", "pair": "😀", "emoji": "😀"}
