"""`--var NAME=VALUE`: scalars keep their YAML type, flow lists and mappings become data, the rest is text."""

from __future__ import annotations

from typing import Any

import pytest

from flowstage.app.workflows import parse_var
from flowstage.errors import UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n=3", ("n", 3)),
        ("f=1.5", ("f", 1.5)),
        ("b=true", ("b", True)),
        ("z=null", ("z", None)),
        ("s=EU", ("s", "EU")),
        ("on=on", ("on", "on")),
        ("e=", ("e", None)),
        ("regions=[EU, US]", ("regions", ["EU", "US"])),
        ("m={a: 1, b: [2]}", ("m", {"a": 1, "b": [2]})),
        ('quoted="[EU"', ("quoted", "[EU")),
        ("single='a b'", ("single", "a b")),
        ("t={{ 7*7 }}", ("t", "{{ 7*7 }}")),
        ("x=x'; DROP TABLE t; --", ("x", "x'; DROP TABLE t; --")),
        ("eq=a=b", ("eq", "a=b")),
    ],
)
def test_var_values(text: str, expected: tuple[str, Any]) -> None:
    assert parse_var(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "regions=[EU",
            r"--var regions: '\[EU' starts a list or mapping that does not parse .*quote it: --var 'regions=\"\[EU\"'",
        ),
        ("m={a: 1", r"--var m: '\{a: 1' starts a list or mapping that does not parse"),
        ('x="open', r"--var x: '\"open': the quote is not closed"),
    ],
)
def test_a_value_that_starts_a_list_and_does_not_parse_is_bad_input_not_text(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_var(text)


@pytest.mark.parametrize("text", ["novalue", "1x=2", "a b=1", "=3"])
def test_bad_var_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_var(text)


@pytest.mark.parametrize("text", ["n=" + "9" * 5000, "n=[" + "9" * 5000 + "]", "n={a: " + "9" * 5000 + "}"])
def test_a_number_too_long_for_a_value_is_bad_input_naming_the_variable(text: str) -> None:
    with pytest.raises(UsageError, match=r"--var n: a number of more than 4,300 digits"):
        parse_var(text)
