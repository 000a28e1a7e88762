"""The run store's contract: what every backend (memory, SQLite, PostgreSQL) offers.

The runner writes through `record` (a batch in one transaction); the faces read runs, task
runs and log lines back, and follow the event log by cursor (`events_after`, with `wait_events`
to sleep until there is more). `StoreContract` in the tests holds every backend to the same
behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from msgspec import Struct, field

from flowstage.engine.ports import Batch, Event, LogLine, TaskRun

if TYPE_CHECKING:
    from flowstage.stores.backfills import BackfillStore
    from flowstage.stores.catalog import CatalogStore
    from flowstage.stores.deployments import DeploymentStore
    from flowstage.stores.tokens import TokenStore


class NewRun(Struct):
    id: str
    workflow: str
    version: int | None
    definition: dict[str, Any]
    variables: dict[str, Any]
    overrides: dict[str, Any]
    root: str
    logical_time: float
    started_at: float
    runner_pid: int
    runner_host: str
    runner_started: float
    tasks: list[TaskRun]
    parent_run_id: str | None = None
    source: str | None = None


class RunHead(Struct, frozen=True):
    """A run's state in brief, cheap to read often: whatever changed in the run changed some field here."""

    id: str
    status: str
    ended_at: float | None
    resumes: int
    runner_pid: int | None
    runner_host: str | None
    runner_started: float | None
    heartbeat_at: float | None
    #: the id of the run's newest event (0 when none)
    newest_event: int


class StoredRun(Struct):
    id: str
    workflow: str
    version: int | None
    status: str
    started_at: float
    ended_at: float | None
    variables: dict[str, Any]
    overrides: dict[str, Any]
    definition: dict[str, Any]
    root: str
    logical_time: float
    runner_pid: int | None
    runner_host: str | None
    runner_started: float | None
    heartbeat_at: float | None
    cancel_requested_at: float | None
    resumes: list[dict[str, Any]] = field(default_factory=list)
    parent_run_id: str | None = None
    source: str | None = None
    tasks: list[TaskRun] = field(default_factory=list)


class StoredLog(Struct):
    id: int
    line: LogLine


class RunStore(Protocol):
    """The run store; see `flowstage.stores.sql.store.SqlRunStore` and `memory.MemoryRunStore`."""

    def create_run(self, run: NewRun) -> None: ...

    def record(self, batch: Batch) -> None: ...

    def heartbeat(self, run_id: str, at: float) -> bool: ...

    def get_run(self, run_id: str, *, with_tasks: bool = True) -> StoredRun | None: ...

    def run_head(self, run_id: str) -> RunHead | None:
        """What changes whenever the run does (status, runner, resumes, its newest event), in one look."""
        ...

    def list_runs(
        self, *, workflow: str | None = None, statuses: Sequence[str] | None = None, limit: int = 50
    ) -> list[StoredRun]: ...

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
        """Log lines of a run after the cursor `after`, oldest first; `contains`: only lines with that text (any case)."""
        ...

    def events(self, run_id: str, *, after: int = 0, limit: int = 10_000) -> list[tuple[int, Event]]:
        """The events of one run after the cursor `after` (`events_after` with a run)."""
        ...

    def events_after(self, cursor: int, *, run_id: str | None = None, limit: int = 1000) -> list[tuple[int, Event]]:
        """Events whose id is greater than `cursor`, in id order, of one run or (run_id=None) of every run.

        Ids are increasing integers, and an event never becomes visible with an id lower than one
        already read: a reader that keeps the last id it saw as its cursor misses nothing and
        reads nothing twice.
        """
        ...

    def last_event_id(self, run_id: str | None = None) -> int:
        """The cursor of the newest event (of one run, or of every run); 0 when there is none."""
        ...

    def wait_events(self, cursor: int, *, run_id: str | None = None, timeout: float) -> bool:
        """Block until an event with id > `cursor` exists (of `run_id`, if given) or `timeout` seconds pass.

        Returns whether one exists. A write by another process wakes the waiter within 100 ms
        (PostgreSQL: LISTEN/NOTIFY; SQLite: a cheap poll every 25 ms); a write through the same
        store object wakes it at once. `close` ends every wait in progress with False.
        """
        ...

    def request_cancel(self, run_id: str, at: float) -> bool: ...

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
        """Take over a run for a resume: compare-and-set on its status and heartbeat."""
        ...

    def finish_orphan(self, run_id: str, *, status: str, at: float, reason: str) -> None:
        """End a run whose runner is gone (a cancel of an interrupted run).

        Writes the events `projection.orphan_events` gives for the run's tasks and updates the
        task rows by applying exactly those events, in one transaction: replaying the run's
        events gives its stored tasks back.
        """
        ...

    def close(self) -> None: ...

    @property
    def deployments(self) -> DeploymentStore:
        """The deployed workflows, their versions and trigger fires, kept beside these runs."""
        ...

    @property
    def catalog(self) -> CatalogStore:
        """The data catalog kept beside these runs."""
        ...

    @property
    def tokens(self) -> TokenStore:
        """The API tokens kept beside these runs (auth of the REST API)."""
        ...

    @property
    def backfills(self) -> BackfillStore:
        """The backfills of deployed workflows, kept beside these runs."""
        ...
