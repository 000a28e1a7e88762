"""The garbage collector, kept from walking a large run over and over.

A run of 100,000 tasks holds millions of objects for its whole length (the workflow, the plan,
the task records). CPython's cyclic collector walks every tracked object on each full collection,
and building or driving such a run triggers many: a cost that grows with the run, paid again and
again though nothing of it is garbage. Building a run's structures happens with the collector
paused (`paused`), and a run is driven with what existed at its start frozen out of the
collector's sight (`frozen`, `gc.freeze`). Objects freed by their reference count are freed as
always; only cycles wait until the collector runs again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """No collection while building what lives as long as the run (enabled again after, if it was)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextmanager
def frozen() -> Iterator[None]:
    """What exists now is out of the collector's sight until the block ends."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


__all__ = ["frozen", "paused"]
