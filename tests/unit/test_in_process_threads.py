"""In-process attempts run on reused daemon threads: a chain of steps keeps to one thread."""

from __future__ import annotations

import threading

from flowstage.engine.ports import Outcome
from flowstage.executors.local import _DaemonThreads
from flowstage.model.statuses import TaskStatus


def test_the_step_started_when_an_outcome_is_told_reuses_the_thread_that_told_it() -> None:
    threads = _DaemonThreads("test-in-process")
    used: list[int] = []
    finished = threading.Event()

    def step(left: int) -> None:
        def work() -> Outcome:
            used.append(threading.get_ident())
            return Outcome(TaskStatus.SUCCEEDED)

        def done(_: Outcome) -> None:
            # as the runner does: the next step of a chain is submitted as soon as this one is told
            if left:
                step(left - 1)
            else:
                finished.set()

        threads.submit(work, done)

    try:
        step(20)
        assert finished.wait(timeout=30)
    finally:
        threads.shutdown()
    assert len(used) == 21
    assert len(set(used)) == 1, f"{len(set(used))} threads for one chain"
