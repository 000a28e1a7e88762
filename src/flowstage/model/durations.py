"""Durations as users write them: ``30s``, ``5m``, ``1h30m``, ``2d``, ``250ms`` or a number of seconds."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, Field, PlainSerializer

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> float:
    """Seconds in `value`; raises ValueError with a readable message."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} (write e.g. 30s, 5m, 1h30m)")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
        if not math.isfinite(seconds):
            raise ValueError(f"not a duration: {value!r} (write e.g. 30s, 5m, 1h30m)")
        return seconds
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r} (write e.g. 30s, 5m, 1h30m)")
    text = value.strip().replace(" ", "")
    pos = 0
    total = 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        number, unit = float(m.group(1)), m.group(2)
        total += number / 1000 if unit == "ms" else number * _UNITS[unit]  # 59 / 1000 == 0.059, 59 * 0.001 is not
        pos = m.end()
    if not text or pos != len(text) or not math.isfinite(total):
        raise ValueError(f"not a duration: {value!r} (write e.g. 30s, 5m, 1h30m)")
    return total


def format_duration(seconds: float) -> str:
    """The shortest text `parse_duration` reads back to `seconds`."""
    if seconds != int(seconds):
        ms = round(seconds * 1000)
        if ms / 1000 == seconds:
            return f"{ms}ms"
        return format(Decimal(repr(seconds)), "f") + "s"  # never an exponent, which parse_duration cannot read
    rest = int(seconds)
    if rest == 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out


#: a duration field: ``30s``, ``5m``, ``1h30m`` or seconds, kept as seconds, written back as text;
#: `flowstage schema` shows it as text or a number of seconds
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    Field(json_schema_extra={"type": "string", "examples": ["30s", "5m", "1h30m"]}),
]
