"""Compile a dataflow package into one SQL query: a chain of CTEs, one per step, in an engine's dialect.

Pure text work: the engine tells how each source reads (`source_sql`) and, when a step needs it,
the columns of a relation (`columns_of`). Column names given as lists are quoted; expressions
are the engine's SQL, with ``:name`` variables bound as parameters.

A `Dialect` holds what differs between the engines' SQL, so one package gives the same rows on
each: DuckDB writes ``SELECT * REPLACE``, ``UNION BY NAME``, ``SEMI JOIN`` and ``QUALIFY``; Spark
gets explicit column lists (from `columns_of`), ``LEFT SEMI``/``LEFT ANTI`` joins and a
``row_number()`` subquery instead. Null ordering is written out in both (DuckDB's default, nulls
last, whichever the direction; Spark's default puts them first in ascending order).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowstage.model.dataflow import Join, Package, Step

ColumnsOf = Callable[[str], list[str]]


@dataclass(frozen=True)
class Dialect:
    """What the compiler writes differently for one engine's SQL."""

    name: str
    #: the character that quotes identifiers (doubled inside one)
    quote: str
    #: DuckDB's extensions: ``SELECT * REPLACE``, ``UNION [ALL] BY NAME``, ``QUALIFY``, ``SELECT *``
    #: of a ``USING`` join in the left side's column order; without them the compiler lists columns
    extensions: bool
    semi_join: str
    anti_join: str
    #: rewrites an expression of the package into this dialect (DuckDB's own SQL is left as written)
    rewrite: Callable[[str], str] = field(default=lambda text: text)

    def ident(self, name: str) -> str:
        """A quoted identifier."""
        q = self.quote
        return q + name.replace(q, q + q) + q

    def qualified(self, name: str) -> str:
        """A quoted dotted name (schema.table)."""
        return ".".join(self.ident(part) for part in name.split("."))


def _skip_quoted(text: str, i: int, quotes: str, backslash: bool) -> int:
    """The index after the quoted run (or comment) starting at `i`, or `i` when none starts there."""
    n = len(text)
    ch = text[i]
    if ch in quotes:
        j = i + 1
        while j < n:
            if backslash and text[j] == "\\":
                j += 2
                continue
            if text[j] == ch:
                if j + 1 < n and text[j + 1] == ch:
                    j += 2
                    continue
                return j + 1
            j += 1
        return n
    if text.startswith("--", i):
        end = text.find("\n", i)
        return n if end == -1 else end
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        return n if end == -1 else end + 2
    return i


_SPARK_QUOTES = "'\"`"
_QUANTIFIER = re.compile(r"(DISTINCT|ALL)\s+", re.IGNORECASE)


def parameters(text: str) -> list[str]:
    """The ``:name`` variables of Spark SQL `text`, in order of first use (``::type`` casts are not variables)."""
    found: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = _skip_quoted(text, i, _SPARK_QUOTES, backslash=True)
        if j != i:
            i = j
            continue
        if text.startswith("::", i):
            i += 2
            while i < n and (text[i].isalnum() or text[i] == "_"):
                i += 1
            continue
        # `col:path` right after a name is Spark's path into a VARIANT, not a variable
        after_name = i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_`)]")
        if text[i] == ":" and not after_name and i + 1 < n and (text[i + 1].isalpha() or text[i + 1] == "_"):
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if text[i + 1 : j] not in found:
                found.append(text[i + 1 : j])
            i = j
            continue
        i += 1
    return found


def _closing_paren(text: str, start: int) -> int:
    """The index of the ``)`` matching the ``(`` at `start` (quotes and comments skipped), or -1."""
    depth, i, n = 0, start, len(text)
    while i < n:
        j = _skip_quoted(text, i, _SPARK_QUOTES, backslash=True)
        if j != i:
            i = j
            continue
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def spark_expression(text: str) -> str:
    """A package expression as Spark SQL that gives DuckDB's answer.

    - ``avg(x)`` and ``mean(x)`` average doubles: DuckDB's average of a DECIMAL is a DOUBLE, Spark's
      a DECIMAL rounded to the column's scale + 4 (its argument is cast, so FILTER and OVER stay put);
    - ``a // b`` (DuckDB's integer division) is Spark's ``a div b``.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = _skip_quoted(text, i, _SPARK_QUOTES, backslash=True)
        if j != i:
            out.append(text[i:j])
            i = j
            continue
        ch = text[i]
        if text.startswith("//", i):
            out.append(" div ")
            i += 2
            continue
        if ch.isalpha() or ch == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            k = j
            while k < n and text[k].isspace():
                k += 1
            prev = text[:i].rstrip()[-1:]
            if word.lower() in ("avg", "mean") and k < n and text[k] == "(" and prev != ".":
                end = _closing_paren(text, k)
                if end != -1:
                    inner = text[k + 1 : end].strip()
                    found = _QUANTIFIER.match(inner)
                    head = found.group(0) if found else ""
                    inner = inner[len(head) :]
                    out.append(f"{word}({head}CAST({spark_expression(inner)} AS DOUBLE))")
                    i = end + 1
                    continue
            out.append(word)
            i = j
            continue
        out.append(ch)
        i += 1
    return "".join(out)


DUCKDB = Dialect(name="duckdb", quote='"', extensions=True, semi_join="SEMI JOIN", anti_join="ANTI JOIN")
SPARK = Dialect(
    name="spark", quote="`", extensions=False, semi_join="LEFT SEMI JOIN", anti_join="LEFT ANTI JOIN", rewrite=spark_expression
)
DIALECTS = {d.name: d for d in (DUCKDB, SPARK)}


def ident(name: str) -> str:
    """A quoted identifier (DuckDB, and the SQL databases that quote with double quotes)."""
    return DUCKDB.ident(name)


def qualified(name: str) -> str:
    """A quoted dotted name (schema.table)."""
    return DUCKDB.qualified(name)


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
    dialect: Dialect = DUCKDB

    def query(self, upto: int | None = None) -> str:
        """The SELECT of the whole chain (or of the chain up to step `upto`)."""
        q = self.dialect.ident
        last = self.steps[-1] if upto is None else self.steps[upto]
        names = [n for n, _ in self.ctes]
        end = names.index(last) + 1
        body = ",\n".join(f"{q(n)} AS (\n{sql}\n)" for n, sql in self.ctes[:end])
        return f"WITH {body}\nSELECT * FROM {q(last)}"

    def source_query(self, name: str) -> str:
        """A SELECT of source `name` alone (for its columns)."""
        return f"SELECT * FROM ({compiled_source(self, name)}) AS {self.dialect.ident('__source')}"


def _sort_item(item: str, dialect: Dialect = DUCKDB) -> str:
    """``col``, ``-col``, ``col asc|desc``, each optionally ending ``nulls first|last`` (default: last)."""
    text = item.strip()
    nulls = "NULLS LAST"
    words = text.rsplit(None, 2)
    if len(words) >= 2 and words[-2].lower() == "nulls" and words[-1].lower() in ("first", "last"):
        nulls = f"NULLS {words[-1].upper()}"
        text = text[: text.lower().rfind("nulls")].rstrip()
    direction = "ASC"
    if text.startswith("-"):
        direction, text = "DESC", text[1:].strip()
    else:
        parts = text.rsplit(None, 1)
        if len(parts) == 2 and parts[1].lower() in ("asc", "desc"):
            direction, text = parts[1].upper(), parts[0]
    return f"{dialect.ident(text)} {direction} {nulls}"


def compile_package(
    package: Package,
    source_sql: Mapping[str, str],
    columns_of: ColumnsOf | None = None,
    dialect: Dialect = DUCKDB,
) -> Compiled:
    """One CTE per source (named by the source) and per step (``__step_N``), in `dialect`.

    Spark's dialect needs `columns_of` (explicit column lists stand in for DuckDB's extensions).
    """
    out = Compiled(dialect=dialect)
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


def _columns(columns_of: ColumnsOf | None, query: str, dialect: Dialect) -> list[str]:
    if columns_of is None:
        raise ValueError(f"the {dialect.name} dialect needs the columns of each relation (columns_of)")
    return columns_of(query)


def _step_sql(step: Step, prev: str, alias: str, compiled: Compiled, columns_of: ColumnsOf | None) -> str:
    d = compiled.dialect
    q, expr = d.ident, d.rewrite
    kind = step.kind
    src = f"{q(prev)} AS {q(alias or prev)}" if prev else ""
    if kind == "from":
        assert step.from_ is not None
        return f"SELECT * FROM {q(step.from_)}"
    if kind == "filter":
        assert step.filter is not None
        return f"SELECT * FROM {src} WHERE ({expr(step.filter)})"
    if kind == "select":
        if isinstance(step.select, dict):
            cols = ", ".join(f"({expr(e)}) AS {q(name)}" for name, e in step.select.items())
        else:
            cols = ", ".join(q(c) for c in step.select or [])
        return f"SELECT {cols} FROM {src}"
    if kind == "derive":
        assert step.derive is not None
        if not d.extensions:
            existing = _columns(columns_of, compiled.query(), d)
            picks = [f"({expr(step.derive[c])}) AS {q(c)}" if c in step.derive else q(c) for c in existing]
            picks += [f"({expr(e)}) AS {q(n)}" for n, e in step.derive.items() if n not in existing]
            return f"SELECT {', '.join(picks)} FROM {src}"
        known = set(columns_of(compiled.query()) if columns_of and compiled.steps else [])
        replaced = [(n, e) for n, e in step.derive.items() if n in known]
        added = [(n, e) for n, e in step.derive.items() if n not in known]
        star = "*"
        if replaced:
            star += " REPLACE (" + ", ".join(f"({e}) AS {q(n)}" for n, e in replaced) + ")"
        extra = "".join(f", ({e}) AS {q(n)}" for n, e in added)
        return f"SELECT {star}{extra} FROM {src}"
    if kind == "join":
        assert step.join is not None
        return _join_sql(step.join, prev, alias, src, compiled, columns_of)
    if kind == "aggregate":
        a = step.aggregate
        assert a is not None
        by = ", ".join(q(c) for c in a.by)
        metrics = ", ".join(f"({expr(e)}) AS {q(name)}" for name, e in a.metrics.items())
        select = f"{by}, {metrics}" if by else metrics
        group = f" GROUP BY {by}" if by else ""
        return f"SELECT {select} FROM {src}{group}"
    if kind == "union":
        u = step.union
        assert u is not None
        others = [u.with_] if isinstance(u.with_, str) else u.with_
        if d.extensions:
            op = "UNION ALL BY NAME" if u.all else "UNION BY NAME"
            return f"SELECT * FROM {q(prev)}" + "".join(f" {op} SELECT * FROM {q(o)}" for o in others)
        return _union_by_name(prev, others, u.all, compiled, columns_of)
    if kind == "dedupe":
        if step.dedupe is True or step.dedupe == []:
            return f"SELECT DISTINCT * FROM {src}"
        if step.dedupe is False:
            return f"SELECT * FROM {src}"
        keys = ", ".join(q(c) for c in step.dedupe or [])
        if d.extensions:
            return f"SELECT * FROM {src} QUALIFY row_number() OVER (PARTITION BY {keys}) = 1"
        # Spark's row_number() needs an order: by the keys themselves, so the row kept is any of its group's
        cols = ", ".join(q(c) for c in _columns(columns_of, compiled.query(), d))
        rn = q("__flowstage_row")
        return (
            f"SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {keys}) AS {rn} "
            f"FROM {src}) AS {q('__dedupe')} WHERE {rn} = 1"
        )
    if kind == "sort":
        return f"SELECT * FROM {src} ORDER BY " + ", ".join(_sort_item(s, d) for s in step.sort or [])
    if kind == "limit":
        return f"SELECT * FROM {src} LIMIT {int(step.limit or 0)}"
    if kind == "sql":
        assert step.sql is not None
        return f"WITH input AS (SELECT * FROM {q(prev)})\n{expr(step.sql)}"
    raise AssertionError(f"unknown step kind {kind}")


def _free_name(name: str, taken: set[str]) -> str:
    """`name`, or DuckDB's rename of a repeated column (``name_1``, ``name_2``...); `taken` is lower case."""
    if name.lower() not in taken:
        return name
    n = 1
    while f"{name}_{n}".lower() in taken:
        n += 1
    return f"{name}_{n}"


def _join_sql(j: Join, prev: str, alias: str, src: str, compiled: Compiled, columns_of: ColumnsOf | None) -> str:
    d = compiled.dialect
    q = d.ident
    how = {
        "inner": "INNER JOIN",
        "left": "LEFT JOIN",
        "right": "RIGHT JOIN",
        "full": "FULL OUTER JOIN",
        "semi": d.semi_join,
        "anti": d.anti_join,
    }[j.how]
    left, right = q(alias or prev), q(j.with_)
    target = f"{right} AS {right}"
    if j.on is not None:
        cond = f"ON ({d.rewrite(j.on)})"
    elif d.extensions:
        cond = "USING (" + ", ".join(q(c) for c in j.using or []) + ")"
    else:
        # Spark puts USING columns first: an ON condition and explicit columns keep DuckDB's order
        cond = "ON (" + " AND ".join(f"{left}.{q(c)} = {right}.{q(c)}" for c in j.using or []) + ")"
    if j.how in ("semi", "anti"):
        return f"SELECT * FROM {src} {how} {target} {cond}"
    if j.on is not None and columns_of is not None and compiled.steps:
        # SELECT * would repeat names present on both sides: keep the left one, prefix the right
        lcols = columns_of(compiled.query())
        rcols = columns_of(compiled.source_query(j.with_))
        picks = [f"{left}.{q(c)}" for c in lcols]
        picks += [f"{right}.{q(c)}" + (f" AS {q(j.with_ + '_' + c)}" if c in lcols else "") for c in rcols]
        return f"SELECT {', '.join(picks)} FROM {src} {how} {target} {cond}"
    if j.on is not None or d.extensions:
        return f"SELECT * FROM {src} {how} {target} {cond}"
    # USING in Spark, as DuckDB answers it: the left side's columns (a key from the side that has it),
    # then the right side's other columns, a repeated name renamed as DuckDB does
    keys = {c.lower() for c in j.using or []}
    lcols = _columns(columns_of, compiled.query(), d)
    rcols = _columns(columns_of, compiled.source_query(j.with_), d)
    picks, taken = [], set()
    for c in lcols:
        if c.lower() in keys:
            key = {"right": f"{right}.{q(c)}", "full": f"COALESCE({left}.{q(c)}, {right}.{q(c)})"}.get(j.how, f"{left}.{q(c)}")
            picks.append(f"{key} AS {q(c)}")
        else:
            picks.append(f"{left}.{q(c)}")
        taken.add(c.lower())
    for c in rcols:
        if c.lower() in keys:
            continue
        name = _free_name(c, taken)
        taken.add(name.lower())
        picks.append(f"{right}.{q(c)}" + (f" AS {q(name)}" if name != c else ""))
    return f"SELECT {', '.join(picks)} FROM {src} {how} {target} {cond}"


def _union_by_name(prev: str, others: list[str], all_rows: bool, compiled: Compiled, columns_of: ColumnsOf | None) -> str:
    """DuckDB's ``UNION [ALL] BY NAME`` spelled out: every side lists the columns of all sides, in the
    order they first appear, with NULL where a side lacks one."""
    d = compiled.dialect
    q = d.ident
    sides = [(prev, _columns(columns_of, compiled.query(), d))]
    sides += [(o, _columns(columns_of, compiled.source_query(o), d)) for o in others]
    order: list[str] = []
    for _, cols in sides:
        for c in cols:
            if c.lower() not in {o.lower() for o in order}:
                order.append(c)
    selects = []
    for name, cols in sides:
        have = {c.lower(): c for c in cols}
        picks = [
            (f"{q(have[c.lower()])}" + (f" AS {q(c)}" if have[c.lower()] != c else ""))
            if c.lower() in have
            else f"NULL AS {q(c)}"
            for c in order
        ]
        selects.append(f"SELECT {', '.join(picks)} FROM {q(name)}")
    op = " UNION ALL " if all_rows else " UNION "
    return op.join(selects)


def compiled_source(compiled: Compiled, name: str) -> str:
    for n, sql in compiled.ctes:
        if n == name:
            return sql
    raise KeyError(name)
