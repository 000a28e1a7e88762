"""`engine: spark` gives the rows `engine: duckdb` gives, for every step kind and every sink mode.

Each package runs twice over the same inputs, once per engine, through the engines themselves
(one SparkSession for the module, `local[2]`); the outputs are read back with plain DuckDB and
compared row for row (in order where the package sorts). Inputs: the orders CSV of the DuckDB
step tests (every null marker, numbers with gaps), a CSV with quoted empty fields, Parquet with
a DECIMAL column, JSON, a glob of files with different columns and hive partition folders.
One test runs a workflow through `flowstage run` in a child process (its own Spark driver).
"""

from __future__ import annotations

import csv
import json
import os
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flowstage.connections import Connections
from flowstage.data.engine import DataflowRequest, DataflowResult, engine_for
from flowstage.errors import RunError
from flowstage.model.dataflow import package_from_data
from flowstage.model.yamlsource import parse
from flowstage.settings import SparkSettings, load_project
from tests.conftest import CI, Project
from tests.integration.test_dataflow_steps import (
    OTHER_PACKAGES,
    STEP_CASES,
    Case,
    Data,
    make_data,
    write_inputs,
)
from tests.records import record_of, wait_until

Row = dict[str, Any]
SETTINGS = SparkSettings(
    master="local[2]",
    conf={"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"},
)
ENGINES = ("duckdb", "spark")


# ---------------------------------------------------------------------------------------------- the session
def require_spark() -> None:
    """Skip without pyspark or Java, saying which; with CI=true that is a failure."""
    from flowstage.data.spark_session import missing

    reason = missing()
    if reason is not None:
        if CI:
            pytest.fail(f"Spark cannot run here, and CI=true: {reason}")
        pytest.skip(f"Spark cannot run here: {reason}")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The module's one SparkSession (the engine's shared session for SETTINGS), stopped at the end
    of the test process: a worker that runs other modules' tests between this module's keeps it
    (a module-scoped one would start a JVM again each time the worker comes back here)."""
    require_spark()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from flowstage.data import spark_session

    session = spark_session.shared_session(SETTINGS)
    yield session
    # forget the stopped session, or a later module of this process would be handed it
    with spark_session._lock:
        spark_session._sessions.clear()
    session.stop()


# ---------------------------------------------------------------------------------------------- running packages
@dataclass
class Place:
    """A project folder both engines read from; each engine writes under out/<engine>/."""

    root: Path
    connections: dict[str, str]

    def run(self, engine: str, package: dict[str, Any], variables: dict[str, Any] | None = None) -> DataflowResult:
        data = {**package, "engine": engine}
        pkg = package_from_data(json.loads(json.dumps(data)), "package.yaml")
        conns = Connections(self.connections, root=self.root)
        try:
            request = DataflowRequest(
                package=pkg, variables={**pkg.variables, **(variables or {})}, root=self.root, connections=conns, spark=SETTINGS
            )
            return engine_for(engine).run(request, lambda _callback: None)
        finally:
            conns.close()


def make_place(root: Path, **connections: str) -> Place:
    root.mkdir(parents=True, exist_ok=True)
    (root / "flowstage.yaml").write_text("{}\n")
    project = load_project(root=root)
    return Place(root, {**project.connections, **connections})


def query_rows(sql: str, params: list[Any] | None = None, database: str = ":memory:") -> tuple[list[str], list[Row]]:
    con = duckdb.connect(database, read_only=database != ":memory:")
    try:
        cur = con.execute(sql, params or [])
        columns = [d[0] for d in cur.description]
        return columns, [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def value(v: Any) -> Any:
    """Floats to 9 significant digits: parallel sums of doubles differ in the last bits between engines."""
    if isinstance(v, Decimal):
        return v
    if isinstance(v, float):
        return float(f"{v:.9g}")
    return v


def rows_of(rows: list[Row]) -> list[tuple[Any, ...]]:
    return [tuple(value(v) for v in r.values()) for r in rows]


def same_rows(a: tuple[list[str], list[Row]], b: tuple[list[str], list[Row]], ordered: bool) -> None:
    (cols_a, rows_a), (cols_b, rows_b) = a, b
    assert cols_a == cols_b
    assert rows_a, "an empty output proves nothing"
    if ordered:
        assert rows_of(rows_a) == rows_of(rows_b)
    else:
        assert Counter(rows_of(rows_a)) == Counter(rows_of(rows_b))


# ---------------------------------------------------------------------------------------------- inputs
QUOTED_CSV = 'id,name,score,day\n1,"",1.5,2024-01-01\n2,"x","",""\n3,NA,"2.5",2024-01-03\n4,"y",N/A,NULL\n5,null,,2024-01-05\n'


@dataclass
class Output:
    result: DataflowResult
    columns: list[str]
    rows: list[Row]
    path: Path


@dataclass
class Inputs:
    place: Place
    data: Data
    outputs: dict[tuple[str, str], Output] = field(default_factory=dict)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    place = make_place(tmp_path_factory.mktemp("spark") / "proj")
    data = make_data()
    write_inputs(Project(place.root), data)
    (place.root / "data" / "quoted.csv").write_text(QUOTED_CSV)
    import pyarrow as pa
    import pyarrow.parquet as pq

    prices = pa.table(
        {
            "order_id": [o["order_id"] for o in data.orders],
            "country": [o["country"] for o in data.orders],
            "price": pa.array(
                [None if o["amount"] is None else Decimal(str(o["amount"])).quantize(Decimal("0.01")) for o in data.orders],
                pa.decimal128(10, 2),
            ),
        }
    )
    pq.write_table(prices, place.root / "data" / "prices.parquet")
    return Inputs(place, data)


SOURCES = {
    "orders": {"file": "data/orders.csv"},
    "customers": {"file": "data/customers.csv"},
    "extra": {"file": "data/extra.csv"},
    "quoted": {"file": "data/quoted.csv"},
    "prices": {"file": "data/prices.parquet"},
}


def load_yaml(text: str) -> Any:
    """YAML as flowstage reads it (1.2: `on:` is a key, not true)."""
    return parse(textwrap.dedent(text).strip("\n"), "test.yaml").data


def steps_of(case: Case) -> list[Any]:
    return load_yaml(case.steps)


MORE_CASES = [
    Case("filter_with_a_variable", '- from: orders\n- filter: "amount >= :min_amount AND status = :status"'),
    Case("quoted_empty_fields_are_null", "- from: quoted"),
    Case(
        "parquet_decimal_average",
        "- from: prices\n- aggregate: {by: [country], metrics: {mean: avg(price), total: sum(price), n: count(*), priced: count(price)}}",
    ),
    Case(
        "average_of_doubles_and_integers",
        "- from: orders\n- aggregate: {by: [status], metrics: {mean: avg(amount), units: avg(quantity)}}",
    ),
    Case(
        "integer_and_double_division",
        '- from: orders\n- select: {id: order_id, half: "order_id / 2", whole: "order_id // 2", share: "amount / 3"}',
    ),
    Case("join_right_using", "- from: orders\n- join: {with: customers, using: [customer_id], how: right}"),
    Case("join_full_using_keeps_both_sides", "- from: orders\n- join: {with: customers, using: [customer_id], how: full}"),
    Case("join_semi_using", "- from: orders\n- join: {with: customers, using: [customer_id], how: semi}"),
    Case("join_anti_using", "- from: orders\n- join: {with: customers, using: [customer_id], how: anti}"),
    Case(
        "union_distinct_of_mismatched_columns",
        "- from: orders\n- select: [order_id, country]\n- union: {with: extra, all: false}",
    ),
    Case("sort_ascending_with_nulls", "- from: orders\n- sort: [amount, order_id]", ordered=True),
    Case("sort_descending_with_nulls", '- from: orders\n- sort: ["-quantity", "amount desc", order_id]', ordered=True),
    Case("sort_nulls_first_when_asked", '- from: orders\n- sort: ["amount nulls first", order_id]', ordered=True),
    Case("limit_after_sort_with_nulls", "- from: orders\n- sort: [quantity, order_id]\n- limit: 20", ordered=True),
    Case(
        "timestamps_computed_by_the_query_have_no_time_zone",
        '- from: orders\n- derive: {month: "date_trunc(\'month\', ordered_at)", at: "CAST(ordered_at AS TIMESTAMP)"}',
    ),
    Case(
        "derive_over_a_join",
        '- from: orders\n- join: {with: customers, on: "orders.customer_id = customers.customer_id"}\n- derive: {name: "upper(name)", big: "amount > 100"}',
    ),
]
CASES = [*STEP_CASES, *MORE_CASES]


def package_of(case: Case) -> dict[str, Any]:
    return {
        "name": case.id,
        "variables": {"min_amount": 40, "status": "paid"},
        "sources": SOURCES,
        "steps": steps_of(case),
        "sink": {"file": f"out/{{engine}}/{case.id}.parquet"},
    }


def with_engine(package: dict[str, Any], engine: str) -> dict[str, Any]:
    return json.loads(json.dumps(package).replace("{engine}", engine))


def output(inputs: Inputs, engine: str, case_id: str) -> Output:
    """The output of case `case_id` on `engine`, run once per module (tests of one case share it)."""
    key = (engine, case_id)
    if key not in inputs.outputs:
        case = next(c for c in CASES if c.id == case_id)
        result = inputs.place.run(engine, with_engine(package_of(case), engine))
        out = inputs.place.root / "out" / engine / f"{case.id}.parquet"
        columns, rows = query_rows("SELECT * FROM read_parquet(?)", [str(out)])
        inputs.outputs[key] = Output(result, columns, rows, out)
    return inputs.outputs[key]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_step_kind_gives_the_same_rows_on_spark_as_on_duckdb(spark: Any, inputs: Inputs, case: Case) -> None:
    outputs = {}
    for engine in ENGINES:
        found = output(inputs, engine, case.id)
        assert found.result.rows_written == len(found.rows)
        assert found.result.metrics["rows_written"] == found.result.rows_written
        assert found.result.metrics["bytes_written"] == found.path.stat().st_size > 0
        outputs[engine] = (found.columns, found.rows)
    if case.check is not None:  # the rows kept are any of several: each engine's pass the same check
        for engine in ENGINES:
            case.check(inputs.data, *outputs[engine])
        assert len(outputs["duckdb"][1]) == len(outputs["spark"][1])
        return
    same_rows(outputs["duckdb"], outputs["spark"], case.ordered)


def test_csv_null_markers_and_quoted_empty_fields_read_as_nulls_of_numeric_columns(spark: Any, inputs: Inputs) -> None:
    types = {}
    for engine in ENGINES:
        out = output(inputs, engine, "quoted_empty_fields_are_null").path
        _, described = query_rows("DESCRIBE SELECT * FROM read_parquet(?)", [str(out)])
        types[engine] = {r["column_name"]: r["column_type"] for r in described}
        _, rows = query_rows("SELECT * FROM read_parquet(?) ORDER BY id", [str(out)])
        assert [r["name"] for r in rows] == [None, "x", None, "y", None]
        assert [r["score"] for r in rows] == [1.5, None, 2.5, None, None]
        assert [r["day"] is None for r in rows] == [False, True, False, True, False]
    assert types["spark"] == types["duckdb"] == {"id": "BIGINT", "name": "VARCHAR", "score": "DOUBLE", "day": "DATE"}


def test_a_decimal_average_is_a_double_on_both_engines(spark: Any, inputs: Inputs) -> None:
    for engine in ENGINES:
        found = output(inputs, engine, "parquet_decimal_average")
        _, described = query_rows("DESCRIBE SELECT * FROM read_parquet(?)", [str(found.path)])
        assert {r["column_name"]: r["column_type"] for r in described}["mean"] == "DOUBLE"


OTHER_IDS = list(OTHER_PACKAGES)


def _other_package(name: str, engine: str) -> dict[str, Any]:
    body = load_yaml(OTHER_PACKAGES[name])
    sink = dict(body["sink"])
    sink["file"] = sink["file"].replace("out/", f"out/{engine}/")
    return {"name": name, **body, "sink": sink}


def _read_back(path: Path, fmt: str) -> tuple[list[str], list[Row]]:
    if path.is_dir():
        return query_rows(
            "SELECT * FROM read_parquet(?, hive_partitioning = true) ORDER BY ALL", [str(path / "**" / "*.parquet")]
        )
    reader = {"parquet": "read_parquet", "csv": "read_csv", "json": "read_json_auto"}[fmt]
    return query_rows(f"SELECT * FROM {reader}(?)", [str(path)])


@pytest.mark.parametrize("name", OTHER_IDS)
def test_every_reader_and_file_writer_gives_the_same_rows_on_spark(spark: Any, inputs: Inputs, name: str) -> None:
    outputs = {}
    for engine in ENGINES:
        package = _other_package(name, engine)
        inputs.place.run(engine, package)
        out = inputs.place.root / package["sink"]["file"]
        outputs[engine] = _read_back(out, package["sink"].get("format") or out.suffix.lstrip("."))
    same_rows(outputs["duckdb"], outputs["spark"], ordered=False)


def test_metrics_count_rows_read_by_source_written_and_bytes(spark: Any, inputs: Inputs) -> None:
    results = {}
    for engine in ENGINES:
        found = output(inputs, engine, "join_inner_on")
        results[engine] = result = found.result
        m = result.metrics
        assert m["rows_read_by_source"] == {"orders": 300, "customers": 40}, engine
        assert m["rows_read"] == 340
        assert m["rows_written"] == result.rows_written > 0
        assert m["bytes_written"] == found.path.stat().st_size
        assert m["seconds"] > 0
    assert results["spark"].rows_written == results["duckdb"].rows_written


# ---------------------------------------------------------------------------------------------- sinks
ORDERS = ["order_id", "country", "amount", "status"]


def feed(place: Place, rows: list[Row]) -> None:
    text = ",".join(ORDERS) + "\n" + "".join(",".join("NA" if r[c] is None else str(r[c]) for c in ORDERS) + "\n" for r in rows)
    (place.root / "data").mkdir(exist_ok=True)
    (place.root / "data" / "feed.csv").write_text(text)


def orders(ids: range, salt: int) -> list[Row]:
    return [
        {
            "order_id": i,
            "country": ["DE", "FR", "US", "JP"][(i + salt) % 4],
            "amount": None if (i + salt) % 7 == 0 else round((i * 37 + salt) % 500 + 0.25, 2),
            "status": ["paid", "open"][(i + salt) % 2],
        }
        for i in ids
    ]


def sink_package(name: str, sink: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "sources": {"feed": {"file": "data/feed.csv"}},
        "steps": [{"from": "feed"}, {"filter": "status = :status"}],
        "variables": {"status": "paid"},
        "sink": sink,
    }


@dataclass
class Target:
    """Where one engine's output of a sink test goes, and how to read it back."""

    sink: dict[str, Any]
    read: Callable[[], tuple[list[str], list[Row]]]


def file_target(place: Place, engine: str, name: str, **sink: Any) -> Target:
    path = place.root / "out" / engine / name

    def read() -> tuple[list[str], list[Row]]:
        if path.is_dir():
            return query_rows(
                "SELECT order_id, country, amount, status FROM read_parquet(?, hive_partitioning = true)",
                [str(path / "**" / "*.parquet")],
            )
        return query_rows("SELECT order_id, country, amount, status FROM read_parquet(?)", [str(path)])

    return Target({"file": f"out/{engine}/{name}", **sink}, read)


def warehouse_target(place: Place, engine: str, name: str, **sink: Any) -> Target:
    table = f"{name}_{engine}"

    def read() -> tuple[list[str], list[Row]]:
        return query_rows(
            f"SELECT order_id, country, amount, status FROM {table}", database=str(place.root / ".flowstage" / "warehouse.duckdb")
        )

    return Target({"table": table, **sink}, read)


def run_feeds(place: Place, make: Callable[[str], Target], feeds: list[tuple[list[Row], dict[str, Any]]]) -> dict[str, Any]:
    """Run the sink package once per feed on each engine; what each engine's target holds at the end."""
    held = {}
    for engine in ENGINES:
        target = make(engine)
        for rows, variables in feeds:
            feed(place, rows)
            result = place.run(engine, sink_package(f"sink_{engine}", target.sink), variables)
            assert result.metrics["rows_written"] == result.rows_written
        held[engine] = target.read()
    return held


FIRST, SECOND = orders(range(1, 121), 0), orders(range(61, 181), 1)
MODES = {
    "file_overwrite": (lambda p, e: file_target(p, e, "overwrite.parquet"), [(FIRST, {}), (SECOND, {"status": "open"})]),
    "file_append_partitioned": (
        lambda p, e: file_target(p, e, "appended", format="parquet", partition_by=["country"], mode="append"),
        [(FIRST, {}), (SECOND, {})],
    ),
    "file_upsert": (
        lambda p, e: file_target(p, e, "upserted.parquet", mode="upsert", keys=["order_id"]),
        [(FIRST, {}), (SECOND, {}), (SECOND, {})],
    ),
    "file_upsert_partitioned": (
        lambda p, e: file_target(
            p, e, "upserted_parts", format="parquet", partition_by=["country"], mode="upsert", keys=["order_id"]
        ),
        [(FIRST, {}), (SECOND, {})],
    ),
    "warehouse_overwrite": (lambda p, e: warehouse_target(p, e, "w_over"), [(FIRST, {}), (SECOND, {"status": "open"})]),
    "warehouse_append": (lambda p, e: warehouse_target(p, e, "w_app", mode="append"), [(FIRST, {}), (SECOND, {})]),
    "warehouse_upsert": (
        lambda p, e: warehouse_target(p, e, "w_ups", mode="upsert", keys=["order_id"]),
        [(FIRST, {}), (SECOND, {}), (SECOND, {})],
    ),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_sink_mode_leaves_the_same_rows_on_spark_as_on_duckdb(spark: Any, tmp_path: Path, mode: str) -> None:
    make, feeds = MODES[mode]
    place = make_place(tmp_path / "proj")
    held = run_feeds(place, lambda engine: make(place, engine), feeds)
    same_rows(held["duckdb"], held["spark"], ordered=False)
    ids = Counter(r["order_id"] for r in held["spark"][1])
    if "upsert" in mode:
        assert max(ids.values()) == 1  # one row per key, however many times the feed ran
        assert set(ids) == {o["order_id"] for o in FIRST + SECOND if o["status"] == "paid"}
    if "append" in mode:
        assert sum(ids.values()) == sum(1 for o in FIRST + SECOND if o["status"] == "paid")


def test_a_failed_overwrite_keeps_the_last_good_file(spark: Any, tmp_path: Path) -> None:
    place = make_place(tmp_path / "proj")
    feed(place, FIRST)
    package = sink_package("keep", {"file": "out/keep.parquet"})
    place.run("spark", package)
    before = (place.root / "out" / "keep.parquet").read_bytes()
    bad = {**package, "steps": [{"from": "feed"}, {"filter": "CAST(country AS INT) > 0"}]}
    with pytest.raises(RunError, match="CAST_INVALID_INPUT"):
        place.run("spark", bad)
    assert (place.root / "out" / "keep.parquet").read_bytes() == before
    assert sorted(p.name for p in (place.root / "out").iterdir()) == ["keep.parquet"]


@pytest.mark.postgres
def test_a_postgres_table_sink_and_source_move_as_arrow_with_the_same_rows(
    spark: Any, tmp_path: Path, pg_schema_url: str
) -> None:
    import sqlalchemy as sa

    place = make_place(tmp_path / "proj", pg=pg_schema_url)
    for engine in ENGINES:
        for rows, variables, mode in ((FIRST, {}, "overwrite"), (SECOND, {}, "upsert"), (SECOND, {}, "upsert")):
            feed(place, rows)
            sink = {"table": f"pg_{engine}", "connection": "pg", "mode": mode, "keys": ["order_id"]}
            place.run(engine, sink_package(f"pg_{engine}", sink), variables)
    engine_ = sa.create_engine(pg_schema_url)
    try:
        with engine_.connect() as conn:
            held = {
                e: [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT order_id, country, amount, status FROM pg_{e}"))]
                for e in ENGINES
            }
    finally:
        engine_.dispose()
    assert held["duckdb"]
    same_rows((ORDERS, held["duckdb"]), (ORDERS, held["spark"]), ordered=False)
    # and back: the table as a source of both engines
    outputs = {}
    for engine in ENGINES:
        package = {
            "name": f"from_pg_{engine}",
            "sources": {"t": {"table": f"pg_{engine}", "connection": "pg"}},
            "steps": [{"from": "t"}, {"aggregate": {"by": ["country"], "metrics": {"n": "count(*)", "total": "sum(amount)"}}}],
            "sink": {"file": f"out/{engine}/from_pg.parquet"},
        }
        result = place.run(engine, package)
        assert result.metrics["rows_read_by_source"] == {"t": len(held[engine])}
        outputs[engine] = query_rows("SELECT * FROM read_parquet(?)", [str(place.root / "out" / engine / "from_pg.parquet")])
    same_rows(outputs["duckdb"], outputs["spark"], ordered=False)


# ---------------------------------------------------------------------------------------------- errors and cancel
def test_an_expression_that_would_run_another_statement_is_refused(spark: Any, inputs: Inputs) -> None:
    from flowstage.data.spark import one_query

    for text in (
        "WITH a AS (SELECT 1 AS x) INSERT INTO t SELECT * FROM a",
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE t",
        "SET spark.sql.ansi.enabled = false",
    ):
        with pytest.raises(RunError, match="would run another statement: refused"):
            one_query(spark, text)
    with pytest.raises(RunError, match="does not compile"):
        one_query(spark, "SELECT 1; DROP TABLE t")
    one_query(spark, "WITH a AS (SELECT 1 AS x) SELECT * FROM a WHERE x IN (SELECT 1)")
    package = {
        "name": "inject",
        "sources": {"orders": {"file": "data/orders.csv"}},
        "steps": [{"from": "orders"}, {"filter": "true)) INSERT INTO t SELECT * FROM orders --"}],
        "sink": {"file": "out/inject.parquet"},
    }
    with pytest.raises(RunError, match=r"refused|does not compile"):
        inputs.place.run("spark", package)


def test_a_missing_variable_is_named(spark: Any, inputs: Inputs) -> None:
    package = {
        "name": "novar",
        "sources": {"orders": {"file": "data/orders.csv"}},
        "steps": [{"from": "orders"}, {"filter": "amount > :nowhere"}],
    }
    with pytest.raises(Exception, match=r"uses :nowhere, which is not a variable"):
        inputs.place.run("spark", package)


def test_cancel_stops_the_running_spark_job(spark: Any, inputs: Inputs) -> None:
    package = package_from_data(
        {
            "name": "slow",
            "engine": "spark",
            "sources": {"orders": {"file": "data/orders.csv"}},
            "steps": [
                {"from": "orders"},
                # long enough that the cancel always lands while it runs (it is cancelled within seconds)
                {
                    "sql": "SELECT count(*) AS n FROM input a CROSS JOIN input b CROSS JOIN input c CROSS JOIN input d"
                    " CROSS JOIN input e CROSS JOIN input f"
                },
            ],
            "sink": {"file": "out/slow.parquet"},
        },
        "slow.yaml",
    )
    conns = Connections(inputs.place.connections, root=inputs.place.root)
    callbacks: list[Callable[[], None]] = []
    outcome: dict[str, BaseException | None] = {}

    def work() -> None:
        try:
            request = DataflowRequest(package=package, variables={}, root=inputs.place.root, connections=conns, spark=SETTINGS)
            engine_for("spark").run(request, callbacks.append)
            outcome["error"] = None
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    try:
        tracker = spark.sparkContext.statusTracker()
        wait_until(lambda: callbacks and tracker.getActiveJobsIds(), 60, "the dataflow's Spark job to start")
        callbacks[0]()
        thread.join(60)
        assert not thread.is_alive(), "the dataflow went on after its cancel"
    finally:
        thread.join(120)
        conns.close()
    assert isinstance(outcome["error"], RunError)
    assert str(outcome["error"]) == "dataflow slow: cancelled"
    assert not (inputs.place.root / "out" / "slow.parquet").exists()


# ---------------------------------------------------------------------------------------------- through the CLI
def test_flowstage_run_of_spark_dataflows_writes_their_rows_and_tells_a_bad_expression_in_one_line(tmp_path: Path) -> None:
    """Spark dataflow tasks at once (threads of the runner, one Spark driver) beside a shell task, one
    reading a table the crawler put in the catalog (hive partition folders), one failing on a typo."""
    require_spark()
    root = tmp_path / "proj"
    project = Project(root)
    project.write("flowstage.yaml", 'spark: {master: "local[2]", conf: {spark.sql.shuffle.partitions: 2}}\n')
    data = make_data()
    _, sold, _ = write_inputs(project, data)
    project.write(
        "packages/revenue.yaml",
        """
        name: revenue
        engine: spark
        variables: {min_amount: 20}
        sources: {orders: {file: data/orders.csv}}
        steps:
          - from: orders
          - filter: "status = 'paid' AND amount >= :min_amount"
          - aggregate: {by: [country], metrics: {revenue: sum(amount), orders: count(*)}}
          - sort: [country]
        sink: {file: out/revenue.csv}
        """,
    )
    project.write(
        "workflows/daily.yaml",
        """
        name: daily
        stages:
          - name: crawl
            tasks:
              - name: crawl_sales
                crawl: {path: "data/sales/**/*.csv", table: raw.sales}
          - name: report
            tasks:
              - name: revenue
                dataflow: packages/revenue.yaml
              - name: by_region
                dataflow:
                  name: by_region
                  engine: spark
                  sources: {sales: {catalog: raw.sales}}
                  steps:
                    - from: sales
                    - aggregate: {by: [region], metrics: {units: sum(units), n: count(*)}}
                  sink: {file: out/by_region.parquet}
              - name: hello
                shell: echo hello
              - name: typo
                dataflow:
                  name: typo
                  engine: spark
                  sources: {orders: {file: data/orders.csv}}
                  steps:
                    - from: orders
                    - filter: "amout > 10"
                  sink: {file: out/typo.parquet}
          - name: after
            tasks:
              - name: caught
                after: {typo: failure}
                shell: echo caught
        """,
    )
    result = project.cli("run", "daily", "--json", timeout=240, env=project.env(SPARK_LOCAL_IP="127.0.0.1"))
    record = record_of(result)
    assert result.code == 0, (record["tasks"], result.err[-2000:])
    tasks = {t["name"]: t for t in record["tasks"]}
    assert {n: t["status"] for n, t in tasks.items() if n != "typo"} == dict.fromkeys(
        ["crawl_sales", "revenue", "by_region", "hello", "caught"], "succeeded"
    )
    # a bad expression: the task's error is one clear line naming the column, the run goes on
    assert tasks["typo"]["status"] == "failed"
    error = tasks["typo"]["error"]
    assert error.startswith("dataflow typo: [UNRESOLVED_COLUMN"), error
    assert "`amout`" in error
    assert "\n" not in error
    assert " pos " not in error  # no place in the compiled query, which the user never wrote
    assert not (root / "out" / "typo.parquet").exists()
    paid = [o for o in data.orders if o["status"] == "paid" and o["amount"] is not None and o["amount"] >= 20]
    want: dict[str, tuple[float, int]] = {}
    for o in paid:
        revenue, n = want.get(o["country"], (0.0, 0))
        want[o["country"]] = (revenue + o["amount"], n + 1)
    with (root / "out" / "revenue.csv").open(newline="", encoding="utf-8") as fh:
        got = [(r["country"], round(float(r["revenue"]), 6), int(r["orders"])) for r in csv.DictReader(fh)]
    assert got == [(c, round(want[c][0], 6), want[c][1]) for c in sorted(want)]
    metrics = tasks["revenue"]["metrics"]
    assert metrics["rows_read"] == 300
    assert metrics["rows_written"] == len(want)
    sales = {r: [s for s in sold if s["region"] == r] for r in {s["region"] for s in sold}}
    _, rows = query_rows("SELECT region, units, n FROM read_parquet(?)", [str(root / "out" / "by_region.parquet")])
    assert sorted((r["region"], r["units"], r["n"]) for r in rows) == sorted(
        (region, sum(s["units"] for s in group), len(group)) for region, group in sales.items()
    )
    assert "Traceback" not in result.err
