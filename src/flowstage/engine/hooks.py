"""Hooks: code that watches a run (progress on a terminal, alerts, metrics) and can never change it.

`after_event` sees every recorded event with the task's record; `after_attempt` every ended
attempt; `after_run` the final status, once, whatever the status. Each hook runs after the change
is recorded, and a hook that raises is logged (with its traceback) and otherwise ignored: the run
goes on exactly as it would without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from msgspec import Struct, field

from flowstage.engine.ports import Event, TaskRun
from flowstage.model.statuses import RunStatus

logger = logging.getLogger(__name__)

AfterEvent = Callable[[Event, TaskRun | None], None]
AfterAttempt = Callable[[TaskRun, Mapping[str, Any]], None]
AfterRun = Callable[[RunStatus, Mapping[str, TaskRun]], None]


class Hooks(Struct):
    after_event: list[AfterEvent] = field(default_factory=list)
    after_attempt: list[AfterAttempt] = field(default_factory=list)
    after_run: list[AfterRun] = field(default_factory=list)
    #: told of each hook that raised (the runner logs it into the run's log too)
    on_error: Callable[[str], None] | None = None

    def __bool__(self) -> bool:
        return bool(self.after_event or self.after_attempt or self.after_run)

    def _call(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception as exc:
            name = getattr(hook, "__qualname__", None) or type(hook).__name__
            logger.exception("hook %s raised; the run goes on", name)
            if self.on_error is not None:
                try:
                    self.on_error(f"hook {name} raised {type(exc).__name__}: {exc}; the run goes on")
                except Exception:
                    logger.exception("reporting a failed hook failed")

    def event(self, event: Event, task: TaskRun | None) -> None:
        for hook in self.after_event:
            self._call(hook, event, task)

    def attempt(self, task: TaskRun, attempt: Mapping[str, Any]) -> None:
        for hook in self.after_attempt:
            self._call(hook, task, attempt)

    def run(self, status: RunStatus, tasks: Mapping[str, TaskRun]) -> None:
        for hook in self.after_run:
            self._call(hook, status, tasks)


__all__ = ["AfterAttempt", "AfterEvent", "AfterRun", "Hooks"]
