"""The dataflow engine interface, and the DuckDB engine.

A package compiles to one query that DuckDB plans and runs whole: files are read by DuckDB's own
readers and written by ``COPY ... TO`` (no row passes through Python on the file-to-file path);
tables of the warehouse are read and written in place; tables of other databases move as Arrow
record batches (`data/arrow_io.py`). Variables are bound as ``$name`` parameters; the compiled
query must be exactly one SELECT, so no expression can become another statement. A dataflow holds
the warehouse file from its first source to its sink (other DuckDB files only while it reads or
writes them), waiting as `DataflowRequest.wait` says while another process holds one.

File sinks: overwrite writes beside the last output and swaps at the end (a failed run keeps the
last good one); append adds files (with partition_by); upsert rewrites the files as a new version
holding the old rows whose keys the new rows do not have, and the new rows. `engine: spark` runs
the same package on Spark (`data/spark.py`), its SQL compiled in Spark's dialect.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from flowstage.connections import Connections, LockWait, to_dollar_params
from flowstage.data.compile import Compiled, compile_package, ident, literal, qualified
from flowstage.errors import DefinitionError, RunError
from flowstage.model.dataflow import Package, Sink, Source, format_of
from flowstage.plugins import Registry
from flowstage.redact import scrub
from flowstage.settings import SparkSettings

NULL_MARKERS = ["", "NA", "N/A", "NULL", "null"]
_OPTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CatalogLookup(Protocol):
    def get(self, name: str) -> Any: ...


@dataclass
class DataflowResult:
    rows_written: int
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataflowRequest:
    package: Package
    variables: Mapping[str, Any]
    root: Path
    connections: Connections
    catalog: CatalogLookup | None = None
    log: Callable[[str], None] = lambda _m: None
    package_file: str | None = None
    #: how to wait for a DuckDB file another process holds (default: without a bound)
    wait: LockWait | None = None
    #: flowstage.yaml's `spark:` (the session `engine: spark` runs on)
    spark: SparkSettings = field(default_factory=SparkSettings)


class DataflowEngine(Protocol):
    def run(self, request: DataflowRequest, cancel: Callable[[Callable[[], None]], None]) -> DataflowResult: ...


#: dataflow engines by name; `spark` and others come from the `flowstage.dataflow_engines` entry points
ENGINES = Registry(
    "flowstage.dataflow_engines",
    {"duckdb": "flowstage.data.engine:DuckDBEngine", "spark": "flowstage.data.spark:SparkEngine"},
    what="dataflow engine",
)


def engine_for(name: str) -> DataflowEngine:
    """A new engine of kind `name` (a class or factory registered under that name)."""
    try:
        factory = ENGINES.get(name)
    except LookupError as exc:
        raise DefinitionError(f"dataflow engine {name!r} is not available here ({exc})") from None
    engine: DataflowEngine = factory()
    return engine


def _resolve(path: str, root: Path) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else root / p)


def reader_sql(path: str, fmt: str, options: Mapping[str, Any]) -> str:
    """DuckDB's reader for files at `path` (a glob), hive partitions and mixed schemas merged."""
    opts: dict[str, Any] = {"union_by_name": True, "hive_partitioning": _has_hive(path)}
    if fmt == "csv":
        opts["nullstr"] = NULL_MARKERS
        func = "read_csv"
    elif fmt == "parquet":
        func = "read_parquet"
    else:
        func = "read_json_auto"
        opts.pop("union_by_name")
    for key, value in options.items():
        if not _OPTION.match(key):
            raise DefinitionError(f"reader option {key!r} is not a name")
        opts[key] = value
    args = "".join(f", {k} = {literal(v)}" for k, v in opts.items())
    return f"SELECT * FROM {func}({literal(path)}{args})"


def existing_output(path: Path, fmt: str) -> str | None:
    """The files a file sink wrote at `path` last time, as a path or glob to read; None when there are none."""
    if path.is_file():
        return str(path)
    if path.is_dir():
        pattern = "*.parquet" if fmt == "parquet" else f"*.{fmt}"
        if any(path.rglob(pattern)):
            return str(path / "**" / pattern)
    return None


def _has_hive(path: str) -> bool:
    """Whether files under `path` sit in key=value folders."""
    import glob

    if re.search(r"[^/]+=[^/]+/", path):
        return True
    for found in glob.iglob(path, recursive=True):
        return bool(re.search(r"/[^/=]+=[^/]+/", found))
    return False


def _duck_path(url: str) -> str:
    return url.split(":///", 1)[1] if ":///" in url else ":memory:"


class DuckDBEngine:
    """Runs a package inside the warehouse DuckDB database."""

    def __init__(self) -> None:
        self.where: dict[str, str] = {}  # source name -> the files, table or view it reads
        self.arrow_rows: dict[str, int] = {}  # source name -> rows moved in from another database

    def run(self, request: DataflowRequest, cancel: Callable[[Callable[[], None]], None]) -> DataflowResult:
        started = time.perf_counter()
        conns = request.connections
        warehouse_url = conns.url("warehouse")
        con = conns.duck_cursor("warehouse", wait=request.wait)
        cancel(con.interrupt)
        attached: dict[str, str] = {}
        registered: list[str] = []
        try:
            sources = {
                name: self._source_sql(name, src, request, con, warehouse_url, attached, registered)
                for name, src in request.package.sources.items()
            }
            params_all = dict(request.variables)

            def columns_of(query: str) -> list[str]:
                text, bound = _bind(query, params_all)
                _one_select(text)  # DuckDB runs every statement of a text: refuse before DESCRIBE, as before the query
                try:
                    cur = con.execute(f"DESCRIBE {text}", bound) if bound else con.execute(f"DESCRIBE {text}")
                    return [r[0] for r in cur.fetchall()]
                except Exception as exc:
                    raise self._locate(request, compiled_holder, exc, params_all, con) from None

            compiled_holder: list[Compiled] = []
            compiled = compile_package(request.package, sources, columns_of)
            compiled_holder.append(compiled)
            query = compiled.query()
            text, bound = _bind(query, params_all)
            _one_select(text)
            result = self._sink(request, con, text, bound, warehouse_url, attached, compiled, params_all)
            scans = result.metrics.get("rows_read")
            if isinstance(scans, dict):
                # the profiler names every Arrow view PYTHON_ARROW_SCAN: those count by source when read
                scans = {k: v for k, v in scans.items() if k != "PYTHON_ARROW_SCAN"}
                per_source = {**_per_source(scans, self.where), **self.arrow_rows}
                result.metrics["rows_read"] = sum(per_source.values())
                result.metrics["rows_read_by_source"] = per_source
        except RunError:
            raise
        except DefinitionError:
            raise
        except Exception as exc:
            raise RunError(scrub(f"dataflow {request.package.name}: {_first_line(exc)}", conns.secrets())) from None
        finally:
            for view in registered:
                try:
                    con.unregister(view)
                except Exception:
                    pass
            try:
                con.close()
            except Exception:
                pass
        result.metrics["seconds"] = round(time.perf_counter() - started, 6)
        return result

    # ------------------------------------------------------------------ sources
    def _source_sql(
        self,
        name: str,
        src: Source,
        request: DataflowRequest,
        con: Any,
        warehouse_url: str,
        attached: dict[str, str],
        registered: list[str],
    ) -> str:
        if src.catalog is not None:
            if request.catalog is None:
                raise RunError(f"source {name}: no catalog available")
            entry = request.catalog.get(src.catalog)
            if entry is None:
                raise RunError(f"source {name}: no catalog table {src.catalog!r} (run its crawler first)")
            if entry.connection:
                src = Source(table=entry.location, connection=entry.connection)
            else:
                src = Source(file=entry.location, format=entry.format, options=src.options)
        if src.file is not None:
            self.where[name] = _resolve(src.file, request.root)
            return reader_sql(self.where[name], format_of(src.file, src.format), src.options)
        url = request.connections.url(src.connection)
        if url == warehouse_url:
            if src.query is not None:
                return src.query
            assert src.table is not None
            self.where[name] = src.table.split(".")[-1]
            return f"SELECT * FROM {qualified(src.table)}"
        if url.startswith("duckdb:"):
            table = _read_duck(request.connections, src.connection, src.table, src.query, request.variables, request.wait)
        else:
            from flowstage.data.arrow_io import read_arrow

            table = read_arrow(request.connections, src.connection, table=src.table, query=src.query, params=request.variables)
        view = f"__src_{name}"
        self.where[name] = view
        self.arrow_rows[name] = table.num_rows
        con.register(view, table)
        registered.append(view)
        request.log(f"source {name}: {table.num_rows} rows from connection {src.connection!r} (Arrow)")
        return f"SELECT * FROM {ident(view)}"

    # ------------------------------------------------------------------ sinks
    def _sink(
        self,
        request: DataflowRequest,
        con: Any,
        text: str,
        bound: dict[str, Any],
        warehouse_url: str,
        attached: dict[str, str],
        compiled: Compiled,
        params: dict[str, Any],
    ) -> DataflowResult:
        sink = request.package.sink
        if sink is None:
            rows = _run_profiled(con, f"SELECT count(*) FROM ({text})", bound)
            return DataflowResult(0, {"rows_read": rows[1], "rows_out": rows[0][0][0], **rows[2]})
        if sink.file is not None:
            return self._to_file(request, con, text, bound, sink)
        url = request.connections.url(sink.connection)
        if url == warehouse_url:
            return write_duck_table(con, text, bound, qualified(sink.table or ""), sink)
        with _profiling(con) as profile:
            rel = con.sql(text, params=bound) if bound else con.sql(text)
            # DuckDB 2 reads a relation with to_arrow_reader (fetch_record_batch is gone); 1.x with fetch_arrow_reader
            batches = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
            written = write_to_connection(request.connections, sink, batches(100_000), request.wait)
        return DataflowResult(written, {"rows_written": written, "rows_read": profile.per_source, **profile.extra})

    def _to_file(self, request: DataflowRequest, con: Any, text: str, bound: dict[str, Any], sink: Sink) -> DataflowResult:
        assert sink.file is not None
        path = Path(_resolve(sink.file, request.root))
        fmt = format_of(sink.file, sink.format)
        path.parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {"FORMAT": fmt.upper()}
        if sink.partition_by:
            options["PARTITION_BY"] = "(" + ", ".join(ident(c) for c in sink.partition_by) + ")"
            if sink.mode == "append":
                options["APPEND"] = True
            else:
                options["OVERWRITE_OR_IGNORE"] = True
        for key, value in sink.options.items():
            if not _OPTION.match(key):
                raise DefinitionError(f"sink option {key!r} is not a name")
            options[key.upper()] = value
        opts = ", ".join(f"{k} {v if k == 'PARTITION_BY' else literal(v)}" for k, v in options.items())
        # overwrite and upsert write beside the old output and swap at the end: a failed run keeps the last good one
        into = path if sink.mode == "append" else path.with_name(f".{path.name}.flowstage-{os.getpid()}-{time.monotonic_ns()}")
        try:
            if sink.mode == "upsert":
                rows, per_source, extra = self._upsert_files(con, text, bound, sink, path, into, fmt, opts)
            else:
                written, per_source, extra = _run_profiled(con, f"COPY ({text}) TO {literal(str(into))} ({opts})", bound)
                rows = int(written[0][0]) if written and written[0] else 0
        except BaseException:
            if into != path:
                _remove(into)
            raise
        if into != path:
            _remove(path)
            os.replace(into, path)
        metrics = {"rows_written": rows, "bytes_written": _size(path), "rows_read": per_source, **extra}
        return DataflowResult(rows, metrics)

    def _upsert_files(
        self, con: Any, text: str, bound: dict[str, Any], sink: Sink, path: Path, into: Path, fmt: str, opts: str
    ) -> tuple[int, dict[str, int], dict[str, Any]]:
        """The old rows whose keys the new rows lack, and the new rows, written to `into`; returns
        (new rows, rows read per source, io metrics)."""
        stage = ident(f"__flowstage_upsert_{os.getpid()}_{time.monotonic_ns()}")
        _, per_source, extra = _run_profiled(con, f"CREATE TEMP TABLE {stage} AS {text}", bound)
        try:
            rows = int(con.execute(f"SELECT count(*) FROM {stage}").fetchone()[0])
            merged = f"SELECT * FROM {stage}"
            old = existing_output(path, fmt)
            if old is not None:
                on = " AND ".join(f"o.{ident(k)} = s.{ident(k)}" for k in sink.keys)
                kept = f"SELECT o.* FROM ({reader_sql(old, fmt, {})}) AS o ANTI JOIN {stage} AS s ON ({on})"
                merged = f"{kept} UNION ALL BY NAME {merged}"
            con.execute(f"COPY ({merged}) TO {literal(str(into))} ({opts})")
        finally:
            with contextlib.suppress(Exception):  # an interrupted run may have lost its temp table already
                con.execute(f"DROP TABLE IF EXISTS {stage}")
        return rows, per_source, extra

    # ------------------------------------------------------------------ errors
    def _locate(
        self, request: DataflowRequest, holder: list[Compiled], exc: Exception, params: dict[str, Any], con: Any
    ) -> RunError:
        return RunError(scrub(f"dataflow {request.package.name}: {_first_line(exc)}", request.connections.secrets()))


def write_duck_table(con: Any, text: str, bound: dict[str, Any], target: str, sink: Sink) -> DataflowResult:
    """Write the rows of `text` into table `target` of a DuckDB connection, in one transaction, as `sink.mode` says."""
    exists = _duck_table_exists(con, target)
    con.execute("BEGIN TRANSACTION")
    try:
        if sink.mode == "overwrite" or not exists:
            _, per_source, extra = _run_profiled(con, f"CREATE OR REPLACE TABLE {target} AS {text}", bound)
            rows = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
        elif sink.mode == "append":
            result, per_source, extra = _run_profiled(con, f"INSERT INTO {target} BY NAME {text}", bound)
            rows = int(result[0][0]) if result else 0
        else:
            _, per_source, extra = _run_profiled(con, f"CREATE OR REPLACE TEMP TABLE __flowstage_stage AS {text}", bound)
            rows = con.execute("SELECT count(*) FROM __flowstage_stage").fetchone()[0]
            on = " AND ".join(f"t.{ident(k)} = s.{ident(k)}" for k in sink.keys)
            con.execute(
                f"MERGE INTO {target} AS t USING __flowstage_stage AS s ON ({on}) "
                "WHEN MATCHED THEN UPDATE BY NAME WHEN NOT MATCHED THEN INSERT BY NAME"
            )
            con.execute("DROP TABLE __flowstage_stage")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return DataflowResult(int(rows), {"rows_written": int(rows), "rows_read": per_source, **extra})


def write_to_connection(connections: Connections, sink: Sink, reader: Any, wait: LockWait | None) -> int:
    """Write Arrow data (a record batch reader or a table) to `sink`'s table on a connection that is not
    the dataflow's own warehouse session: another DuckDB file, or any database through Arrow. Returns the rows written."""
    if connections.url(sink.connection).startswith("duckdb:"):
        cur = connections.duck_cursor(sink.connection, wait=wait)
        try:
            cur.register("__flowstage_input", reader)
            return write_duck_table(cur, 'SELECT * FROM "__flowstage_input"', {}, qualified(sink.table or ""), sink).rows_written
        finally:
            cur.close()
    import pyarrow as pa

    from flowstage.data.arrow_io import write_arrow

    if isinstance(reader, pa.Table):
        reader = pa.RecordBatchReader.from_batches(reader.schema, reader.to_batches())
    return write_arrow(connections, sink.connection, sink.table or "", reader, mode=sink.mode, keys=sink.keys)


def _bind(query: str, variables: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``:name`` -> ``$name``; only the variables the query uses are passed."""
    text = to_dollar_params(query)
    used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text))
    missing = used - set(variables)
    if missing:
        raise DefinitionError(f"expression uses :{sorted(missing)[0]}, which is not a variable of the package or run")
    return text, {k: variables[k] for k in used}


def _one_select(text: str) -> None:
    import duckdb

    try:
        statements = duckdb.extract_statements(text)
    except Exception as exc:
        raise RunError(f"the dataflow does not compile: {_first_line(exc)}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise RunError("an expression of the dataflow would run another statement: refused")


@dataclass
class _Profile:
    per_source: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def _profiling(con: Any) -> Iterator[_Profile]:
    """DuckDB's profiler on for the block; the scans it saw are in the yielded object afterwards."""
    fd, path = tempfile.mkstemp(suffix=".json", prefix="flowstage-profile-")
    os.close(fd)
    found = _Profile()
    try:
        con.execute("PRAGMA enable_profiling = 'json'")
        con.execute(f"PRAGMA profiling_output = {literal(path)}")
        try:
            yield found
        except BaseException:
            # a failed write may leave a result open on the connection: the first error is the one to tell
            with contextlib.suppress(Exception):
                con.execute("PRAGMA disable_profiling")
            raise
        con.execute("PRAGMA disable_profiling")
        found.per_source, found.extra = _read_profile(path)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def _run_profiled(con: Any, sql: str, bound: dict[str, Any]) -> tuple[list[Any], dict[str, int], dict[str, Any]]:
    """Run `sql` with DuckDB's profiler on; returns (rows, rows read per file/table, io metrics)."""
    with _profiling(con) as profile:
        rows = (con.execute(sql, bound) if bound else con.execute(sql)).fetchall()
    return rows, profile.per_source, profile.extra


def _read_profile(path: str) -> tuple[dict[str, int], dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}, {}
    scans: dict[str, int] = {}

    def walk(node: Mapping[str, Any]) -> None:
        if node.get("type") == "TABLE_SCAN":
            info = node.get("extra_info") or {}
            where = info.get("Filename(s)") or info.get("Table") or info.get("Function") or "scan"
            if isinstance(where, list):
                where = ", ".join(map(str, where))
            count = node.get("rows_scanned") or node.get("operator_cardinality") or node.get("intermediate_rows") or 0
            scans[str(where)] = scans.get(str(where), 0) + int(count)
        for child in node.get("children", []) or []:
            walk(child)

    for op in data.get("operator", []) or []:
        walk(op)
    io = data.get("io") or {}
    extra = {"bytes_read": int(io.get("total_bytes_read", 0))} if io else {}
    return scans, extra


def _per_source(scans: Mapping[str, int], where: Mapping[str, str]) -> dict[str, int]:
    """Rows read per source name, from the profiler's scans (files by glob, views and tables by name)."""
    import fnmatch

    out: dict[str, int] = {}
    for scanned, count in scans.items():
        files = [w.strip() for w in scanned.split(",")]
        owner = next(
            (
                name
                for name, what in where.items()
                if any(fnmatch.fnmatch(f, what) or f == what for f in files) or (not what.startswith("/") and what in scanned)
            ),
            scanned,
        )
        out[owner] = out.get(owner, 0) + count
    return out


def _read_duck(
    connections: Connections,
    name: str,
    table: str | None,
    query: str | None,
    variables: Mapping[str, Any],
    wait: LockWait | None = None,
) -> Any:
    """A table (or query) of another DuckDB database, through its own cursor, as an Arrow table."""
    cur = connections.duck_cursor(name, wait=wait)
    try:
        text, bound = _bind(query, variables) if query is not None else (f"SELECT * FROM {qualified(table or '')}", {})
        rel = cur.sql(text, params=bound) if bound else cur.sql(text)
        fetch = getattr(rel, "to_arrow_table", None) or rel.arrow  # DuckDB 2, else 1.x
        return fetch()
    finally:
        cur.close()


def _duck_table_exists(con: Any, target: str) -> bool:
    try:
        con.execute(f"SELECT * FROM {target} LIMIT 0")
        return True
    except Exception:
        return False


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
