"""What every route works with: the project, its run store (one per app) and the secret scrubber."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from flowstage.api.auth import AuthState
from flowstage.redact import Scrubber
from flowstage.settings import Project
from flowstage.stores.base import RunStore


@dataclass(frozen=True)
class ApiContext:
    project: Project
    store: RunStore
    scrub: Callable[[str], str]
    #: whether requests need a token (see api/auth.py)
    auth: AuthState
    #: the static graph of each recently read run, by run id: a run's definition never changes
    graphs: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)

    def masked(self, data: Any) -> Any:
        """`data` with every string scrubbed of connection URLs and passwords (SPEC §1)."""
        if isinstance(data, str):
            return self.scrub(data)
        if isinstance(data, dict):
            return {k: self.masked(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.masked(v) for v in data]
        return data


def scrubber_for(project: Project) -> Scrubber:
    """The scrubber of every URL the project knows: its store and its connections."""
    return Scrubber([project.store_url, *project.connections.values()])


def context(request: Request) -> ApiContext:
    """The FastAPI dependency giving a route its `ApiContext`."""
    found: ApiContext = request.app.state.flowstage
    return found


__all__ = ["ApiContext", "context", "scrubber_for"]
