"""The in-memory run store: the reference implementation of the store contract.

Used by tests and by embedded runs that need no history. It copies what goes in and what comes
out, so callers can never edit the record behind its back. Waiters on the event log sleep on a
condition that every write of an event notifies.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from flowstage.engine import projection
from flowstage.engine.ports import Batch, Event, LogLine, TaskRun
from flowstage.stores.base import NewRun, RunHead, StoredLog, StoredRun

if TYPE_CHECKING:
    from flowstage.stores.alerts import AlertStore
    from flowstage.stores.backfills import BackfillStore
    from flowstage.stores.catalog import CatalogStore
    from flowstage.stores.deployments import DeploymentStore
    from flowstage.stores.tokens import TokenStore


class MemoryRunStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)  # notified whenever events are added
        self._runs: dict[str, StoredRun] = {}
        self._tasks: dict[str, dict[str, TaskRun]] = {}
        self._events: list[tuple[int, Event]] = []  # the event of id n is at index n - 1
        self._last_event: dict[str, int] = {}  # run id -> the id of its newest event
        self._logs: list[StoredLog] = []
        self._closes = 0  # a wait begun before a close ends

    def close(self) -> None:
        with self._written:
            self._closes += 1
            self._written.notify_all()

    def create_run(self, run: NewRun) -> None:
        with self._lock:
            if run.id in self._runs:
                raise ValueError(f"run {run.id} exists")
            self._runs[run.id] = StoredRun(
                id=run.id,
                workflow=run.workflow,
                version=run.version,
                status="running",
                started_at=run.started_at,
                ended_at=None,
                variables=copy.deepcopy(run.variables),
                overrides=copy.deepcopy(run.overrides),
                definition=copy.deepcopy(run.definition),
                root=run.root,
                logical_time=run.logical_time,
                runner_pid=run.runner_pid,
                runner_host=run.runner_host,
                runner_started=run.runner_started,
                heartbeat_at=run.started_at,
                cancel_requested_at=None,
                parent_run_id=run.parent_run_id,
                source=run.source,
            )
            self._tasks[run.id] = {t.name: copy.deepcopy(t) for t in run.tasks}
            self._event(Event(run.id, run.started_at, "run_started", None, "running"))

    def _event(self, ev: Event) -> None:
        """Append an event (the caller holds the lock)."""
        event_id = len(self._events) + 1
        self._events.append((event_id, copy.deepcopy(ev)))
        self._last_event[ev.run_id] = event_id
        self._written.notify_all()

    def record(self, batch: Batch) -> None:
        # copy the whole batch before touching the record: one that cannot be copied lands not at all
        batch = copy.deepcopy(batch)
        with self._lock:
            tasks = self._tasks[batch.run_id]
            for t in batch.tasks:
                tasks[t.name] = t
            for ev in batch.events:
                self._event(ev)
            for ln in batch.logs:
                self._logs.append(StoredLog(len(self._logs) + 1, ln))
            run = self._runs[batch.run_id]
            if batch.run_status is not None:
                run.status = batch.run_status
                run.ended_at = batch.run_ended_at
            if batch.run_variables is not None:
                run.variables = batch.run_variables

    def heartbeat(self, run_id: str, at: float) -> bool:
        with self._lock:
            run = self._runs[run_id]
            run.heartbeat_at = at
            return run.cancel_requested_at is not None

    def request_cancel(self, run_id: str, at: float) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.status != "running":
                return False
            run.cancel_requested_at = at
            self._event(Event(run_id, at, "cancel_requested"))
            return True

    def claim(
        self,
        run_id: str,
        *,
        expect_status: str,
        expect_heartbeat: float | None,
        pid: int,
        host: str,
        started: float,
        at: float,
        by: str,
    ) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.status != expect_status or run.heartbeat_at != expect_heartbeat:
                return False
            run.status = "running"
            run.ended_at = None
            run.runner_pid, run.runner_host, run.runner_started = pid, host, started
            run.heartbeat_at = at
            run.cancel_requested_at = None
            run.resumes.append({"by": by, "at": at})
            self._event(Event(run_id, at, "run_resumed", None, "running", {"by": by}))
            return True

    def finish_orphan(self, run_id: str, *, status: str, at: float, reason: str) -> None:
        with self._lock:
            run = self._runs[run_id]
            tasks = self._tasks[run_id]
            events = projection.orphan_events(list(tasks.values()), run_id=run_id, status=status, at=at, reason=reason)
            # the task rows are what the events make of them, folded on copies so a failure changes nothing
            changed = projection.replay([tasks[name] for name in {e.task for e in events if e.task is not None}], events)
            tasks.update(changed)
            for ev in events:
                self._event(ev)
            run.status = status
            run.ended_at = at

    def run_head(self, run_id: str) -> RunHead | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            return RunHead(
                id=run.id,
                status=run.status,
                ended_at=run.ended_at,
                resumes=len(run.resumes),
                runner_pid=run.runner_pid,
                runner_host=run.runner_host,
                runner_started=run.runner_started,
                heartbeat_at=run.heartbeat_at,
                newest_event=self._newest_event(run_id),
            )

    def events_after(self, cursor: int, *, run_id: str | None = None, limit: int = 1000) -> list[tuple[int, Event]]:
        out: list[tuple[int, Event]] = []
        if limit <= 0:
            return out
        with self._lock:
            for i, e in self._events[max(cursor, 0) :]:
                if run_id is None or e.run_id == run_id:
                    out.append((i, copy.deepcopy(e)))
                    if len(out) >= limit:
                        break
        return out

    def wait_events(self, cursor: int, *, run_id: str | None = None, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._written:
            closes = self._closes
            while True:
                if self._closes != closes:
                    return False
                if self._newest_event(run_id) > cursor:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._written.wait(remaining)

    def last_event_id(self, run_id: str | None = None) -> int:
        """The cursor of the newest event (of one run, or of every run); 0 when there is none."""
        with self._lock:
            return self._newest_event(run_id)

    def _newest_event(self, run_id: str | None) -> int:
        """The id of the newest event (of one run), 0 when there is none (the caller holds the lock)."""
        return len(self._events) if run_id is None else self._last_event.get(run_id, 0)

    def get_run(self, run_id: str, *, with_tasks: bool = True) -> StoredRun | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            out = copy.deepcopy(run)
            if with_tasks:
                out.tasks = [copy.deepcopy(t) for t in self._tasks[run_id].values()]
            return out

    def list_runs(
        self, *, workflow: str | None = None, statuses: Sequence[str] | None = None, limit: int = 50
    ) -> list[StoredRun]:
        with self._lock:
            found = [
                copy.deepcopy(r)
                for r in self._runs.values()
                if (workflow is None or r.workflow == workflow) and (not statuses or r.status in statuses)
            ]
        found.sort(key=lambda r: (r.started_at, r.id), reverse=True)
        return found[:limit]

    def logs(
        self,
        run_id: str,
        *,
        task: str | None = None,
        min_level: int = 0,
        after: int = 0,
        limit: int = 10_000,
        contains: str | None = None,
    ) -> list[StoredLog]:
        with self._lock:
            out = [
                StoredLog(s.id, copy.copy(s.line))
                for s in self._logs
                if s.line.run_id == run_id
                and s.id > after
                and (task is None or s.line.task == task)
                and s.line.level >= min_level
                and (not contains or contains.lower() in s.line.message.lower())
            ]
        return out[:limit]

    def events(self, run_id: str, *, after: int = 0, limit: int = 10_000) -> list[tuple[int, Event]]:
        with self._lock:
            out = [(i, copy.deepcopy(e)) for i, e in self._events if e.run_id == run_id and i > after]
        return out[:limit]

    # ------------------------------------------------------------------ the stores kept beside the runs
    @property
    def deployments(self) -> DeploymentStore:
        """The deployed workflows, their versions and trigger fires, beside these runs."""
        found: DeploymentStore | None = self.__dict__.get("_deployments")
        if found is None:
            from flowstage.stores.memory_deployments import MemoryDeploymentStore

            found = self.__dict__.setdefault("_deployments", MemoryDeploymentStore(self))
        return found

    @property
    def catalog(self) -> CatalogStore:
        """The data catalog beside these runs."""
        found: CatalogStore | None = self.__dict__.get("_catalog")
        if found is None:
            from flowstage.stores.memory_catalog import MemoryCatalog

            found = self.__dict__.setdefault("_catalog", MemoryCatalog())
        return found

    @property
    def alerts(self) -> AlertStore:
        """The alerts fired beside these runs (their `alert_fired` events in this store's log)."""
        found: AlertStore | None = self.__dict__.get("_alerts")
        if found is None:
            from flowstage.stores.memory_alerts import MemoryAlertStore

            def add_event(event: Event) -> None:
                with self._lock:
                    self._event(event)

            found = self.__dict__.setdefault("_alerts", MemoryAlertStore(add_event))
        return found

    @property
    def tokens(self) -> TokenStore:
        """The API tokens beside these runs."""
        found: TokenStore | None = self.__dict__.get("_tokens")
        if found is None:
            from flowstage.stores.memory_tokens import MemoryTokenStore

            found = self.__dict__.setdefault("_tokens", MemoryTokenStore())
        return found

    @property
    def backfills(self) -> BackfillStore:
        """The backfills beside these runs."""
        found: BackfillStore | None = self.__dict__.get("_backfills")
        if found is None:
            from flowstage.stores.memory_backfills import MemoryBackfillStore

            def runs() -> list[StoredRun]:
                with self._lock:
                    return list(self._runs.values())

            found = self.__dict__.setdefault("_backfills", MemoryBackfillStore(runs))
        return found


__all__ = ["LogLine", "MemoryRunStore"]
