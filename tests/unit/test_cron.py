"""What is wrong with a cron expression, said field by field (`model/cron.py`)."""

from __future__ import annotations

import pytest

from flowstage.model.cron import cron_problem

# (expression, what the problem says after "... is not a cron expression: ")
BAD = [
    ("61 * * * *", "minute 61 is out of range 0-59"),
    ("* 24 * * *", "hour 24 is out of range 0-23"),
    ("* * 0 * *", "day-of-month 0 is out of range 1-31"),
    ("* * * 13 *", "month 13 is out of range 1-12"),
    ("* * * * 8", "day-of-week 8 is out of range 0-7"),
    ("1,61 * * * *", "minute 61 is out of range 0-59"),
    ("0-61 * * * *", "minute 61 is out of range 0-59"),
    ("*/0 * * * *", 'minute step "0" is not a whole number above 0'),
    ("x * * * *", 'minute "x" is not a number; use numbers 0-59, *, ranges a-b, lists a,b and steps */n'),
    ("* * * foo *", 'month "foo" is not a number; use numbers 1-12 or jan-dec'),
    ("5-2 * * * *", "minute range 5-2 goes backwards"),
    ("1,,2 * * * *", 'minute field "1,,2" has an empty item in its list'),
    ("* * * * MON#6", 'day-of-week "MON#6": the week after # is 1-5'),
    ("* * 30 2 *", "day-of-month 30 never occurs in month 2"),
    ("* * *", "it has 3 fields; a cron expression has 5 fields"),
    ("* * * * * *", "it has 6 fields"),
]


@pytest.mark.parametrize(("expression", "words"), BAD)
def test_a_bad_cron_expression_is_explained_by_its_field(expression: str, words: str) -> None:
    problem = cron_problem(expression)
    assert problem is not None
    assert problem.startswith(f'"{expression}" is not a cron expression: ')
    assert words in problem
    assert "Bad " not in problem  # cronsim's own words


@pytest.mark.parametrize(
    "expression", ["30 23 * * *", "*/15 * * * *", "0 9 * * mon-fri", "0 0 L * *", "0 0 1 jan,jul *", "0 8 * * 1#2"]
)
def test_a_good_cron_expression_has_no_problem(expression: str) -> None:
    assert cron_problem(expression) is None
