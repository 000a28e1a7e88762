"""Files for the Spark engine: read with the columns and types DuckDB gives them, written as DuckDB writes them.

DuckDB's sniffer (a DESCRIBE over the reader the DuckDB engine uses, and `sniff_csv` for the CSV
dialect) names each column and its type; Spark reads CSV as text, in groups of files with the same
header merged by name (DuckDB's union_by_name), turns the null markers into NULL and casts each
column to the Spark type of DuckDB's type. JSON and Parquet keep Spark's reading, reordered and
cast the same way. Hive ``key=value`` folders become columns (Spark's partition discovery).

Writing: one file where DuckDB writes one (Spark writes a folder of parts: its single part is moved
out), a folder of hive partitions with partition_by; CSV and JSON as DuckDB's COPY formats them.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import gzip
import io
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flowstage.data.compile import SPARK, literal
from flowstage.data.engine import NULL_MARKERS, _has_hive, _remove, reader_sql
from flowstage.errors import DefinitionError, RunError
from flowstage.model.dataflow import Sink

q = SPARK.ident

# DuckDB reader options the Spark readers follow too (others that only shape DuckDB's typing, such as
# sample_size or types, act through the sniffer; anything else is refused)
_CSV_OPTIONS = {"delim": "sep", "sep": "sep", "delimiter": "sep", "quote": "quote", "escape": "escape", "header": "header"}
_TYPING_OPTIONS = {"sample_size", "types", "dtypes", "all_varchar", "auto_type_candidates", "dateformat", "timestampformat"}
_SINK_OPTIONS = {
    "header": "header",
    "delimiter": "sep",
    "delim": "sep",
    "sep": "sep",
    "quote": "quote",
    "escape": "escape",
    "compression": "compression",
    "codec": "compression",
    "nullstr": "nullValue",
}
_TIMESTAMP_TEXT = "yyyy-MM-dd HH:mm:ss[.SSSSSS]"


# ---------------------------------------------------------------------------------------------- reading files
def data_files(path: str) -> list[str]:
    """The data files at `path` (a file, a folder or a glob; ``**`` recursive), as DuckDB's readers find them."""
    p = Path(path)
    if p.is_dir():
        found = [str(f) for f in sorted(p.rglob("*")) if f.is_file()]
    else:
        found = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
    return [f for f in found if not os.path.basename(f).startswith((".", "_"))]


def _base_path(files: list[str]) -> str | None:
    """The folder above the first ``key=value`` folder, for Spark's partition discovery."""
    parts = Path(files[0]).parts
    for i, part in enumerate(parts[:-1]):
        if "=" in part:
            return str(Path(*parts[:i]))
    return None


def _duck_columns(path: str, fmt: str, options: Mapping[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(name, DuckDB type) of each column DuckDB's reader gives for `path`, and for CSV the dialect its sniffer found."""
    import duckdb

    con = duckdb.connect()
    try:
        described = con.execute(f"DESCRIBE {reader_sql(path, fmt, options)}").fetchall()
        dialect: dict[str, Any] = {}
        if fmt == "csv":
            first = data_files(path)[:1] or [path]
            sniff_opts = "".join(
                f", {k} = {literal(v)}" for k, v in options.items() if k in _CSV_OPTIONS or k in ("dateformat", "timestampformat")
            )
            cur = con.execute(
                f"SELECT Delimiter, Quote, Escape, HasHeader, DateFormat, TimestampFormat FROM sniff_csv({literal(first[0])}{sniff_opts})"
            )
            row = cur.fetchone()
            if row is not None:
                # the sniffer says "(empty)" for a quote or escape it saw no use of
                found = [None if v == "(empty)" else v for v in row]
                dialect = dict(zip(("sep", "quote", "escape", "header", "dateformat", "timestampformat"), found, strict=True))
    finally:
        con.close()
    return [(r[0], r[1]) for r in described], dialect


def read_files(spark: Any, path: str, fmt: str, options: Mapping[str, Any]) -> Any:
    """The rows of the files at `path` with the columns and types DuckDB's reader gives them."""
    for key in options:
        if key not in _CSV_OPTIONS and key not in _TYPING_OPTIONS and key != "nullstr":
            raise DefinitionError(f"reader option {key!r} is not supported by the spark engine")
    files = data_files(path)
    if not files:
        raise RunError(f"no files match {path}")
    columns, dialect = _duck_columns(path, fmt, options)
    base = _base_path(files) if _has_hive(path) else None
    reader = spark.read
    if base is not None:
        reader = reader.option("basePath", base)
    if fmt == "csv":
        df = _read_csv(spark, reader, files, columns, dialect, options)
    elif fmt == "parquet":
        df = (reader.option("mergeSchema", "true") if len(files) > 1 else reader).parquet(*files)
    else:
        df = _read_json(reader, files)
    return _typed(df, columns, dialect, csv_text=fmt == "csv", markers=_markers(options))


def _markers(options: Mapping[str, Any]) -> list[str]:
    given = options.get("nullstr")
    if given is None:
        return list(NULL_MARKERS)
    return [str(v) for v in given] if isinstance(given, list | tuple) else [str(given)]


def _open_text(path: str) -> io.TextIOBase:
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # a byte order mark is not part of the first name


def _read_csv(
    spark: Any,
    reader: Any,
    files: list[str],
    columns: list[tuple[str, str]],
    dialect: Mapping[str, Any],
    options: Mapping[str, Any],
) -> Any:
    """Every file as text, in groups of files with the same header, merged by name as DuckDB's union_by_name."""
    from pyspark.sql.types import StringType, StructField, StructType

    opts = {"sep": dialect.get("sep") or ",", "quote": dialect.get("quote") or '"', "header": bool(dialect.get("header", True))}
    for key, value in options.items():
        if key in _CSV_OPTIONS:
            opts[_CSV_OPTIONS[key]] = value
    escape = dialect.get("escape")
    # RFC 4180 doubles a quote inside a quoted field; Spark's default escape is a backslash
    opts["escape"] = options.get("escape") or escape or opts["quote"]
    opts["header"] = bool(opts["header"])
    groups: dict[tuple[str, ...], list[str]] = {}
    for f in files:
        groups.setdefault(_header(f, opts) if opts["header"] else (), []).append(f)
    frames = []
    for header, group in groups.items():
        names = list(header) or [c for c, _ in columns][: _width(group[0], opts)]
        schema = StructType([StructField(n, StringType()) for n in names])
        frames.append(
            reader.schema(schema).csv(
                group,
                sep=opts["sep"],
                quote=opts["quote"],
                escape=opts["escape"],
                header=opts["header"],
                enforceSchema=True,
                mode="FAILFAST",
            )
        )
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other, allowMissingColumns=True)
    return df


def _header(path: str, opts: Mapping[str, Any]) -> tuple[str, ...]:
    with _open_text(path) as fh:
        row = next(csv.reader(fh, delimiter=str(opts["sep"]), quotechar=str(opts["quote"])), [])
    return tuple(row)


def _width(path: str, opts: Mapping[str, Any]) -> int:
    return len(_header(path, opts))


def _read_json(reader: Any, files: list[str]) -> Any:
    """JSON arrays (one document per file) and newline-delimited objects, merged by name."""
    groups: dict[bool, list[str]] = {}
    for f in files:
        with _open_text(f) as fh:
            head = fh.read(4096).lstrip()
        groups.setdefault(head.startswith("["), []).append(f)
    frames = [reader.json(group, multiLine=multi) for multi, group in groups.items()]
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other, allowMissingColumns=True)
    return df


_SIMPLE_TYPES = {
    "BOOLEAN": "BOOLEAN",
    "TINYINT": "TINYINT",
    "SMALLINT": "SMALLINT",
    "INTEGER": "INT",
    "BIGINT": "BIGINT",
    "HUGEINT": "DECIMAL(38,0)",
    "UTINYINT": "SMALLINT",
    "USMALLINT": "INT",
    "UINTEGER": "BIGINT",
    "UBIGINT": "DECIMAL(20,0)",
    "FLOAT": "FLOAT",
    "DOUBLE": "DOUBLE",
    "VARCHAR": "STRING",
    "UUID": "STRING",
    "TIME": "STRING",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP_NTZ",
    "TIMESTAMP_S": "TIMESTAMP_NTZ",
    "TIMESTAMP_MS": "TIMESTAMP_NTZ",
    "TIMESTAMP_NS": "TIMESTAMP_NTZ",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP_LTZ",
    "BLOB": "BINARY",
}


def spark_type(duck_type: str) -> str | None:
    """The Spark SQL type of a DuckDB type; None for nested types (kept as Spark reads them)."""
    upper = duck_type.upper().strip()
    if upper in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[upper]
    found = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", upper)
    if found:
        return f"DECIMAL({found.group(1)},{found.group(2)})"
    return None


def _typed(df: Any, columns: list[tuple[str, str]], dialect: Mapping[str, Any], *, csv_text: bool, markers: list[str]) -> Any:
    """`df` with DuckDB's columns, in DuckDB's order, each cast to the Spark type of DuckDB's type."""
    from pyspark.sql import functions as F

    have = {f.name.lower(): f for f in df.schema.fields}
    marker_list = ", ".join(literal(m) for m in markers)
    exprs = []
    for name, duck_type in columns:
        field = have.get(name.lower())
        target = spark_type(duck_type)
        if field is None:
            exprs.append(F.expr(f"CAST(NULL AS {target or 'STRING'})").alias(name))
            continue
        col = q(field.name)
        is_text = field.dataType.typeName() == "string"
        text = f"CASE WHEN {col} IN ({marker_list}) THEN NULL ELSE {col} END" if csv_text and is_text and markers else col
        if target is None or (
            not is_text and field.dataType.simpleString() == target.lower().replace("timestamp_ltz", "timestamp")
        ):
            exprs.append(F.expr(text).alias(name))
            continue
        exprs.append(F.expr(_cast(text, target, dialect if is_text else {})).alias(name))
    return df.select(*exprs)


def _cast(text: str, target: str, dialect: Mapping[str, Any]) -> str:
    date_format = dialect.get("dateformat")
    stamp_format = dialect.get("timestampformat")
    if target == "DATE" and date_format and date_format != "%Y-%m-%d":
        return f"to_date({text}, {literal(spark_pattern(date_format))})"
    if target == "TIMESTAMP_NTZ" and stamp_format and not re.fullmatch(r"%Y-%m-%d[ T]%H:%M:%S(\.%f)?", stamp_format):
        return f"to_timestamp_ntz({text}, {literal(spark_pattern(stamp_format))})"
    return f"CAST({text} AS {target})"


_PATTERN = {
    "Y": "yyyy",
    "y": "yy",
    "m": "MM",
    "-m": "M",
    "d": "dd",
    "-d": "d",
    "H": "HH",
    "-H": "H",
    "I": "hh",
    "M": "mm",
    "S": "ss",
    "f": "SSSSSS",
    "g": "SSS",
    "n": "SSSSSSSSS",
    "p": "a",
    "b": "MMM",
    "B": "MMMM",
    "a": "EEE",
    "A": "EEEE",
    "j": "DDD",
    "z": "XX",
    "%": "%",
}


def spark_pattern(strftime: str) -> str:
    """A DuckDB (strftime) date format as a Spark datetime pattern."""
    out: list[str] = []
    i = 0
    while i < len(strftime):
        ch = strftime[i]
        if ch == "%":
            code = strftime[i + 1 : i + 3] if strftime[i + 1 : i + 2] == "-" else strftime[i + 1 : i + 2]
            if code not in _PATTERN:
                raise DefinitionError(f"date format {strftime!r}: %{code} has no Spark equivalent")
            out.append(_PATTERN[code])
            i += 1 + len(code)
        elif ch.isalpha() or ch == "'":
            out.append("''" if ch == "'" else f"'{ch}'")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------- writing files
def _writer(df: Any, fmt: str, sink: Sink, mode: str) -> Any:
    writer = df.write.mode(mode).option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    if fmt == "csv":
        # as DuckDB's COPY writes CSV: a header, nulls empty, timestamps with a space
        writer = writer.option("header", "true").option("nullValue", "").option("timestampNTZFormat", _TIMESTAMP_TEXT)
        writer = writer.option("timestampFormat", _TIMESTAMP_TEXT + "x")
    elif fmt == "json":
        writer = writer.option("ignoreNullFields", "false").option("timestampNTZFormat", _TIMESTAMP_TEXT)
    for key, value in sink.options.items():
        target = _SINK_OPTIONS.get(key.lower())
        if target is None:
            raise DefinitionError(f"sink option {key!r} is not supported by the spark engine")
        writer = writer.option(target, str(value).lower() if isinstance(value, bool) else value)
    if sink.partition_by:
        writer = writer.partitionBy(*sink.partition_by)
    return writer


def write(df: Any, path: Path, fmt: str, sink: Sink, mode: str) -> None:
    _writer(df, fmt, sink, mode).format(fmt).save(str(path))


def write_one_file(df: Any, path: Path, fmt: str, sink: Sink, *, coalesce: bool) -> None:
    """One file at `path`, as DuckDB writes it (Spark writes a folder of parts: one part, moved out)."""
    folder = path.with_name(path.name + ".parts")
    single = df.coalesce(1) if coalesce else df.repartition(1)
    try:
        write(single, folder, fmt, sink, "overwrite")
        parts = [p for p in folder.iterdir() if p.is_file() and p.name.startswith("part-")]
        if len(parts) != 1:
            raise RunError(f"spark wrote {len(parts)} files for one output")
        os.replace(parts[0], path)
    finally:
        _remove(folder)


def tidy(folder: Path) -> None:
    """Drop the checksum files Hadoop's local file system writes beside each part."""
    for crc in _iter_crc(folder):
        with contextlib.suppress(OSError):
            crc.unlink()


def _iter_crc(folder: Path) -> Iterable[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob(".*.crc") if p.is_file()]


__all__ = ["data_files", "read_files", "spark_pattern", "spark_type", "tidy", "write", "write_one_file"]
