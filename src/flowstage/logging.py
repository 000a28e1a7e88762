"""The six log levels of flowstage and their names, and the size a log line may have.

`NOTICE` (25) sits between INFO and WARNING; it is registered with `logging` on import so that
``logger.log(NOTICE, ...)`` prints ``NOTICE``.

A log line keeps at most `LOG_LINE_LIMIT` bytes (UTF-8); the rest is cut and a marker tells how
much (`` … [1,234,567 bytes cut]``). Task output is read through a `LineBuffer`, which holds no
more of a line than that (plus a margin, so that a password across the cut is still whole when
the line is masked), whatever a task prints: a line of 100 MB costs 64 KiB.
"""

from __future__ import annotations

import logging as _logging
import re
from collections.abc import Callable

#: the bytes a log line keeps; the rest is cut, with a marker
LOG_LINE_LIMIT = 64 * 1024
#: how much more than the limit a line keeps until it is masked and cut for good
LOG_LINE_MARGIN = 4 * 1024
_CUT = re.compile(r" … \[([\d,]+) bytes cut\]$")

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


def cap_line(text: str, limit: int = LOG_LINE_LIMIT, *, cut: int = 0) -> str:
    """`text` cut to `limit` bytes of UTF-8, with a marker saying how many bytes were cut.

    `cut`: bytes already cut before (a marker `text` ends with is counted in too, once it is cut again).
    """
    if len(text) * 4 <= limit and not cut:
        return text  # surely short enough: most lines
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit and not cut:
        return text
    if len(data) > limit:
        found = _CUT.search(text)
        if found is not None:
            cut += int(found.group(1).replace(",", ""))
            data = text[: found.start()].encode("utf-8", "surrogatepass")
    if len(data) > limit:
        kept = data[:limit].decode("utf-8", "ignore")  # a character split by the cut goes with the rest
        cut += len(data) - len(kept.encode("utf-8", "surrogatepass"))
        text = kept
    else:
        text = data.decode("utf-8", "surrogatepass")
    return f"{text} … [{cut:,} bytes cut]" if cut else text


class LineBuffer:
    """A stream of bytes cut into log lines, each given to `emit` as text (invalid UTF-8 replaced).

    It holds at most `hold` bytes of the line being read; what comes past that is only counted,
    and the line is emitted with a marker saying how many bytes were cut.
    """

    def __init__(self, emit: Callable[[str], None], hold: int = LOG_LINE_LIMIT + LOG_LINE_MARGIN) -> None:
        self._emit = emit
        self._hold = hold
        self._line = bytearray()
        self._cut = 0

    def feed(self, data: bytes) -> None:
        start = 0
        while True:
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            room = self._hold - len(self._line)
            if len(piece) <= room:
                self._line += piece
            else:
                self._line += piece[: max(room, 0)]
                self._cut += len(piece) - max(room, 0)
            if end < 0:
                return
            self._flush()
            start = end + 1

    def close(self) -> None:
        """Emit the last line if it did not end with a newline."""
        if self._line or self._cut:
            self._flush()

    def _flush(self) -> None:
        text = self._line.decode("utf-8", "replace").rstrip("\r")
        cut, self._cut = self._cut, 0
        self._line = bytearray()
        # bytes replaced by U+FFFD may make the text longer than what was held: only the marker is added here
        self._emit(cap_line(text, 4 * self._hold, cut=cut))
