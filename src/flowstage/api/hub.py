"""`EventHub`: one reader of the event log for every live-event subscriber of the server.

A hundred dashboards following one run must not mean a hundred threads polling the store. The
hub waits for new events on one thread of its own (`store.wait_events`: LISTEN/NOTIFY on
PostgreSQL, short polling on SQLite), reads each new batch once, renders each event's SSE frame
once, and keeps the newest ones in memory; subscribers are woken on the event loop and read
from there. A subscriber whose cursor is older than what the hub holds (a client reconnecting
after a long pause, or a run's snapshot cursor that trails the whole log) reads the store
itself until it has caught up.

Event ids are handed out in commit order (the store's rule), so "every event after id N" is
well defined, and the hub holds every event after its `base` up to its `head` with no gap.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from flowstage.engine.ports import Event
from flowstage.stores.base import RunStore

logger = logging.getLogger(__name__)

#: events held in memory (the newest); a subscriber further behind reads the store
KEEP = 10_000
#: events read from the store at once
PAGE = 500
#: seconds of one wait for new events: how soon the hub sees that it was stopped
WAIT_SECONDS = 0.25
#: seconds between two looks at a store that reported an error
RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Held:
    """An event as the hub holds it: its id (the cursor), the event, and its SSE frame."""

    id: int
    event: Event
    frame: str


class EventHub:
    """Reads the store's new events once and wakes the subscribers waiting on the event loop."""

    def __init__(
        self,
        store: RunStore,
        render: Callable[[int, Event], str],
        *,
        keep: int = KEEP,
        observe: Callable[[Event], None] | None = None,
    ) -> None:
        self._store = store
        self._render = render
        self._observe = observe
        self._keep = keep
        self._ids: list[int] = []
        self._held: list[Held] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        #: every event after `base` up to `head` is held
        self.base = 0
        self.head = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin reading after the newest event recorded now; subscribers wait on `loop`."""
        self.base = self.head = self._store.last_event_id(None)
        self._loop = loop
        self._changed = asyncio.Event()
        self._thread = threading.Thread(target=self._work, name="flowstage-event-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading: the thread ends within `WAIT_SECONDS` (join it before closing the store,
        whose connections it may be using)."""
        self._stopped.set()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the reading thread ----------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopped.is_set():
            try:
                if not self._store.wait_events(self.head, run_id=None, timeout=WAIT_SECONDS):
                    continue
                batch = self._store.events_after(self.head, run_id=None, limit=PAGE)
            except Exception as exc:  # the store is away for a moment: subscribers keep their cursors
                if self._stopped.is_set():
                    return
                logger.warning("live events: the run store did not answer (%s); trying again", type(exc).__name__)
                self._stopped.wait(RETRY_SECONDS)
                continue
            if batch:
                self._take([Held(event_id, event, self._render(event_id, event)) for event_id, event in batch])
                self._count(batch)

    def _count(self, batch: list[tuple[int, Event]]) -> None:
        if self._observe is None:
            return
        for _, event in batch:
            try:
                self._observe(event)
            except Exception:  # metrics never stop the events
                logger.exception("live events: counting an event for /metrics failed")

    def _take(self, batch: list[Held]) -> None:
        with self._lock:
            self._held.extend(batch)
            self._ids.extend(h.id for h in batch)
            self.head = batch[-1].id
            extra = len(self._held) - self._keep
            if extra > self._keep // 10:  # trim in steps: a slice per batch would copy the list each time
                self.base = self._ids[extra - 1]
                del self._held[:extra]
                del self._ids[:extra]
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        if changed is not None:
            changed.set()

    # -- subscribers (on the event loop) ---------------------------------------------------

    def read(self, position: int, run_id: str | None, limit: int = PAGE) -> tuple[list[Held], int] | None:
        """The held events after `position` (of one run), and the position read up to; None when
        `position` is older than what the hub holds (read the store instead)."""
        with self._lock:
            if position < self.base:
                return None
            start = bisect.bisect_right(self._ids, position)
            found: list[Held] = []
            for held in self._held[start:]:
                if run_id is None or held.event.run_id == run_id:
                    found.append(held)
                    if len(found) == limit:
                        return found, held.id
            return found, max(self.head, position)

    async def wait(self, position: int, timeout: float) -> bool:
        """Wait until the hub holds something after `position`; False after `timeout` seconds without."""
        changed = self._changed
        if self.head > position or changed is None:
            return True
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            return False
        return True


__all__ = ["KEEP", "PAGE", "EventHub", "Held"]
