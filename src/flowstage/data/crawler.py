"""Crawlers: infer the schema of files or database tables for the catalog.

Files: DuckDB's readers sample the files (`sample_size` rows), with null markers (empty, NA,
N/A, NULL, null) so a numeric column with gaps stays numeric, every file under the glob merged by
column name, and hive partition columns taken from ``key=value`` folders.
Tables: SQLAlchemy's inspector, for every table matching a pattern such as ``public.*``.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowstage.connections import Connections, LockWait
from flowstage.data.compile import literal
from flowstage.data.engine import NULL_MARKERS
from flowstage.errors import RunError
from flowstage.model.dataflow import format_of
from flowstage.redact import scrub
from flowstage.stores.catalog import CatalogTable

_EXACT_COUNT_BYTES = 64 * 1024 * 1024  # below this, count rows exactly; above, estimate from a sample


def _partitions(files: Sequence[str]) -> list[str]:
    keys: list[str] = []
    for f in files:
        for part in Path(f).parent.parts:
            m = re.match(r"^([^=]+)=.*$", part)
            if m and m.group(1) not in keys:
                keys.append(m.group(1))
    return keys


def _bytes_per_row(path: str, lines: int = 10_000) -> float:
    """The mean size of a text row, from the first `lines` lines of `path` (the header left out)."""
    with open(path, "rb") as fh:
        fh.readline()
        sizes = [len(line) for _, line in zip(range(lines), fh, strict=False)]
    return max(1.0, sum(sizes) / len(sizes)) if sizes else 1.0


def crawl_files(
    name: str,
    pattern: str,
    root: Path,
    *,
    fmt: str | None = None,
    options: dict[str, Any] | None = None,
    sample_size: int = 20_000,
) -> CatalogTable:
    """The catalog entry of the files matching `pattern` (relative to `root`)."""
    import duckdb

    location = pattern if os.path.isabs(pattern) else str(root / pattern)
    files = sorted(f for f in glob.glob(location, recursive=True) if os.path.isfile(f))
    if not files:
        raise RunError(f"crawl {name}: no file matches {pattern}")
    fmt = format_of(pattern, fmt)
    partitions = _partitions(files)
    opts: dict[str, Any] = {"hive_partitioning": bool(partitions)}
    if fmt == "csv":
        func = "read_csv"
        opts.update({"union_by_name": True, "nullstr": NULL_MARKERS, "sample_size": sample_size})
    elif fmt == "parquet":
        func = "read_parquet"
        opts["union_by_name"] = True
    else:
        func = "read_json_auto"
        opts.update({"union_by_name": True, "sample_size": sample_size})
    opts.update(options or {})
    reader = f"{func}({literal(files)}" + "".join(f", {k} = {literal(v)}" for k, v in opts.items()) + ")"
    con = duckdb.connect()
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
        columns = [{"name": r[0], "type": str(r[1])} for r in described]
        size = sum(os.path.getsize(f) for f in files)
        if fmt == "parquet" or size <= _EXACT_COUNT_BYTES:
            estimate = int(con.execute(f"SELECT count(*) FROM {reader}").fetchall()[0][0])
        else:
            estimate = int(size / _bytes_per_row(files[0]))
    except duckdb.Error as exc:
        raise RunError(f"crawl {name}: cannot read {pattern}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    return CatalogTable(
        name=name, location=pattern, connection=None, format=fmt, columns=columns, partitions=partitions, row_estimate=estimate
    )


def crawl_tables(
    connections: Connections,
    connection: str,
    patterns: Sequence[str],
    prefix: str | None = None,
    wait: LockWait | None = None,
) -> list[CatalogTable]:
    """One catalog entry per table of `connection` matching any of `patterns` (``schema.table`` globs)."""
    import sqlalchemy as sa

    url = connections.url(connection)
    if url.startswith("duckdb:"):
        return _crawl_duck_tables(connections, connection, patterns, prefix, wait)
    try:
        engine = sa.create_engine(url)
    except (ModuleNotFoundError, ValueError, sa.exc.ArgumentError) as exc:
        raise RunError(scrub(f"crawl {connection}: cannot use this connection: {exc}", [url])) from None
    found: list[CatalogTable] = []
    try:
        insp = sa.inspect(engine)
        default = insp.default_schema_name
        schemas = insp.get_schema_names()
        for schema in schemas:
            if schema in ("information_schema", "pg_catalog", "pg_toast", "mysql", "performance_schema", "sys"):
                continue
            for table in insp.get_table_names(schema=schema):
                qualified = f"{schema}.{table}"
                if not any(_matches(p, schema, table, default) for p in patterns):
                    continue
                columns = [{"name": c["name"], "type": str(c["type"])} for c in insp.get_columns(table, schema=schema)]
                found.append(
                    CatalogTable(
                        name=f"{prefix or connection}.{table}"
                        if schema == default
                        else f"{prefix or connection}.{schema}.{table}",
                        location=qualified,
                        connection=connection,
                        format="table",
                        columns=columns,
                        row_estimate=_row_estimate(engine, schema, table),
                    )
                )
    except sa.exc.SQLAlchemyError as exc:
        raise RunError(scrub(f"crawl {connection}: {str(getattr(exc, 'orig', exc)).splitlines()[0]}", [url])) from None
    finally:
        engine.dispose()
    return found


def _matches(pattern: str, schema: str, table: str, default: str | None) -> bool:
    if "." in pattern:
        s, t = pattern.split(".", 1)
        return fnmatch.fnmatchcase(schema, s) and fnmatch.fnmatchcase(table, t)
    return schema == default and fnmatch.fnmatchcase(table, pattern)


def _row_estimate(engine: Any, schema: str, table: str) -> int | None:
    import sqlalchemy as sa

    dialect = engine.dialect.name
    with engine.connect() as conn:
        try:
            if dialect == "postgresql":
                value = conn.execute(
                    sa.text(
                        "SELECT reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relname = :t"
                    ),
                    {"s": schema, "t": table},
                ).scalar()
                if value is not None and value >= 0:
                    return int(value)
            elif dialect in ("mysql", "mariadb"):
                value = conn.execute(
                    sa.text("SELECT table_rows FROM information_schema.tables WHERE table_schema = :s AND table_name = :t"),
                    {"s": schema, "t": table},
                ).scalar()
                if value is not None:
                    return int(value)
            quoted = engine.dialect.identifier_preparer
            return int(
                conn.execute(sa.text(f"SELECT count(*) FROM {quoted.quote_schema(schema)}.{quoted.quote(table)}")).scalar() or 0
            )
        except sa.exc.SQLAlchemyError:
            return None


def _crawl_duck_tables(
    connections: Connections, connection: str, patterns: Sequence[str], prefix: str | None, wait: LockWait | None
) -> list[CatalogTable]:
    con = connections.duck_cursor(connection, wait=wait)
    try:
        rows = con.execute(
            "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()
        found = []
        for schema, table, size in rows:
            if not any(_matches(p, schema, table, "main") for p in patterns):
                continue
            cols = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ? ORDER BY column_index",
                [schema, table],
            ).fetchall()
            found.append(
                CatalogTable(
                    name=f"{prefix or connection}.{table}" if schema == "main" else f"{prefix or connection}.{schema}.{table}",
                    location=f"{schema}.{table}",
                    connection=connection,
                    format="table",
                    columns=[{"name": c[0], "type": str(c[1])} for c in cols],
                    row_estimate=int(size) if size is not None else None,
                )
            )
        return found
    finally:
        con.close()
