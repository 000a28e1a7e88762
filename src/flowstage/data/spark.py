"""The Spark engine: `engine: spark` runs a dataflow package on the runner's SparkSession.

The package compiles in Spark's dialect (`data/compile.py`) to one query that Spark plans and runs
whole. Each dataflow gets its own session over the process's shared SparkContext
(`data/spark_session.shared_session`): its temporary views and SQL settings are its own, the JVM
starts once per runner process.

Sources: files are read by Spark's readers, typed as DuckDB types them, so both engines see the
same values (`data/spark_files.py`: CSV read as text, the null markers — empty, quoted empty, NA,
N/A, NULL, null — turned into NULL, then cast). Tables of other connections move in as Arrow.
Variables are Spark SQL named parameters; the compiled text must parse as one query.

Sinks: one file (or a folder of hive partitions) written beside the last output and swapped at the
end; append adds files; upsert rewrites the files as a new version. Tables move out as Arrow to
the DuckDB table writer or `data/arrow_io.write_arrow`.

Spark's TIMESTAMP (with the session's time zone, UTC) is written as the plain TIMESTAMP DuckDB
gives, unless it passes through unchanged from a source that carried a time zone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flowstage.data.compile import SPARK, compile_package, parameters
from flowstage.data.engine import (
    CatalogLookup,
    DataflowRequest,
    DataflowResult,
    _first_line,
    _read_duck,
    _remove,
    _resolve,
    _size,
    existing_output,
    write_to_connection,
)
from flowstage.data.spark_files import data_files, read_files, tidy, write, write_one_file
from flowstage.errors import DefinitionError, RunError
from flowstage.model.dataflow import Package, Sink, Source, format_of
from flowstage.redact import scrub

log = logging.getLogger(__name__)

q = SPARK.ident

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
    """Once per SparkContext: keep Spark's own error logging off the runner's terminal.

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
            self.input_bytes += sum(os.path.getsize(f) for f in data_files(path))
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
            write(out, path, fmt, sink, "append")
            tidy(path)
        else:
            # write beside the old output and swap at the end: a failed run keeps the last good one
            beside = path.with_name(f".{path.name}.flowstage-{os.getpid()}-{time.monotonic_ns()}")
            try:
                if sink.partition_by:
                    write(out, beside, fmt, sink, "overwrite")
                    tidy(beside)
                else:
                    # coalesce keeps a sorted result's order and costs no parallelism on small inputs;
                    # a large one is read in parallel and gathered into one file after a shuffle
                    gather = _sorts(self.package) or self.input_bytes < 64 * 2**20
                    write_one_file(out, beside, fmt, sink, coalesce=gather)
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
        table = df.toArrow()
        self.engine.check()
        written = write_to_connection(self.request.connections, sink, table, self.request.wait)
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


__all__ = ["SparkEngine", "one_query", "spark_message"]
