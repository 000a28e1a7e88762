"""The fuzz campaigns' budget: a fixed, derandomized number of examples in CI, more on demand.

`FLOWSTAGE_FUZZ_EXAMPLES=N` multiplies nothing: it sets the number of examples of every property
(e.g. 5000 for a longer campaign on a workstation). Without it each property runs its own small
count, and the folder stays within a few tens of seconds on one core. `derandomize=True` makes a
run of the suite the same run every time: a failure in CI reproduces on any machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

F = TypeVar("F", bound=Callable[..., Any])


def examples(default: int) -> int:
    """The number of examples of a property: `FLOWSTAGE_FUZZ_EXAMPLES`, else `default`."""
    raw = os.environ.get("FLOWSTAGE_FUZZ_EXAMPLES", "").strip()
    if raw:
        return max(1, int(raw))
    return default


def budget(default: int) -> Callable[[F], F]:
    """Hypothesis settings of one campaign: `default` examples, no deadline, derandomized, no database."""
    derandomize = not os.environ.get("FLOWSTAGE_FUZZ_EXAMPLES", "").strip()
    return settings(
        max_examples=examples(default),
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
