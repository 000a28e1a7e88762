"""What is wrong with a cron expression, in the words of its fields.

cronsim decides whether a 5-field expression is valid; when it is not, it names only the field
(``Bad minute``). `cron_problem` says which part of that field is wrong and what it may hold, so
`trigger.schedule: "61 * * * *"` reads as ``minute 61 is out of range 0-59``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

#: (name, lowest, highest, names a value may use) for the five fields, in order
FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day-of-week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_SHAPE = "a cron expression has 5 fields: minute hour day-of-month month day-of-week (e.g. 30 23 * * *)"
_NUMBER = re.compile(r"^\d+$")


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a 5-field cron expression, or None when it is one."""
    import cronsim

    head = f"{json.dumps(expression)} is not a cron expression"
    fields = expression.split()
    if len(fields) != len(FIELDS):
        return f"{head}: it has {len(fields)} field{'s' if len(fields) != 1 else ''}; {_SHAPE}"
    try:
        cronsim.CronSim(expression, datetime(2026, 1, 1))
    except cronsim.CronSimError as exc:
        said = str(exc).lower()
        for index, (name, *_) in enumerate(FIELDS):
            if name in said:
                return f"{head}: {_field_problem(index, fields[index]) or _never(fields)}"
        return f"{head}: {_SHAPE}"
    return None


def _never(fields: list[str]) -> str:
    return f"day-of-month {fields[2]} never occurs in month {fields[3]}"


def _field_problem(index: int, text: str) -> str | None:
    """What is wrong with one field's text (None when each of its parts is in range)."""
    name, low, high, names = FIELDS[index]
    spelled = f" or {names[0]}-{names[-1]}" if names else ""
    allowed = f"use numbers {low}-{high}{spelled}, *, ranges a-b, lists a,b and steps */n"
    for part in text.split(","):
        if not part:
            return f"{name} field {json.dumps(text)} has an empty item in its list"
        body, slash, step = part.partition("/")
        if slash and (not _NUMBER.match(step) or int(step) == 0):
            return f"{name} step {json.dumps(step)} is not a whole number above 0"
        if body == "*" or (index in (2, 4) and body in ("?", "L")):
            continue
        if index == 4 and "#" in body:
            day, _, nth = body.partition("#")
            if not _NUMBER.match(nth) or not 1 <= int(nth) <= 5:
                return f"day-of-week {json.dumps(body)}: the week after # is 1-5"
            body = day
        if index == 2 and body.endswith("W"):
            body = body[:-1]
        bounds = body.split("-")
        if len(bounds) > 2:
            return f"{name} {json.dumps(body)} is not a value or a range a-b; {allowed}"
        values: list[int] = []
        for bound in bounds:
            if bound.lower() in names:
                values.append(names.index(bound.lower()) + (1 if index == 3 else 0))
            elif _NUMBER.match(bound):
                values.append(int(bound))
            else:
                return f"{name} {json.dumps(bound)} is not a number; {allowed}"
        for value in values:
            if not low <= value <= high:
                return f"{name} {value} is out of range {low}-{high}"
        if len(values) == 2 and values[0] > values[1]:
            return f"{name} range {body} goes backwards (write the lower bound first)"
    return None


__all__ = ["cron_problem"]
