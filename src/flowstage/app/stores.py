"""The project's stores: the run store, with the deployments and the catalog kept beside it."""

from __future__ import annotations

from flowstage.settings import Project
from flowstage.stores.base import RunStore


def open_store(project: Project) -> RunStore:
    """The project's run store (migrated to the current schema); `.deployments` and `.catalog` beside it."""
    from flowstage.stores.sql.store import SqlRunStore

    return SqlRunStore(project.store_url)


__all__ = ["open_store"]
