"""Compile a dataflow package into one SQL query: a chain of CTEs, one per step.

Pure text work: the engine tells how each source reads (`source_sql`) and, when a step needs it,
the columns of a relation (`columns_of`). Column names given as lists are quoted; expressions
are the engine's SQL, with ``:name`` variables bound as parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowstage.model.dataflow import Package, Step


def ident(name: str) -> str:
    """A quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def qualified(name: str) -> str:
    """A quoted dotted name (schema.table)."""
    return ".".join(ident(part) for part in name.split("."))


def literal(value: Any) -> str:
    """A SQL literal for reader options and paths."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(str(k))}: {literal(v)}" for k, v in value.items()) + "}"
    return "'" + str(value).replace("'", "''") + "'"


@dataclass
class Compiled:
    ctes: list[tuple[str, str]] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # CTE name of each step

    def query(self, upto: int | None = None) -> str:
        """The SELECT of the whole chain (or of the chain up to step `upto`)."""
        last = self.steps[-1] if upto is None else self.steps[upto]
        names = [n for n, _ in self.ctes]
        end = names.index(last) + 1
        body = ",\n".join(f"{ident(n)} AS (\n{sql}\n)" for n, sql in self.ctes[:end])
        return f"WITH {body}\nSELECT * FROM {ident(last)}"


def _sort_item(item: str) -> str:
    text = item.strip()
    if text.startswith("-"):
        return f"{ident(text[1:].strip())} DESC"
    parts = text.rsplit(None, 1)
    if len(parts) == 2 and parts[1].lower() in ("asc", "desc"):
        return f"{ident(parts[0])} {parts[1].upper()}"
    return f"{ident(text)} ASC"


def compile_package(
    package: Package,
    source_sql: Mapping[str, str],
    columns_of: Callable[[str], list[str]] | None = None,
) -> Compiled:
    """One CTE per source (named by the source) and per step (``__step_N``)."""
    out = Compiled()
    for name in package.sources:
        out.ctes.append((name, source_sql[name]))
    prev = ""
    alias = ""
    for i, step in enumerate(package.steps):
        cte = f"__step_{i + 1}"
        sql = _step_sql(step, prev, alias, out, columns_of)
        if step.from_ is not None:
            alias = step.from_
        elif step.kind in ("aggregate", "select", "sql", "union"):
            alias = cte
        out.ctes.append((cte, sql))
        out.steps.append(cte)
        prev = cte
    return out


def _step_sql(step: Step, prev: str, alias: str, compiled: Compiled, columns_of: Callable[[str], list[str]] | None) -> str:
    kind = step.kind
    src = f"{ident(prev)} AS {ident(alias or prev)}" if prev else ""
    if kind == "from":
        assert step.from_ is not None
        return f"SELECT * FROM {ident(step.from_)}"
    if kind == "filter":
        return f"SELECT * FROM {src} WHERE ({step.filter})"
    if kind == "select":
        if isinstance(step.select, dict):
            cols = ", ".join(f"({expr}) AS {ident(name)}" for name, expr in step.select.items())
        else:
            cols = ", ".join(ident(c) for c in step.select or [])
        return f"SELECT {cols} FROM {src}"
    if kind == "derive":
        assert step.derive is not None
        existing = set(columns_of(compiled.query()) if columns_of and compiled.steps else [])
        replaced = [(n, e) for n, e in step.derive.items() if n in existing]
        added = [(n, e) for n, e in step.derive.items() if n not in existing]
        star = "*"
        if replaced:
            star += " REPLACE (" + ", ".join(f"({e}) AS {ident(n)}" for n, e in replaced) + ")"
        extra = "".join(f", ({e}) AS {ident(n)}" for n, e in added)
        return f"SELECT {star}{extra} FROM {src}"
    if kind == "join":
        j = step.join
        assert j is not None
        how = {
            "inner": "INNER JOIN",
            "left": "LEFT JOIN",
            "right": "RIGHT JOIN",
            "full": "FULL OUTER JOIN",
            "semi": "SEMI JOIN",
            "anti": "ANTI JOIN",
        }[j.how]
        cond = f"ON ({j.on})" if j.on is not None else "USING (" + ", ".join(ident(c) for c in j.using or []) + ")"
        if j.how in ("semi", "anti"):
            return f"SELECT * FROM {src} {how} {ident(j.with_)} AS {ident(j.with_)} {cond}"
        if j.on is not None and columns_of is not None and compiled.steps:
            # SELECT * would repeat names present on both sides: keep the left one, prefix the right
            left = columns_of(compiled.query())
            right = columns_of(f"SELECT * FROM ({compiled_source(compiled, j.with_)})")
            picks = [f"{ident(alias or prev)}.{ident(c)}" for c in left]
            picks += [f"{ident(j.with_)}.{ident(c)}" + (f" AS {ident(j.with_ + '_' + c)}" if c in left else "") for c in right]
            return f"SELECT {', '.join(picks)} FROM {src} {how} {ident(j.with_)} AS {ident(j.with_)} {cond}"
        return f"SELECT * FROM {src} {how} {ident(j.with_)} AS {ident(j.with_)} {cond}"
    if kind == "aggregate":
        a = step.aggregate
        assert a is not None
        by = ", ".join(ident(c) for c in a.by)
        metrics = ", ".join(f"({expr}) AS {ident(name)}" for name, expr in a.metrics.items())
        select = f"{by}, {metrics}" if by else metrics
        group = f" GROUP BY {by}" if by else ""
        return f"SELECT {select} FROM {src}{group}"
    if kind == "union":
        u = step.union
        assert u is not None
        others = [u.with_] if isinstance(u.with_, str) else u.with_
        op = "UNION ALL BY NAME" if u.all else "UNION BY NAME"
        return f"SELECT * FROM {ident(prev)}" + "".join(f" {op} SELECT * FROM {ident(o)}" for o in others)
    if kind == "dedupe":
        if step.dedupe is True or step.dedupe == []:
            return f"SELECT DISTINCT * FROM {src}"
        if step.dedupe is False:
            return f"SELECT * FROM {src}"
        keys = ", ".join(ident(c) for c in step.dedupe or [])
        return f"SELECT * FROM {src} QUALIFY row_number() OVER (PARTITION BY {keys}) = 1"
    if kind == "sort":
        return f"SELECT * FROM {src} ORDER BY " + ", ".join(_sort_item(s) for s in step.sort or [])
    if kind == "limit":
        return f"SELECT * FROM {src} LIMIT {int(step.limit or 0)}"
    if kind == "sql":
        return f"WITH input AS (SELECT * FROM {ident(prev)})\n{step.sql}"
    raise AssertionError(f"unknown step kind {kind}")


def compiled_source(compiled: Compiled, name: str) -> str:
    for n, sql in compiled.ctes:
        if n == name:
            return sql
    raise KeyError(name)
