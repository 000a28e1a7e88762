"""The recorder: a run's task records, changed only by events, written to the store in batches.

Every change goes through `emit` (an event folded into its task's record by the pure
`projection.apply`) or `move` (a status change checked by the transition table first); `flush`
writes what was gathered in one transaction and then shows it to the hooks. Nothing the driver
acts on is unrecorded: it flushes before it submits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowstage.engine.hooks import Hooks
from flowstage.engine.ports import Batch, Clock, Event, LogLine, RunStorePort, TaskRun
from flowstage.engine.projection import OPEN_ATTEMPT, apply, attempt_event, merged, task_event
from flowstage.engine.transitions import TaskInput, Transition, task_transition


class Recorder:
    def __init__(
        self,
        *,
        run_id: str,
        store: RunStorePort,
        clock: Clock,
        hooks: Hooks,
        records: dict[str, TaskRun],
        level_of: Mapping[str, int],
        run_level: int,
    ) -> None:
        self.run_id = run_id
        self.store = store
        self.clock = clock
        self.hooks = hooks
        #: the one record of each task run (a projection of the events emitted)
        self.records = records
        self.level_of = level_of
        self.run_level = run_level
        self.batch = Batch(run_id=run_id)
        self._ended: list[tuple[str, int]] = []  # attempts ended since the last flush, for the hooks

    def log(self, level: int, message: str, task: str | None = None, attempt: int | None = None) -> None:
        threshold = self.level_of[task] if task else self.run_level
        if level >= threshold:
            self.batch.logs.append(LogLine(self.run_id, task, attempt, self.clock.time(), level, message))

    def emit(self, event: Event) -> None:
        """Record `event`: fold it into its task's record and queue both for the next write.

        A status change right after the attempt change that caused it is written as one event.
        """
        if event.task is not None:
            record = self.records[event.task]
            apply(record, event)
            self.batch.tasks.append(record)
            events = self.batch.events
            if events:
                both = merged(events[-1], event)
                if both is not None:
                    events[-1] = both
                    return
        self.batch.events.append(event)

    def move(self, name: str, move: TaskInput, changes: dict[str, Any] | None = None, **display: Any) -> Transition:
        """Move task `name` by the state machine, recording the change (a no-op change records nothing)."""
        record = self.records[name]
        step = task_transition(record.status, move)
        if changes:  # only what really changes goes into the event
            changes = {k: v for k, v in changes.items() if getattr(record, k) != v}
        if step.status is not record.status or changes:
            self.emit(task_event(self.run_id, self.clock.time(), name, step.status, changes or {}, **display))
        return step

    def attempt(self, name: str, number: int, changes: dict[str, Any]) -> None:
        """Change fields of attempt `number` of `name`."""
        self.emit(attempt_event(self.run_id, self.clock.time(), name, number, changes))
        if "status" in changes and changes["status"] not in OPEN_ATTEMPT:
            self._ended.append((name, number))

    def flush(self) -> None:
        """Write what was gathered in one transaction (kept for the next flush if the write fails)."""
        if not self.batch:
            return
        batch = self.batch
        batch.tasks = list({id(tr): tr for tr in batch.tasks}.values())  # one row per task: the latest
        self.store.record(batch)
        self.batch = Batch(run_id=self.run_id)
        ended, self._ended = self._ended, []
        if self.hooks:
            for ev in batch.events:
                self.hooks.event(ev, self.records.get(ev.task) if ev.task else None)
            for name, number in ended:
                self.hooks.attempt(self.records[name], self.records[name].attempts[number - 1])


__all__ = ["Recorder"]
