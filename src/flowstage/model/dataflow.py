"""Dataflow packages: sources, a chain of steps, a sink — a reusable ETL unit with its own variables.

```yaml
name: orders_daily
variables: {min_amount: 0}
sources:
  orders: {file: "data/orders/*.csv"}
  customers: {table: public.customers, connection: shop}
steps:
  - from: orders
  - filter: "status = 'paid' AND amount >= :min_amount"
  - aggregate: {by: [country], metrics: {revenue: sum(amount)}}
sink: {file: out/revenue.parquet, mode: overwrite}
```
Expressions are SQL expressions of the engine; ``:name`` binds a variable (never pasted), and
column names given as lists are quoted. The whole package compiles to one query (`data/`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flowstage.errors import DefinitionError, Problem

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
FORMATS = ("csv", "parquet", "json")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)


def format_of(path: str, explicit: str | None = None) -> str:
    """csv, parquet or json, from `explicit` or the file's extension."""
    if explicit:
        return explicit
    lower = path.lower().rstrip("/")
    for suffix, fmt in ((".parquet", "parquet"), (".pq", "parquet"), (".csv", "csv"), (".tsv", "csv"), (".txt", "csv")):
        if lower.endswith(suffix) or lower.endswith(suffix + ".gz"):
            return fmt
    for suffix in (".json", ".ndjson", ".jsonl"):
        if lower.endswith(suffix) or lower.endswith(suffix + ".gz"):
            return "json"
    if lower.endswith("*") or lower.endswith("/"):
        return "parquet"
    raise ValueError(f"cannot tell the format of {path!r}: name it with `format: csv|parquet|json`")


class Source(_Frozen):
    """One input: files, a table of a connection, a query, or a catalog table."""

    file: str | None = Field(default=None, description="a path or glob; csv, parquet, json/ndjson by extension")
    format: Literal["csv", "parquet", "json"] | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="reader options (e.g. delim, header)")
    table: str | None = Field(default=None, description="schema.table of `connection`")
    query: str | None = Field(default=None, description="a SELECT run on `connection`")
    connection: str = "warehouse"
    catalog: str | None = Field(default=None, description="a table the crawler registered")

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        kinds = [k for k in ("file", "table", "query", "catalog") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a source has exactly one of `file`, `table`, `query` or `catalog`")
        if self.file is not None:
            format_of(self.file, self.format)
        if self.table is not None and not _DOTTED.match(self.table):
            raise ValueError(f"not a table name: {self.table!r}")
        return self

    @property
    def kind(self) -> str:
        for k in ("file", "table", "query", "catalog"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated source without a kind")


ColumnList = list[str]


class Join(_Frozen):
    with_: str = Field(alias="with", pattern=NAME)
    on: str | None = None
    using: list[str] | None = None
    how: Literal["inner", "left", "right", "full", "semi", "anti"] = "inner"

    @model_validator(mode="after")
    def _on_or_using(self) -> Join:
        if (self.on is None) == (self.using is None):
            raise ValueError("a join needs `on:` (an expression) or `using:` (columns)")
        return self


class Aggregate(_Frozen):
    by: list[str] = Field(default_factory=list)
    metrics: dict[str, str] = Field(min_length=1)


class Union(_Frozen):
    with_: str | list[str] = Field(alias="with")
    all: bool = True


class Sink(_Frozen):
    """Where the rows go: files (overwrite; append with partition_by; upsert by keys, rewriting the
    files as a new version) or a table of a connection (overwrite, append, upsert by keys)."""

    file: str | None = None
    format: Literal["csv", "parquet", "json"] | None = None
    partition_by: list[str] = Field(default_factory=list)
    table: str | None = None
    connection: str = "warehouse"
    mode: Literal["overwrite", "append", "upsert"] = "overwrite"
    keys: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shape(self) -> Sink:
        if (self.file is None) == (self.table is None):
            raise ValueError("a sink has exactly one of `file` or `table`")
        if self.file is not None:
            format_of(self.file, self.format)
            if self.mode == "append" and not self.partition_by:
                raise ValueError("appending to files needs partition_by (each run adds files)")
        if self.table is not None and not _DOTTED.match(self.table):
            raise ValueError(f"not a table name: {self.table!r}")
        if self.mode == "upsert" and not self.keys:
            raise ValueError("mode: upsert needs keys: [...]")
        return self


STEP_KINDS = ("from", "filter", "select", "derive", "join", "aggregate", "union", "dedupe", "sort", "limit", "sql")


class Step(_Frozen):
    """One step; exactly one key names its kind."""

    from_: str | None = Field(default=None, alias="from", pattern=NAME)
    filter: str | None = None
    select: list[str] | dict[str, str] | None = None
    derive: dict[str, str] | None = None
    join: Join | None = None
    aggregate: Aggregate | None = None
    union: Union | None = None
    dedupe: bool | list[str] | None = None
    sort: list[str] | None = None
    limit: int | None = Field(default=None, ge=0)
    sql: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if isinstance(data, dict):
            kinds = [k for k in data if k in STEP_KINDS]
            unknown = [k for k in data if k not in STEP_KINDS]
            if unknown:
                from flowstage.model.workflow import did_you_mean

                raise ValueError(
                    f"unknown step '{unknown[0]}'{did_you_mean(unknown[0], STEP_KINDS)}; steps: {', '.join(STEP_KINDS)}"
                )
            if len(kinds) != 1:
                raise ValueError(f"a step has exactly one kind ({', '.join(STEP_KINDS)}), got {len(kinds)}")
            if data[kinds[0]] is None:  # `filter:` with nothing after it: a step of no kind at all
                raise ValueError(f"`{kinds[0]}:` needs a value")
        return data

    @property
    def kind(self) -> str:
        for k in STEP_KINDS:
            if getattr(self, "from_" if k == "from" else k) is not None:
                return k
        raise AssertionError("validated step without a kind")

    @field_validator("derive", "select")
    @classmethod
    def _names(cls, v: Any) -> Any:
        names = v if isinstance(v, list) else list(v or {})
        for n in names:
            if not isinstance(n, str) or not n.strip():
                raise ValueError(f"not a column name: {n!r}")
        return v


class Package(_Frozen):
    """A validated dataflow package."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    description: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    engine: Literal["duckdb", "spark"] = "duckdb"
    sources: dict[str, Source] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)
    sink: Sink | None = None

    @field_validator("sources")
    @classmethod
    def _source_names(cls, v: dict[str, Source]) -> dict[str, Source]:
        for name in v:
            if not re.match(NAME, name):
                raise ValueError(f"not a source name: {name!r} (letters, digits, _)")
        return v


def _separates_statements(sql: str, engine: str = "duckdb") -> bool:
    """Whether `sql` holds a `;` outside quotes and comments (more than one statement).

    Spark SQL also quotes with backticks, and a backslash escapes a quote inside a string.
    """
    quotes = ("'", '"', "`") if engine == "spark" else ("'", '"')
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in quotes:
            end = i + 1
            while end < n:
                escaped = engine == "spark" and ch != "`" and sql[end] == "\\"
                if escaped or (sql[end] == ch and end + 1 < n and sql[end + 1] == ch):  # a doubled quote stays inside
                    end += 2
                elif sql[end] == ch:
                    break
                else:
                    end += 1
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif ch == ";":
            return True
        else:
            i += 1
    return False


def check_references(package: Package) -> list[tuple[tuple[Any, ...], str]]:
    """Problems that the model cannot see alone: steps naming unknown sources, a chain without `from`."""
    from flowstage.model.workflow import did_you_mean

    problems: list[tuple[tuple[Any, ...], str]] = []
    names = list(package.sources)
    if package.steps and package.steps[0].kind != "from":
        problems.append((("steps", 0), "the first step must be `from: <source>`"))
    for i, step in enumerate(package.steps):
        refs: list[tuple[str, tuple[Any, ...]]] = []
        if step.from_ is not None:
            refs.append((step.from_, ("steps", i, "from")))
        if step.join is not None:
            refs.append((step.join.with_, ("steps", i, "join", "with")))
        if step.union is not None:
            for w in [step.union.with_] if isinstance(step.union.with_, str) else step.union.with_:
                refs.append((w, ("steps", i, "union", "with")))
        for ref, path in refs:
            if ref not in package.sources:
                problems.append((path, f"unknown source '{ref}'{did_you_mean(ref, names)} (sources: {', '.join(names)})"))
    for i, step in enumerate(package.steps):
        if step.sql is not None and _separates_statements(step.sql.strip().rstrip(";"), package.engine):
            problems.append((("steps", i, "sql"), "a sql step is one SELECT statement"))
    return problems


def package_from_data(data: Any, file: str, source: Any = None) -> Package:
    """Validate package data (from a file or inline in a task); problems at file:line:col."""
    from flowstage.model.loader import _pydantic_problems

    if not isinstance(data, dict):
        raise DefinitionError([Problem("a dataflow package is a mapping (name, sources, steps, sink)", file)])
    try:
        package = Package.model_validate(data)
    except ValidationError as exc:
        if source is not None:
            raise DefinitionError(_pydantic_problems(source, exc)) from None
        raise DefinitionError(
            [Problem(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}", file) for e in exc.errors()]
        ) from None
    problems = check_references(package)
    if problems:
        if source is not None:
            raise DefinitionError([source.problem(path, msg) for path, msg in problems])
        raise DefinitionError([Problem(f"{'.'.join(map(str, p))}: {m}", file) for p, m in problems])
    return package


def load_package(path: str | Path) -> Package:
    """Read and validate the package file at `path`."""
    from flowstage.files import read_definition
    from flowstage.model.yamlsource import parse

    text = read_definition(path, "dataflow package")
    source = parse(text, str(path))
    return package_from_data(source.data, str(path), source)
