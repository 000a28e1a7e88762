"""How long a task waits before its next try: `retry_delay`, grown by `retry_backoff`, capped by `retry_delay_max`.

Retry n (1-based) waits ``min(retry_delay * retry_backoff ** (n - 1), retry_delay_max)`` seconds,
with jitter when `retry_backoff` is set: a uniform share of 50 % to 100 % of that figure, so that
tasks failing together (a database gone for a minute) do not all come back at the same instant,
while every wait stays at least half of the computed one. Without `retry_backoff` every retry
waits `retry_delay` exactly, as it always did.

The draw is an argument (a number in [0, 1), e.g. `random.random()`), so the function is pure and
its answers can be checked for every draw.
"""

from __future__ import annotations

import math
import sys

#: the least share of the computed delay a jittered wait keeps
JITTER_FLOOR = 0.5


def retry_delay(
    *,
    retry: int,
    delay: float,
    backoff: float | None = None,
    cap: float | None = None,
    draw: float = 1.0,
) -> float:
    """Seconds to wait before retry number `retry` (1 for the first retry).

    Args:
        retry: which retry this is, from 1.
        delay: the task's `retry_delay` (seconds), the first retry's wait before jitter.
        backoff: the task's `retry_backoff` (at least 1), or None: no growth and no jitter.
        cap: the task's `retry_delay_max` (seconds), or None: no cap.
        draw: a number in [0, 1]; the wait is ``(0.5 + 0.5 * draw)`` of the capped delay when
            `backoff` is set (1 gives the full delay).

    Returns:
        The wait in seconds, never above `cap` and, with `backoff`, never below half the capped delay.
    """
    if retry < 1:
        raise ValueError(f"retry numbers start at 1, got {retry}")
    if not 0.0 <= draw <= 1.0:
        raise ValueError(f"a draw is a number in [0, 1], got {draw!r}")
    if backoff is None:
        base = delay
    else:
        try:
            base = delay * backoff ** (retry - 1)
        except OverflowError:  # a backoff of 1000 by the 200th retry: past what a float holds
            base = math.inf
    if cap is not None:
        base = min(base, cap)
    # past what a float holds and no cap: the longest finite wait (the record keeps JSON numbers)
    base = min(base, sys.float_info.max)
    if backoff is None:
        return base
    return base * (JITTER_FLOOR + (1.0 - JITTER_FLOOR) * draw)


__all__ = ["JITTER_FLOOR", "retry_delay"]
