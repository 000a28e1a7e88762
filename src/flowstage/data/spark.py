"""The Spark engine: `engine: spark` runs a dataflow package on the runner's SparkSession.

The package compiles in Spark's dialect (`data/compile.py`) to one query that Spark plans and runs
whole. Each dataflow gets its own session over the process's shared SparkContext
(`data/spark_session.shared_session`): its temporary views and SQL settings are its own, the JVM
starts once per runner process.

Sources: files are read by Spark's readers, typed as DuckDB types them, so both engines see the
same values: DuckDB's sniffer names each column's type (a DESCRIBE over the same reader the DuckDB
engine uses; it samples), Spark reads CSV as text, turns the null markers (empty, quoted empty,
NA, N/A, NULL, null) into NULL and casts. Tables of other connections move in as Arrow.
Variables are Spark SQL named parameters; the compiled text must parse as one query.

Sinks: one file (or a folder of hive partitions) written beside the last output and swapped at the
end; append adds files; upsert rewrites the files as a new version. Tables move out as Arrow to
the DuckDB table writer or `data/arrow_io.write_arrow`.

Spark's TIMESTAMP (with the session's time zone, UTC) is written as the plain TIMESTAMP DuckDB
gives, unless it passes through unchanged from a source that carried a time zone.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import gzip
import io
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from flowstage.data.compile import SPARK, compile_package, literal, parameters, qualified
from flowstage.data.engine import (
    NULL_MARKERS,
    CatalogLookup,
    DataflowRequest,
    DataflowResult,
    _first_line,
    _has_hive,
    _read_duck,
    _remove,
    _resolve,
    _size,
    existing_output,
    reader_sql,
    write_duck_table,
)
from flowstage.errors import DefinitionError, RunError
from flowstage.model.dataflow import Package, Sink, Source, format_of
from flowstage.redact import scrub

log = logging.getLogger(__name__)

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
_configured: set[int] = set()
_configure_lock = threading.Lock()


class SparkEngine:
    """Runs a package on Spark, in the calling thread, as one job tag that a kill cancels."""

    def __init__(self) -> None:
        self._tag = f"flowstage-dataflow-{uuid.uuid4().hex[:12]}"
        self._cancelled = threading.Event()
        self._context: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the run
    def run(self, request: DataflowRequest, cancel: Callable[[Callable[[], None]], None]) -> DataflowResult:
        started = time.perf_counter()
        name = request.package.name
        cancel(self._cancel)
        try:
            spark = self._session(request)
            context = spark.sparkContext
            context.addJobTag(self._tag)  # this thread's jobs, until removed
            try:
                result = _Run(self, request, spark).execute()
            finally:
                with contextlib.suppress(Exception):
                    context.removeJobTag(self._tag)
        except (RunError, DefinitionError):
            if self._cancelled.is_set():
                raise RunError(f"dataflow {name}: cancelled") from None
            raise
        except Exception as exc:
            if self._cancelled.is_set():
                raise RunError(f"dataflow {name}: cancelled") from None
            log.debug("spark dataflow %s failed", name, exc_info=True)
            raise RunError(scrub(f"dataflow {name}: {spark_message(exc)}", request.connections.secrets())) from None
        result.metrics["seconds"] = round(time.perf_counter() - started, 6)
        return result

    def _session(self, request: DataflowRequest) -> Any:
        from flowstage.data.spark_session import shared_session

        t0 = time.perf_counter()
        shared = shared_session(request.spark)
        took = time.perf_counter() - t0
        if took > 1:
            request.log(f"started Spark ({request.spark.master}) in {took:.1f}s")
        _configure_process(shared, request.spark.conf)
        with self._lock:
            self._context = shared.sparkContext
        if self._cancelled.is_set():
            raise RunError(f"dataflow {request.package.name}: cancelled")
        spark = shared.newSession()
        # DuckDB's TIMESTAMP has no time zone: so have CASTs, literals and Arrow's plain timestamps here;
        # partition folder values come in as text and take the type DuckDB gives them
        spark.conf.set("spark.sql.timestampType", "TIMESTAMP_NTZ")
        spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        return spark

    def _cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            context = self._context
        if context is not None:
            context.cancelJobsWithTag(self._tag)

    def check(self) -> None:
        """Stop here when the dataflow was cancelled (between Spark jobs)."""
        if self._cancelled.is_set():
            raise RunError("cancelled")


def _configure_process(shared: Any, conf: Mapping[str, str]) -> None:
    """Once per SparkContext: keep Spark's own error logging and progress bar off the runner's terminal.

    A failed query reaches the user as the task's one-line error (masked); PySpark would also log it
    with its JVM stack trace to stderr, past flowstage's masking. ``spark.log.level`` in flowstage.yaml's
    `spark: conf:` keeps the level it names.
    """
    with _configure_lock:
        key = id(shared.sparkContext)
        if key in _configured:
            return
        _configured.add(key)
        from pyspark.logger import PySparkLogger

        for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
            PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)
        if "spark.log.level" not in conf:
            shared.sparkContext.setLogLevel("FATAL")
        if conf.get("spark.ui.showConsoleProgress", "false").lower() != "true":
            # PySpark's launcher turns Spark's progress bar on: it would draw over the runner's output
            with contextlib.suppress(Exception):
                bar = shared.sparkContext._jsc.sc().progressBar()
                if bar.isDefined():
                    bar.get().stop()


class _Run:
    """One dataflow on one session: its sources as temporary views, the compiled query, the sink."""

    def __init__(self, engine: SparkEngine, request: DataflowRequest, spark: Any) -> None:
        self.engine = engine
        self.request = request
        self.spark = spark
        self.package: Package = request.package
        self.variables = dict(request.variables)
        self.observed: dict[str, Any] = {}  # source name -> Observation of the rows it gave
        self.arrow_rows: dict[str, int] = {}  # source name -> rows moved in from another database
        self.zoned: set[str] = set()  # columns of sources that carry a time zone
        self.views: list[str] = []
        self.input_bytes = 0  # of the files the sources read

    def execute(self) -> DataflowResult:
        try:
            used = _used_sources(self.package)
            # a source no step reads is not read at all (DuckDB never scans an unused CTE either)
            sources = {
                name: self._source(name, src) if name in used else f"SELECT NULL AS {q('unused')}"
                for name, src in self.package.sources.items()
            }
            compiled = compile_package(self.package, sources, self.columns_of, dialect=SPARK)
            df = _plain_timestamps(self.dataframe(compiled.query()), self.zoned)
            result = self._sink(df)
            per_source = {**{n: _observed(o) for n, o in self.observed.items()}, **self.arrow_rows}
            per_source = {n: v for n, v in per_source.items() if v is not None}
            result.metrics["rows_read"] = sum(per_source.values())
            result.metrics["rows_read_by_source"] = per_source
            return result
        finally:
            for view in self.views:
                with contextlib.suppress(Exception):
                    self.spark.catalog.dropTempView(view)

    # ------------------------------------------------------------------ queries
    def dataframe(self, query: str) -> Any:
        """The DataFrame of `query`, its variables bound; refused unless it is one query."""
        self.engine.check()
        names = parameters(query)
        missing = [n for n in names if n not in self.variables]
        if missing:
            raise DefinitionError(f"expression uses :{missing[0]}, which is not a variable of the package or run")
        one_query(self.spark, query)
        args = {n: self.variables[n] for n in names}
        return self.spark.sql(query, args=args) if args else self.spark.sql(query)

    def columns_of(self, query: str) -> list[str]:
        return list(self.dataframe(query).columns)

    # ------------------------------------------------------------------ sources
    def _source(self, name: str, src: Source) -> str:
        src = _resolve_catalog(name, src, self.request.catalog)
        if src.file is not None:
            path = _resolve(src.file, self.request.root)
            self.input_bytes += sum(os.path.getsize(f) for f in _files(path))
            df = self._observe(name, read_files(self.spark, path, format_of(src.file, src.format), src.options))
        else:
            df = self._from_connection(name, src)
        self.zoned |= {f.name for f in df.schema.fields if f.dataType.typeName() == "timestamp"}
        view = f"__src_{name}"
        df.createOrReplaceTempView(view)
        self.views.append(view)
        return f"SELECT * FROM {q(view)}"

    def _observe(self, name: str, df: Any) -> Any:
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        observation = Observation(f"__flowstage_rows_{name}_{uuid.uuid4().hex[:8]}")
        self.observed[name] = observation
        return df.observe(observation, F.count(F.lit(1)).alias("rows"))

    def _from_connection(self, name: str, src: Source) -> Any:
        conns = self.request.connections
        url = conns.url(src.connection)
        if url.startswith("duckdb:"):
            table = _read_duck(conns, src.connection, src.table, src.query, self.variables, self.request.wait)
        else:
            from flowstage.data.arrow_io import read_arrow

            table = read_arrow(conns, src.connection, table=src.table, query=src.query, params=self.variables)
        self.arrow_rows[name] = table.num_rows
        self.request.log(f"source {name}: {table.num_rows} rows from connection {src.connection!r} (Arrow)")
        self.engine.check()
        return self.spark.createDataFrame(_arrow_for_spark(table))

    # ------------------------------------------------------------------ sinks
    def _sink(self, df: Any) -> DataflowResult:
        sink = self.package.sink
        self.engine.check()
        if sink is None:
            rows = int(df.count())
            return DataflowResult(0, {"rows_out": rows})
        if sink.file is not None:
            return self._to_file(df, sink)
        return self._to_table(df, sink)

    def _to_file(self, df: Any, sink: Sink) -> DataflowResult:
        assert sink.file is not None
        path = Path(_resolve(sink.file, self.request.root))
        fmt = format_of(sink.file, sink.format)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows: int | None = None
        cached = None
        if sink.mode == "upsert":
            cached, df, rows = self._upserted(df, sink, path, fmt)
        out, counted = _counting(df)
        try:
            self._write_file(out, sink, path, fmt)
        finally:
            if cached is not None:
                cached.unpersist()
        written = _observed(counted) or 0
        if rows is None:
            rows = written
        return DataflowResult(rows, {"rows_written": rows, "bytes_written": _size(path)})

    def _write_file(self, out: Any, sink: Sink, path: Path, fmt: str) -> None:
        if sink.mode == "append":
            _write(out, path, fmt, sink, "append")
            _tidy(path)
        else:
            # write beside the old output and swap at the end: a failed run keeps the last good one
            beside = path.with_name(f".{path.name}.flowstage-{os.getpid()}-{time.monotonic_ns()}")
            try:
                if sink.partition_by:
                    _write(out, beside, fmt, sink, "overwrite")
                    _tidy(beside)
                else:
                    # coalesce keeps a sorted result's order and costs no parallelism on small inputs;
                    # a large one is read in parallel and gathered into one file after a shuffle
                    gather = _sorts(self.package) or self.input_bytes < 64 * 2**20
                    _write_one_file(out, beside, fmt, sink, coalesce=gather)
            except BaseException:
                _remove(beside)
                raise
            _remove(path)
            os.replace(beside, path)

    def _upserted(self, df: Any, sink: Sink, path: Path, fmt: str) -> tuple[Any, Any, int]:
        """(the new rows, cached; the old rows whose keys they lack followed by them; how many new rows)."""
        from pyspark import StorageLevel

        new = df.persist(StorageLevel.MEMORY_AND_DISK)  # read once: counted, anti-joined and written
        rows = int(new.count())
        old_files = existing_output(path, fmt)
        if old_files is None:
            return new, new, rows
        old = read_files(self.spark, old_files, fmt, {})
        for view, frame in (("__upsert_old", old), ("__upsert_new", new)):
            frame.createOrReplaceTempView(view)
            self.views.append(view)
        on = " AND ".join(f"o.{q(k)} = s.{q(k)}" for k in sink.keys)
        kept = self.spark.sql(f"SELECT o.* FROM {q('__upsert_old')} AS o LEFT ANTI JOIN {q('__upsert_new')} AS s ON ({on})")
        return new, kept.unionByName(new, allowMissingColumns=True), rows

    def _to_table(self, df: Any, sink: Sink) -> DataflowResult:
        conns = self.request.connections
        url = conns.url(sink.connection)
        table = df.toArrow()
        self.engine.check()
        if url.startswith("duckdb:"):
            cur = conns.duck_cursor(sink.connection, wait=self.request.wait)
            try:
                cur.register("__flowstage_input", table)
                written = write_duck_table(
                    cur, 'SELECT * FROM "__flowstage_input"', {}, qualified(sink.table or ""), sink
                ).rows_written
            finally:
                cur.close()
        else:
            import pyarrow as pa

            from flowstage.data.arrow_io import write_arrow

            reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
            written = write_arrow(conns, sink.connection, sink.table or "", reader, mode=sink.mode, keys=sink.keys)
        return DataflowResult(written, {"rows_written": written})


# ---------------------------------------------------------------------------------------------- checks
def one_query(spark: Any, text: str) -> None:
    """Refuse `text` unless Spark parses it as exactly one query (no command, no script, no insert)."""
    jvm = spark._jvm
    try:
        plan = spark._jsparkSession.sessionState().sqlParser().parsePlan(text)
    except Exception as exc:
        raise RunError(f"the dataflow does not compile: {spark_message(exc)}") from None
    logical = "org.apache.spark.sql.catalyst.plans.logical."
    refused = [jvm.java.lang.Class.forName(logical + c) for c in ("Command", "ParsedStatement")]
    pending, seen = [plan], 0
    while pending:
        node = pending.pop()
        seen += 1
        if seen > 10_000 or any(cls.isInstance(node) for cls in refused):
            raise RunError("an expression of the dataflow would run another statement: refused")
        for seq in (node.children(), node.innerChildren()):
            pending.extend(seq.apply(i) for i in range(seq.size()))


def spark_message(exc: BaseException) -> str:
    """The first line that tells what went wrong: the innermost Spark error of a JVM failure.

    A failed Spark job wraps its cause ("Job aborted due to stage failure: ... : <cause>"); the
    cause carries the error class (``[DIVIDE_BY_ZERO] ...``) the user can act on.
    """
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    chain: list[str] = []
    while java is not None and len(chain) < 20:
        try:
            chain.append(str(java.getMessage() or ""))
            java = java.getCause()
        except Exception:
            break
    classed = [m for m in chain if re.match(r"^\s*\[", m)]
    text = classed[-1] if classed else str(exc) or next((m for m in chain if m), "") or type(exc).__name__
    line = _first_line(RuntimeError(text))
    line = re.sub(r"^An error occurred while calling [^.]+\.\s*", "", line)
    # a position in the compiled query, which the user never wrote
    return re.sub(r";?\s*line \d+ pos \d+;?\s*$", "", line).strip() or type(exc).__name__


# ---------------------------------------------------------------------------------------------- helpers
def _used_sources(package: Package) -> set[str]:
    """The sources the steps read: by name, or named in a sql step (the sources are CTEs it sees)."""
    used: set[str] = set()
    for step in package.steps:
        if step.sql is not None:
            used |= {n for n in package.sources if re.search(rf"(?<![\w`]){re.escape(n)}(?![\w`])", step.sql, re.IGNORECASE)}
            used |= {n for n in package.sources if f"`{n.lower()}`" in step.sql.lower()}
        if step.from_ is not None:
            used.add(step.from_)
        if step.join is not None:
            used.add(step.join.with_)
        if step.union is not None:
            used |= {step.union.with_} if isinstance(step.union.with_, str) else set(step.union.with_)
    return used


def _sorts(package: Package) -> bool:
    return any(step.sort is not None for step in package.steps)


def _observed(observation: Any) -> int | None:
    """The rows an Observation counted, or None when its query never ran that part of the plan.

    `Observation.get` would wait for ever then (a source the optimizer dropped, or one read twice).
    """
    try:
        if not observation._jo.future().isCompleted():
            return None
        return int(observation.get["rows"])
    except Exception:
        return None


def _counting(df: Any) -> tuple[Any, Any]:
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    observation = Observation(f"__flowstage_written_{uuid.uuid4().hex[:8]}")
    return df.observe(observation, F.count(F.lit(1)).alias("rows")), observation


def _resolve_catalog(name: str, src: Source, catalog: CatalogLookup | None) -> Source:
    if src.catalog is None:
        return src
    if catalog is None:
        raise RunError(f"source {name}: no catalog available")
    entry = catalog.get(src.catalog)
    if entry is None:
        raise RunError(f"source {name}: no catalog table {src.catalog!r} (run its crawler first)")
    if entry.connection:
        return Source(table=entry.location, connection=entry.connection)
    return Source(file=entry.location, format=entry.format, options=src.options)


def _plain_timestamps(df: Any, zoned: set[str]) -> Any:
    """Spark's TIMESTAMP columns the query computed, as DuckDB's TIMESTAMP (no time zone, UTC here)."""
    from pyspark.sql import functions as F

    fields = df.schema.fields
    if not any(f.dataType.typeName() == "timestamp" and f.name not in zoned for f in fields):
        return df
    cols = [
        F.col(q(f.name)).cast("timestamp_ntz").alias(f.name)
        if f.dataType.typeName() == "timestamp" and f.name not in zoned
        else F.col(q(f.name))
        for f in fields
    ]
    return df.select(*cols)


def _arrow_for_spark(table: Any) -> Any:
    """An Arrow table Spark takes: unsigned integers widened, dictionaries decoded."""
    import pyarrow as pa
    import pyarrow.types as t

    wider = {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}
    for i, f in enumerate(table.schema):
        kind = f.type
        if t.is_dictionary(kind):
            table = table.set_column(i, f.name, table.column(i).cast(kind.value_type))
        elif t.is_unsigned_integer(kind):
            target = wider.get(kind.bit_width, pa.decimal128(20, 0))
            table = table.set_column(i, f.name, table.column(i).cast(target))
    return table


# ---------------------------------------------------------------------------------------------- reading files
def _files(path: str) -> list[str]:
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
            first = _files(path)[:1] or [path]
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
    files = _files(path)
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
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


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


def _write(df: Any, path: Path, fmt: str, sink: Sink, mode: str) -> None:
    _writer(df, fmt, sink, mode).format(fmt).save(str(path))


def _write_one_file(df: Any, path: Path, fmt: str, sink: Sink, *, coalesce: bool) -> None:
    """One file at `path`, as DuckDB writes it (Spark writes a folder of parts: one part, moved out)."""
    folder = path.with_name(path.name + ".parts")
    single = df.coalesce(1) if coalesce else df.repartition(1)
    try:
        _write(single, folder, fmt, sink, "overwrite")
        parts = [p for p in folder.iterdir() if p.is_file() and p.name.startswith("part-")]
        if len(parts) != 1:
            raise RunError(f"spark wrote {len(parts)} files for one output")
        os.replace(parts[0], path)
    finally:
        _remove(folder)


def _tidy(folder: Path) -> None:
    """Drop the checksum files Hadoop's local file system writes beside each part."""
    for crc in _iter_crc(folder):
        with contextlib.suppress(OSError):
            crc.unlink()


def _iter_crc(folder: Path) -> Iterable[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob(".*.crc") if p.is_file()]


__all__ = ["SparkEngine", "one_query", "read_files", "spark_message", "spark_pattern", "spark_type"]
