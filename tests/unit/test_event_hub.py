"""The server's event hub on the in-memory store: it reads each new event once, holds the newest,
wakes waiting subscribers, and sends a subscriber whose cursor it no longer holds to the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flowstage.api.hub import EventHub
from flowstage.engine.ports import Batch, Event
from flowstage.stores.base import NewRun
from flowstage.stores.memory import MemoryRunStore


def _new_run(store: MemoryRunStore, run_id: str) -> None:
    now = time.time()
    store.create_run(
        NewRun(
            id=run_id,
            workflow="w",
            version=None,
            definition={},
            variables={},
            overrides={},
            root="/",
            logical_time=now,
            started_at=now,
            runner_pid=1,
            runner_host="h",
            runner_started=now,
            tasks=[],
        )
    )


def _events(store: MemoryRunStore, run_id: str, count: int) -> None:
    store.record(Batch(run_id, events=[Event(run_id, time.time(), "task_status", f"t{i}", "running") for i in range(count)]))


def _run(scenario: Coroutine[Any, Any, None]) -> None:
    """Run the scenario on an event loop of its own thread (a browser test may hold this one's)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario).result()


def _render(event_id: int, event: Event) -> str:
    return f"{event_id}:{event.run_id}:{event.task}"


async def _until(hub: EventHub, head: int) -> None:
    while hub.head < head:
        assert await hub.wait(hub.head, 5), "the hub was not woken"


def test_the_hub_holds_new_events_rendered_once_and_serves_each_run_its_own() -> None:
    store = MemoryRunStore()
    _new_run(store, "a")  # event 1, before the hub starts: not held

    async def scenario() -> None:
        hub = EventHub(store, _render)
        hub.start(asyncio.get_running_loop())
        try:
            assert (hub.base, hub.head) == (1, 1)
            _new_run(store, "b")  # 2
            _events(store, "a", 3)  # 3, 4, 5
            _events(store, "b", 2)  # 6, 7
            await _until(hub, 7)
            held, reached = hub.read(1, "a") or ([], -1)
            assert [h.frame for h in held] == ["3:a:t0", "4:a:t1", "5:a:t2"]
            assert reached == 7  # nothing more of run a up to the head: a subscriber waits from there
            held, reached = hub.read(4, None) or ([], -1)
            assert [h.id for h in held] == [5, 6, 7]
            held, reached = hub.read(1, None, limit=2) or ([], -1)
            assert ([h.id for h in held], reached) == ([2, 3], 3)  # a full page stops where it ends
            assert hub.read(0, "a") is None  # event 1 was never held: read the store
            assert await hub.wait(7, 0.05) is False  # nothing new
        finally:
            hub.stop()
            hub.join()
            store.close()

    _run(scenario())


def test_a_hub_past_its_size_forgets_the_oldest_and_sends_their_readers_to_the_store() -> None:
    store = MemoryRunStore()
    _new_run(store, "a")  # 1

    async def scenario() -> None:
        hub = EventHub(store, _render, keep=20)
        hub.start(asyncio.get_running_loop())
        try:
            for _ in range(5):
                _events(store, "a", 10)
                await _until(hub, hub.head + 10)
            assert hub.head == 51
            assert hub.base > 1
            assert hub.read(hub.base - 1, "a") is None
            held, _ = hub.read(hub.base, "a") or ([], -1)
            assert [h.id for h in held] == list(range(hub.base + 1, 52))  # no gap after the base
        finally:
            hub.stop()
            hub.join()
            store.close()

    _run(scenario())
