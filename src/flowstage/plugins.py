"""One registry for every extension point: built-ins by name, plug-ins by entry-point group.

Executors register by URL scheme (`local`; `dask` later), dataflow engines by name (`duckdb`),
notifiers by kind, task kinds by key. A built-in is a ``"module:attribute"`` string imported on
first use (so `flowstage validate` never imports DuckDB); a plug-in is an entry point of the
registry's group in its package metadata, e.g. in a plug-in's ``pyproject.toml``::

    [project.entry-points."flowstage.executors"]
    ray = "flowstage_ray:executor"

A plug-in never replaces a built-in of the same name.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import Any


class Registry:
    """Named factories of one kind: built-ins first, then the entry points of `group`."""

    def __init__(self, group: str, builtins: Mapping[str, str], *, what: str) -> None:
        self.group = group
        self.what = what  # "executor", "dataflow engine", ... for messages
        self._builtins = dict(builtins)
        self._loaded: dict[str, Any] = {}
        self._plugins: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _entry_points(self) -> dict[str, Any]:
        if self._plugins is None:
            from importlib.metadata import entry_points

            self._plugins = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._plugins

    def names(self) -> list[str]:
        """Every name this registry knows (built-ins and installed plug-ins)."""
        return sorted({*self._builtins, *self._entry_points()})

    def get(self, name: str) -> Any:
        """The factory registered as `name` (LookupError naming what is available)."""
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            target = self._builtins.get(name)
            if target is not None:
                module, _, attr = target.partition(":")
                found = getattr(importlib.import_module(module), attr)
            else:
                ep = self._entry_points().get(name)
                if ep is None:
                    raise LookupError(f"no {self.what} {name!r}; available: {', '.join(self.names()) or 'none'}")
                found = ep.load()
            self._loaded[name] = found
            return found

    def register(self, name: str, factory: Any) -> None:
        """Register `factory` as `name` in this process (for tests and embedding)."""
        with self._lock:
            self._loaded[name] = factory


__all__ = ["Registry"]
