"""What every route works with: the project, its run store (one per app) and the secret scrubber."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from flowstage.api.auth import AuthState
from flowstage.api.hub import EventHub
from flowstage.redact import Scrubber
from flowstage.settings import Project
from flowstage.stores.base import RunStore


class AnswerCache:
    """The latest serialized answer of each recently read run, by run id, with the tag it was built for.

    A run keeps one entry (its newest), so the cache holds at most `size` bodies; requests run on
    several threads, hence the lock.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._bodies: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tag: str, key: str) -> bytes | None:
        with self._lock:
            found = self._bodies.get(key)
            if found is None or found[0] != tag:
                return None
            self._bodies.move_to_end(key)
            return found[1]

    def put(self, tag: str, key: str, body: bytes) -> None:
        with self._lock:
            self._bodies[key] = (tag, body)
            self._bodies.move_to_end(key)
            while len(self._bodies) > self.size:
                self._bodies.popitem(last=False)


@dataclass(frozen=True)
class ApiContext:
    project: Project
    store: RunStore
    scrub: Callable[[str], str]
    #: whether requests need a token (see api/auth.py)
    auth: AuthState
    #: the one reader of new events for every live-event subscriber
    hub: EventHub
    #: the static graph of each recently read run, by run id: a run's definition never changes
    graphs: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    #: the run records last answered, each with its ETag
    answers: AnswerCache = field(default_factory=AnswerCache)

    def masked(self, data: Any) -> Any:
        """`data` with every string scrubbed of connection URLs and passwords (SPEC §1)."""
        return masked(self.scrub, data)


def masked(scrub: Callable[[str], str], data: Any) -> Any:
    """`data` with every string passed through `scrub`."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {k: masked(scrub, v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [masked(scrub, v) for v in data]
    return data


def scrubber_for(project: Project) -> Scrubber:
    """The scrubber of every URL the project knows: its store and its connections."""
    return Scrubber([project.store_url, *project.connections.values()])


async def context(request: Request) -> ApiContext:
    """The FastAPI dependency giving a route its `ApiContext` (async: a sync one would cost a thread hop)."""
    found: ApiContext = request.app.state.flowstage
    return found


__all__ = ["AnswerCache", "ApiContext", "context", "masked", "scrubber_for"]
