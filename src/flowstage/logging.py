"""The six log levels of flowstage and their names.

`NOTICE` (25) sits between INFO and WARNING; it is registered with `logging` on import so that
``logger.log(NOTICE, ...)`` prints ``NOTICE``.
"""

from __future__ import annotations

import logging as _logging

DEBUG = 10
INFO = 20
NOTICE = 25
WARNING = 30
ERROR = 40
CRITICAL = 50

LEVELS: dict[str, int] = {
    "debug": DEBUG,
    "info": INFO,
    "notice": NOTICE,
    "warning": WARNING,
    "error": ERROR,
    "critical": CRITICAL,
}
LEVEL_NAMES: dict[int, str] = {v: k for k, v in LEVELS.items()}

_logging.addLevelName(NOTICE, "NOTICE")


def level_number(name: str) -> int:
    """The number of a level name (case-insensitive); raises KeyError for an unknown name."""
    return LEVELS[name.lower()]


def level_name(number: int) -> str:
    """The name of the nearest level at or below `number`."""
    best = "debug"
    for value, name in sorted(LEVEL_NAMES.items()):
        if number >= value:
            best = name
    return best
