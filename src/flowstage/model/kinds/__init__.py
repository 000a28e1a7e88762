"""Task kinds: the base of every kind's spec model, and the registry that finds them.

A task holds exactly one kind key (`python:`, `shell:` ...). Each kind is a small frozen pydantic
model of the kind key and its kind-specific keys, in a module of its own here (`kinds/shell.py`),
imported the first time a task of that kind is read: building a pydantic model class is the
dearest part of a start, and a run of python tasks never needs the other kinds' models. The
runnable side lives in `flowstage.tasks`. Third-party kinds register a spec the same way through
the `flowstage.task_kinds` entry-point group (the entry point names a class with a `spec`
attribute), loaded only when an unknown key shows up.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class KindSpec(BaseModel):
    """Base of every task kind's spec: the kind key plus the kind-specific keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    kind: ClassVar[str]
    #: keys whose string values are Jinja templates rendered at run time
    template_fields: ClassVar[tuple[str, ...]] = ()
    #: the default for `in_process`-like placement: True when the kind runs in a child process
    isolated: ClassVar[bool] = False


#: the kind key of each built-in kind, and its spec model: ``module:class``, the module in this package
BUILTIN_SPECS: dict[str, str] = {
    "python": "python:PythonSpec",
    "spark": "spark:SparkSpec",
    "shell": "shell:ShellSpec",
    "sql": "sql:SqlSpec",
    "sql_file": "sql:SqlSpec",
    "http": "http:HttpSpec",
    "wait_for": "wait_for:WaitForSpec",
    "workflow": "workflow:WorkflowSpec",
    "dataflow": "dataflow:DataflowSpec",
    "crawl": "crawl:CrawlSpec",
}
#: the other keys of the built-in kinds (`in_process`, `connection` ...): never a plug-in's kind key,
#: so reading them needs no look through the installed packages' entry points (a unit test keeps
#: this equal to the fields of the spec models)
BUILTIN_FIELDS = frozenset({"connection", "env", "fresh_process", "in_process", "interpreter", "params", "poke", "save_rows"})
_builtins: dict[str, type[KindSpec]] = {}
_plugins: dict[str, type[KindSpec]] | None = None


def _builtin(key: str) -> type[KindSpec] | None:
    spec = _builtins.get(key)
    if spec is None:
        target = BUILTIN_SPECS.get(key)
        if target is None:
            return None
        module, _, name = target.partition(":")
        spec = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        _builtins[key] = spec
    return spec


def builtin_kinds() -> dict[str, type[KindSpec]]:
    """Every built-in kind key and its spec model (imports them all)."""
    kinds: dict[str, type[KindSpec]] = {}
    for key in BUILTIN_SPECS:
        spec = _builtin(key)
        assert spec is not None
        kinds[key] = spec
    return kinds


def _load_plugins() -> dict[str, type[KindSpec]]:
    global _plugins
    if _plugins is None:
        from importlib.metadata import entry_points

        found: dict[str, type[KindSpec]] = {}
        for ep in entry_points(group="flowstage.task_kinds"):
            try:
                spec = ep.load().spec
            except Exception:
                continue
            if isinstance(spec, type) and issubclass(spec, KindSpec):
                found[spec.kind] = spec
        _plugins = found
    return _plugins


def kind_spec(key: str) -> type[KindSpec] | None:
    """The spec model of the kind whose key is `key`, or None."""
    spec = _builtin(key)
    if spec is None and not key.startswith("_") and key not in BUILTIN_FIELDS:
        spec = _load_plugins().get(key)
    return spec


def all_kinds() -> dict[str, type[KindSpec]]:
    return {**_load_plugins(), **builtin_kinds()}
