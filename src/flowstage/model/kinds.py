"""Task kinds: the spec model of each kind, and the registry that finds them.

A task holds exactly one kind key (`python:`, `shell:` ...). Each kind is a small frozen pydantic
model of the kind key and its kind-specific keys; the runnable side lives in `flowstage.tasks`.
Third-party kinds register a spec the same way through the `flowstage.task_kinds` entry-point
group (the entry point names a class with a `spec` attribute), loaded only when an unknown key
shows up.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flowstage.model.dataflow import Package
from flowstage.model.durations import Duration


class KindSpec(BaseModel):
    """Base of every task kind's spec: the kind key plus the kind-specific keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    kind: ClassVar[str]
    #: keys whose string values are Jinja templates rendered at run time
    template_fields: ClassVar[tuple[str, ...]] = ()
    #: the default for `in_process`-like placement: True when the kind runs in a child process
    isolated: ClassVar[bool] = False


_CALLABLE = re.compile(r"^(?:[A-Za-z_][\w.]*|[^:]+\.py):[A-Za-z_]\w*$")


class PythonSpec(KindSpec):
    """``python: module:function`` or ``python: path/file.py:function``."""

    kind: ClassVar[str] = "python"
    isolated: ClassVar[bool] = True
    python: str = Field(description="module:function or path/file.py:function")
    interpreter: str | None = Field(default=None, description='a Python version ("3.11") or a path')
    in_process: bool = Field(default=False, description="run in the runner's own process")
    fresh_process: bool = Field(
        default=False, description="run in a new interpreter of its own, not a warm worker shared with earlier tasks"
    )

    @field_validator("python")
    @classmethod
    def _callable(cls, v: str) -> str:
        if not _CALLABLE.match(v):
            raise ValueError(f"expected module:function or path/file.py:function, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_placement(self) -> PythonSpec:
        if self.in_process and self.fresh_process:
            raise ValueError("in_process and fresh_process exclude each other: a task runs in the runner or in a process")
        return self

    @property
    def in_child(self) -> bool:
        return not self.in_process


_SCRIPT = re.compile(r"^(?:[^:]*/)?[^:/]+\.py(?::[A-Za-z_]\w*)?$")


class SparkSpec(KindSpec):
    """``spark: path/job.py``: a PySpark script whose ``main(spark, **with)`` runs on the configured master.

    ``spark: path/job.py:function`` calls another function than `main`. The attempt runs in a
    child process that builds its own SparkSession from flowstage.yaml's `spark:` (so a kill takes
    the driver and its JVM down with the task); the function's return value can be saved.
    """

    kind: ClassVar[str] = "spark"
    isolated: ClassVar[bool] = True
    spark: str = Field(
        description="a .py file (relative to the project root) whose main(spark, **with) is called, or path/file.py:function"
    )

    @field_validator("spark")
    @classmethod
    def _script(cls, v: str) -> str:
        if not _SCRIPT.match(v):
            raise ValueError(f"expected a PySpark script: path/file.py or path/file.py:function, got {v!r}")
        return v

    @property
    def script(self) -> str:
        """The script's path as written (relative to the project root, or absolute)."""
        return self.spark.rpartition(":")[0] if ":" in self.spark else self.spark

    @property
    def function(self) -> str:
        """The function called with the session and the task's `with:` (default `main`)."""
        return self.spark.rpartition(":")[2] if ":" in self.spark else "main"


class EnvSource(BaseModel):
    """A value of a shell task's `env:` taken from the run's secrets: exactly one key.

    ``{connection: shop}`` the connection's URL (as settings resolve it, `FLOWSTAGE_CONN_SHOP`
    included), ``{env: SHOP_PASSWORD}`` the runner's environment variable of that name,
    ``{store: true}`` the run store's URL. A task's process gets none of these otherwise.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    connection: str | None = Field(default=None, description="a connection's URL")
    env: str | None = Field(default=None, description="the runner's environment variable of this name")
    store: bool = Field(default=False, description="the run store's URL")

    @model_validator(mode="after")
    def _one(self) -> EnvSource:
        given = [key for key, value in (("connection", self.connection), ("env", self.env), ("store", self.store)) if value]
        if len(given) != 1:
            raise ValueError("an env value from the run is exactly one of {connection: name}, {env: NAME}, {store: true}")
        return self


class ShellSpec(KindSpec):
    """``shell: command``; template values are shell-quoted.

    `env:` adds variables: a plain value is set as written (templates rendered, not quoted);
    ``{connection: name}``, ``{env: NAME}`` or ``{store: true}`` (an `EnvSource`) hand the task
    one of the secrets its process does not inherit (SPEC §1).
    """

    kind: ClassVar[str] = "shell"
    isolated: ClassVar[bool] = True
    template_fields: ClassVar[tuple[str, ...]] = ("shell", "env")
    shell: str = Field(description="a command run by /bin/sh; non-zero exit is failure")
    env: dict[str, str | EnvSource] = Field(
        default_factory=dict,
        description="environment variables added: a plain value, or {connection: name}, {env: NAME}, {store: true}",
    )

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: _env_value(x) for k, x in v.items()}
        return v


def _env_value(value: Any) -> Any:
    """Scalars become the text a shell would see (`true`, not `True`; null is empty); mappings stay."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | EnvSource):
        return value
    return str(value)


class SqlSpec(KindSpec):
    """``sql: statement`` or ``sql_file: path.sql`` on `connection:`; `params:` are bound, never pasted."""

    kind: ClassVar[str] = "sql"
    keys: ClassVar[tuple[str, ...]] = ("sql", "sql_file")
    template_fields: ClassVar[tuple[str, ...]] = ("params",)
    sql: str | None = Field(default=None, description="one or several statements; :name binds params")
    sql_file: str | None = Field(default=None, description="a .sql file (relative to the project root)")
    connection: str = Field(default="warehouse", description="a connection named in flowstage.yaml")
    params: dict[str, Any] = Field(default_factory=dict, description="values bound to :name parameters")
    save_rows: str | None = Field(default=None, description="a variable that receives every row (at most 10,000)")

    @field_validator("sql", "sql_file")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("save_rows")
    @classmethod
    def _var_name(cls, v: str | None) -> str | None:
        if v is not None and not v.isidentifier():
            raise ValueError(f"not a variable name: {v!r}")
        return v


class HttpRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    url: str = Field(default="", description="http:// or https:// URL (template values percent-encoded); with base_url, a path")
    base_url: str | None = Field(
        default=None, description="an http(s) URL taken as written (a whole-URL variable); url: is a path joined to it"
    )
    method: str = Field(default="GET", pattern=r"^(?i:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)$")
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict, description="query string parameters")
    json_body: Any = Field(default=None, alias="json", description="a JSON body")
    body: str | None = Field(default=None, description="a text body")
    expect: int | list[int] = Field(default=200, description="the expected status code(s)")

    @model_validator(mode="after")
    def _url(self) -> HttpRequest:
        url, base = self.url, self.base_url
        if base is None:
            if not url.startswith(("http://", "https://")):
                hint = " (a whole-URL variable goes in base_url:, with url: the path)" if url.lstrip().startswith("{") else ""
                raise ValueError(f"url: not an http(s) URL: {url!r}{hint}")
            return self
        if "{{" not in base:
            from urllib.parse import urlsplit

            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"base_url: not an http(s) URL: {base!r}")
            if parts.query or parts.fragment or base.endswith(("?", "#")):
                raise ValueError(f"base_url: must not carry a query or fragment (put them in url: or params:): {base!r}")
        if "://" in url.split("?", 1)[0]:
            raise ValueError(f"url: with base_url:, url: is a path joined to it, not a whole URL: {url!r}")
        return self


class HttpSpec(KindSpec):
    """``http: {url, method, json, headers, expect}``: call an API; `save:` keeps the JSON (or text) answer."""

    kind: ClassVar[str] = "http"
    template_fields: ClassVar[tuple[str, ...]] = ("http",)
    http: HttpRequest


class WaitTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    file: str | None = Field(default=None, description="a glob (relative to the project root)")
    sql: str | None = Field(default=None, description="a query whose first value is true-ish")
    connection: str = "warehouse"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one(self) -> WaitTarget:
        if (self.file is None) == (self.sql is None):
            raise ValueError("wait_for needs exactly one of `file:` or `sql:`")
        return self


class WaitForSpec(KindSpec):
    """``wait_for: {file: glob}`` or ``{sql: query, connection}``, checked every `poke` until `timeout`."""

    kind: ClassVar[str] = "wait_for"
    template_fields: ClassVar[tuple[str, ...]] = ("wait_for",)
    wait_for: WaitTarget
    poke: Duration = Field(default=10.0, description="how often to check (a duration)")


class WorkflowSpec(KindSpec):
    """``workflow: name_or_file``: another workflow as a sub-run; the task's `variables:` are its overrides."""

    kind: ClassVar[str] = "workflow"
    workflow: str = Field(description="a workflow name (deployed or in workflows/) or a file")


class DataflowSpec(KindSpec):
    """``dataflow: packages/x.yaml`` or an inline package; the task's `variables:` override the package's."""

    kind: ClassVar[str] = "dataflow"
    dataflow: str | Package = Field(description="a package file (relative to the project root) or an inline package")


class CrawlTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    path: str | None = Field(default=None, description="a glob of files (csv, parquet, json); hive partitions are found")
    format: str | None = Field(default=None, pattern=r"^(csv|parquet|json)$")
    options: dict[str, Any] = Field(default_factory=dict)
    connection: str | None = Field(default=None, description="crawl tables of this connection instead of files")
    tables: list[str] = Field(default_factory=lambda: ["*"], description="table patterns, e.g. public.*")
    table: str | None = Field(default=None, description="the catalog name (files), or the name prefix (tables)")
    sample_size: int = Field(default=20_000, ge=1)

    @model_validator(mode="after")
    def _shape(self) -> CrawlTarget:
        if (self.path is None) == (self.connection is None):
            raise ValueError("a crawler reads `path:` (files) or `connection:` (tables), not both")
        if self.path is not None and not self.table:
            raise ValueError("a file crawler needs `table:` (the catalog name)")
        return self


class CrawlSpec(KindSpec):
    """``crawl: {path, table}`` or ``{connection, tables}``: infer schemas into the catalog."""

    kind: ClassVar[str] = "crawl"
    crawl: CrawlTarget


BUILTIN_KINDS: dict[str, type[KindSpec]] = {
    key: spec
    for spec in (PythonSpec, SparkSpec, ShellSpec, SqlSpec, HttpSpec, WaitForSpec, WorkflowSpec, DataflowSpec, CrawlSpec)
    for key in getattr(spec, "keys", (spec.kind,))
}
_plugins: dict[str, type[KindSpec]] | None = None


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


#: the other keys of the built-in kinds (`in_process`, `connection` ...): never a plug-in's kind key,
#: so reading them needs no look through the installed packages' entry points
_BUILTIN_FIELDS = frozenset(name for spec in BUILTIN_KINDS.values() for name in spec.model_fields) - set(BUILTIN_KINDS)


def kind_spec(key: str) -> type[KindSpec] | None:
    """The spec model of the kind whose key is `key`, or None."""
    spec = BUILTIN_KINDS.get(key)
    if spec is None and not key.startswith("_") and key not in _BUILTIN_FIELDS:
        spec = _load_plugins().get(key)
    return spec


def all_kinds() -> dict[str, type[KindSpec]]:
    return {**_load_plugins(), **BUILTIN_KINDS}
