"""Dataflow packages on DuckDB: every step kind, every file format, file sinks, variables, metrics.

Input files are generated here (a few hundred rows, a fixed seed); every output is checked
against the same computation done in plain Python over the generated rows. Most cases share one
run of one workflow (one task per case), so the whole module costs a handful of CLI runs.
"""

from __future__ import annotations

import csv
import json
import random
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import Project
from tests.records import record_of

Row = dict[str, Any]

COUNTRIES = ["DE", "FR", "US", "JP"]
STATUSES = ["paid", "open", "refunded"]
NULL_MARKERS = ["", "NA", "N/A", "NULL", "null"]
ORDER_COLUMNS = ["order_id", "customer_id", "country", "amount", "quantity", "status", "ordered_at"]
CUSTOMER_COLUMNS = ["customer_id", "name", "country", "segment"]
EXTRA_COLUMNS = ["order_id", "country", "amount", "channel"]


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Data:
    orders: list[Row]
    customers: list[Row]
    extra: list[Row]  # another order feed, with a `channel` column and exact duplicate rows


def make_data(seed: int = 7) -> Data:
    rng = random.Random(seed)
    orders = []
    for i in range(1, 301):
        orders.append(
            {
                "order_id": i,
                # customers 1..40 exist: 31..40 have no order, orders of 41..45 have no customer
                "customer_id": rng.choice([*range(1, 31), *range(41, 46)]),
                "country": rng.choice(COUNTRIES),
                "amount": None if i % 9 == 0 else round(rng.uniform(1, 200), 2),
                "quantity": None if i % 11 == 0 else rng.randint(1, 9),
                "status": rng.choice(STATUSES),
                "ordered_at": date(2024, 1, 1) + timedelta(days=rng.randrange(120)),
            }
        )
    customers = [
        {"customer_id": c, "name": f"c{c:02d}", "country": rng.choice(COUNTRIES), "segment": rng.choice(["smb", "ent"])}
        for c in range(1, 41)
    ]
    distinct = [
        {
            "order_id": 1000 + k,
            "country": rng.choice(COUNTRIES),
            "amount": round(rng.uniform(1, 50), 2),
            "channel": rng.choice(["web", "shop"]),
        }
        for k in range(25)
    ]
    extra = distinct + [dict(r) for r in rng.sample(distinct, 15)]
    rng.shuffle(extra)
    return Data(orders, customers, extra)


def csv_text(rows: list[Row], columns: list[str], nulls: Iterator[str] | None = None) -> str:
    """CSV of `rows`; a None becomes the next marker of `nulls` (every null spelling in turn)."""
    markers = nulls or iter(lambda: "", None)
    lines = [",".join(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r[c]
            cells.append(next(markers) if v is None else v.isoformat() if isinstance(v, date) else str(v))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def cycle(values: list[str]) -> Iterator[str]:
    while True:
        yield from values


# ---------------------------------------------------------------------------------------------- reading outputs
def norm(value: Any) -> Any:
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, datetime) and value.time() == datetime.min.time():
        return value.date()
    return value


def normalized(rows: list[Row]) -> list[tuple[tuple[str, Any], ...]]:
    return [tuple((k, norm(v)) for k, v in r.items()) for r in rows]


def query_rows(sql: str, params: list[Any] | None = None) -> tuple[list[str], list[Row]]:
    con = duckdb.connect()
    try:
        cur = con.execute(sql, params or [])
        columns = [d[0] for d in cur.description]
        return columns, [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def read_parquet(path: Path) -> tuple[list[str], list[Row]]:
    return query_rows("SELECT * FROM read_parquet(?)", [str(path)])


def parquet_types(path: Path) -> dict[str, str]:
    _, rows = query_rows("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)])
    return {r["column_name"]: r["column_type"] for r in rows}


def task_of(record: dict[str, Any], name: str) -> dict[str, Any]:
    task = next(t for t in record["tasks"] if t["name"] == name)
    assert task["status"] == "succeeded", f"{name}: {task['status']}: {task['error']}"
    return task


# ---------------------------------------------------------------------------------------------- expectations
def pick(row: Row, columns: list[str]) -> Row:
    return {c: row[c] for c in columns}


def joined(data: Data, how: str) -> list[Row]:
    """orders JOIN customers ON customer_id, the right side's clashing names prefixed `customers_`."""
    right_cols = {"customer_id": "customers_customer_id", "name": "name", "country": "customers_country", "segment": "segment"}
    empty_right = dict.fromkeys(right_cols.values())
    empty_left = dict.fromkeys(ORDER_COLUMNS)
    out = []
    matched_customers = set()
    for o in data.orders:
        hits = [c for c in data.customers if c["customer_id"] == o["customer_id"]]
        for c in hits:
            matched_customers.add(c["customer_id"])
            out.append({**o, **{right_cols[k]: v for k, v in c.items()}})
        if not hits and how in ("left", "full"):
            out.append({**o, **empty_right})
    if how in ("right", "full"):
        for c in data.customers:
            if c["customer_id"] not in matched_customers:
                out.append({**empty_left, **{right_cols[k]: v for k, v in c.items()}})
    return out


def joined_using(data: Data, how: str) -> list[Row]:
    """orders JOIN customers USING (customer_id), then order_id, customer_id, name, segment."""
    by_id = {c["customer_id"]: c for c in data.customers}
    out = []
    for o in data.orders:
        c = by_id.get(o["customer_id"])
        if c is not None or how in ("left", "full"):
            out.append(
                {
                    "order_id": o["order_id"],
                    "customer_id": o["customer_id"],
                    "name": c and c["name"],
                    "segment": c and c["segment"],
                }
            )
    if how == "full":
        ordered = {o["customer_id"] for o in data.orders}
        for c in data.customers:
            if c["customer_id"] not in ordered:
                out.append({"order_id": None, "customer_id": c["customer_id"], "name": c["name"], "segment": c["segment"]})
    return out


def group(rows: list[Row], keys: list[str], metrics: Callable[[list[Row]], Row]) -> list[Row]:
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    return [{**dict(zip(keys, k, strict=True)), **metrics(g)} for k, g in groups.items()]


def amounts(rows: list[Row]) -> list[float]:
    return [r["amount"] for r in rows if r["amount"] is not None]


def distinct(rows: list[Row]) -> list[Row]:
    seen: dict[tuple[Any, ...], Row] = {}
    for r in rows:
        seen.setdefault(tuple(r.items()), r)
    return list(seen.values())


def check_dedupe_by_country(data: Data, columns: list[str], rows: list[Row]) -> None:
    assert columns == EXTRA_COLUMNS
    assert sorted(r["country"] for r in rows) == sorted({r["country"] for r in data.extra})
    for r in rows:  # whichever row is kept, it is a whole row of the input
        assert r in data.extra


def check_limit(data: Data, columns: list[str], rows: list[Row]) -> None:
    assert columns == ORDER_COLUMNS
    assert len(rows) == 7
    assert len({r["order_id"] for r in rows}) == 7
    for r in rows:
        assert r in data.orders


def chain_expected(data: Data) -> list[Row]:
    segment = {c["customer_id"]: c["segment"] for c in data.customers}
    paid = [
        {**o, "segment": segment.get(o["customer_id"]), "month": o["ordered_at"].replace(day=1)}
        for o in data.orders
        if o["status"] == "paid" and o["amount"] is not None and o["amount"] >= 20
    ]
    rows = group(paid, ["segment", "month"], lambda g: {"revenue": sum(amounts(g)), "orders": len(g)})
    rows = [r for r in rows if r["revenue"] > 0]
    return sorted(rows, key=lambda r: (r["segment"] is None, r["segment"] or "", r["month"]))


@dataclass(frozen=True)
class Case:
    id: str
    steps: str  # the YAML list of steps, after `steps:`
    expect: Callable[[Data], list[Row]] | None = None
    columns: list[str] | None = None  # the output columns, in order (None: the keys of the expected rows)
    ordered: bool = False
    check: Callable[[Data, list[str], list[Row]], None] | None = None


STEP_CASES = [
    Case("from", "- from: orders", lambda d: d.orders, ORDER_COLUMNS),
    Case(
        "filter",
        """
        - from: orders
        - filter: "status = 'paid' AND amount >= 50"
        """,
        lambda d: [o for o in d.orders if o["status"] == "paid" and o["amount"] is not None and o["amount"] >= 50],
        ORDER_COLUMNS,
    ),
    Case(
        "filter_nulls_and_or",
        """
        - from: orders
        - filter: "amount IS NULL OR (country = 'JP' AND quantity > 5)"
        """,
        lambda d: [
            o
            for o in d.orders
            if o["amount"] is None or (o["country"] == "JP" and o["quantity"] is not None and o["quantity"] > 5)
        ],
        ORDER_COLUMNS,
    ),
    Case(
        "select_list",
        """
        - from: orders
        - select: [status, order_id]
        """,
        lambda d: [pick(o, ["status", "order_id"]) for o in d.orders],
        ["status", "order_id"],
    ),
    Case(
        "select_mapping",
        """
        - from: orders
        - select: {id: order_id, gross: "amount * 1.5", where: "lower(country)"}
        """,
        lambda d: [
            {"id": o["order_id"], "gross": None if o["amount"] is None else o["amount"] * 1.5, "where": o["country"].lower()}
            for o in d.orders
        ],
        ["id", "gross", "where"],
    ),
    Case(
        "derive_adds_and_replaces",
        """
        - from: orders
        - derive: {status: "upper(status)", total: "amount * quantity"}
        """,
        lambda d: [
            {
                **o,
                "status": o["status"].upper(),
                "total": None if o["amount"] is None or o["quantity"] is None else o["amount"] * o["quantity"],
            }
            for o in d.orders
        ],
        [*ORDER_COLUMNS, "total"],
    ),
    *[
        Case(
            f"join_{how}_on",
            f"""
            - from: orders
            - join: {{with: customers, on: "orders.customer_id = customers.customer_id", how: {how}}}
            """,
            lambda d, how=how: joined(d, how),
            [*ORDER_COLUMNS, "customers_customer_id", "name", "customers_country", "segment"],
        )
        for how in ("inner", "left", "right", "full")
    ],
    Case(
        "join_semi",
        """
        - from: orders
        - join: {with: customers, on: "orders.customer_id = customers.customer_id", how: semi}
        """,
        lambda d: [o for o in d.orders if o["customer_id"] <= 40],
        ORDER_COLUMNS,
    ),
    Case(
        "join_anti",
        """
        - from: orders
        - join: {with: customers, on: "orders.customer_id = customers.customer_id", how: anti}
        """,
        lambda d: [o for o in d.orders if o["customer_id"] > 40],
        ORDER_COLUMNS,
    ),
    *[
        Case(
            f"join_{how}_using",
            f"""
            - from: orders
            - join: {{with: customers, using: [customer_id], how: {how}}}
            - select: [order_id, customer_id, name, segment]
            """,
            lambda d, how=how: joined_using(d, how),
            ["order_id", "customer_id", "name", "segment"],
        )
        for how in ("inner", "left", "full")
    ],
    Case(
        "aggregate_by_one_key",
        """
        - from: orders
        - aggregate:
            by: [country]
            metrics:
              revenue: sum(amount)
              orders: count(*)
              paid: "count(*) FILTER (WHERE status = 'paid')"
              first_day: min(ordered_at)
        """,
        lambda d: group(
            d.orders,
            ["country"],
            lambda g: {
                "revenue": sum(amounts(g)),
                "orders": len(g),
                "paid": sum(1 for r in g if r["status"] == "paid"),
                "first_day": min(r["ordered_at"] for r in g),
            },
        ),
        ["country", "revenue", "orders", "paid", "first_day"],
    ),
    Case(
        "aggregate_by_two_keys",
        """
        - from: orders
        - aggregate: {by: [country, status], metrics: {units: sum(quantity), n: count(*)}}
        """,
        lambda d: group(
            d.orders,
            ["country", "status"],
            lambda g: {"units": sum(r["quantity"] for r in g if r["quantity"] is not None), "n": len(g)},
        ),
        ["country", "status", "units", "n"],
    ),
    Case(
        "aggregate_without_keys",
        """
        - from: orders
        - aggregate: {metrics: {n: count(*), with_amount: count(amount), mean: avg(amount)}}
        """,
        lambda d: [{"n": 300, "with_amount": len(amounts(d.orders)), "mean": sum(amounts(d.orders)) / len(amounts(d.orders))}],
        ["n", "with_amount", "mean"],
    ),
    Case(
        "union_all_merges_columns_by_name",
        """
        - from: orders
        - select: [order_id, country, amount]
        - union: {with: extra}
        """,
        lambda d: [{**pick(o, ["order_id", "country", "amount"]), "channel": None} for o in d.orders] + d.extra,
        EXTRA_COLUMNS,
    ),
    Case(
        "union_distinct",
        """
        - from: extra
        - union: {with: extra, all: false}
        """,
        lambda d: distinct(d.extra),
        EXTRA_COLUMNS,
    ),
    Case(
        "union_with_list",
        """
        - from: extra
        - union: {with: [extra, extra]}
        """,
        lambda d: d.extra * 3,
        EXTRA_COLUMNS,
    ),
    Case("dedupe_whole_rows", "- from: extra\n- dedupe: true", lambda d: distinct(d.extra), EXTRA_COLUMNS),
    Case("dedupe_by_key", "- from: extra\n- dedupe: [country]", check=check_dedupe_by_country),
    Case(
        "sort",
        """
        - from: orders
        - sort: [country, "-amount", "order_id desc"]
        """,
        lambda d: sorted(d.orders, key=lambda o: (o["country"], o["amount"] is None, -(o["amount"] or 0), -o["order_id"])),
        ORDER_COLUMNS,
        ordered=True,
    ),
    Case(
        "sort_then_limit",
        """
        - from: orders
        - sort: ["-amount", order_id]
        - limit: 10
        """,
        lambda d: sorted(d.orders, key=lambda o: (o["amount"] is None, -(o["amount"] or 0), o["order_id"]))[:10],
        ORDER_COLUMNS,
        ordered=True,
    ),
    Case("limit", "- from: orders\n- limit: 7", check=check_limit),
    Case(
        "sql",
        """
        - from: orders
        - sql: SELECT country, count(*) AS n, max(amount) AS top FROM input WHERE status <> 'open' GROUP BY country
        """,
        lambda d: group(
            [o for o in d.orders if o["status"] != "open"],
            ["country"],
            lambda g: {"n": len(g), "top": max(amounts(g))},
        ),
        ["country", "n", "top"],
    ),
    Case(
        "chain_of_every_kind",
        """
        - from: orders
        - filter: "status = 'paid' AND amount >= 20"
        - join: {with: customers, on: "orders.customer_id = customers.customer_id", how: left}
        - derive: {month: "CAST(date_trunc('month', ordered_at) AS DATE)"}
        - aggregate: {by: [segment, month], metrics: {revenue: sum(amount), orders: count(*)}}
        - sql: SELECT * FROM input WHERE revenue > 0
        - select: [segment, month, revenue, orders]
        - sort: [segment, month]
        """,
        chain_expected,
        ["segment", "month", "revenue", "orders"],
        ordered=True,
    ),
]


# ---------------------------------------------------------------------------------------------- the shared run
@dataclass
class Flow:
    project: Project
    data: Data
    record: dict[str, Any]
    parts: list[Row]
    sales: list[Row]
    events: list[Row]

    def out(self, rel: str) -> Path:
        return self.project.root / "out" / rel


def indent(text: str, spaces: int) -> str:
    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * spaces)


def write_inputs(project: Project, data: Data) -> tuple[list[Row], list[Row], list[Row]]:
    project.write("data/orders.csv", csv_text(data.orders, ORDER_COLUMNS, cycle(NULL_MARKERS)))
    project.write("data/customers.csv", csv_text(data.customers, CUSTOMER_COLUMNS))
    project.write("data/extra.csv", csv_text(data.extra, EXTRA_COLUMNS))

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(data.orders), project.root / "data" / "orders.parquet")

    # three files, three column sets: merged by name
    parts = [
        {"id": 1, "x": "a", "y": None, "z": None},
        {"id": 2, "x": "b", "y": None, "z": None},
        {"id": 3, "x": "c", "y": 1.5, "z": None},
        {"id": 4, "x": None, "y": 2.5, "z": True},
        {"id": 5, "x": None, "y": None, "z": False},
    ]
    project.write("data/parts/part_1.csv", "id,x\n1,a\n2,b\n")
    project.write("data/parts/part_2.csv", "id,x,y\n3,c,1.5\n")
    project.write("data/parts/part_3.csv", "id,y,z\n4,2.5,true\n5,,false\n")

    # hive partitions: region=..., year=... folders
    sales = []
    for region, year, ids in (("EU", 2024, [1, 2, 3]), ("EU", 2025, [4]), ("US", 2024, [5, 6])):
        rows = [{"sale_id": i, "units": i * 10} for i in ids]
        project.write(f"data/sales/region={region}/year={year}/part.csv", csv_text(rows, ["sale_id", "units"]))
        sales += [{**r, "region": region, "year": year} for r in rows]

    # JSON: an array in one file, newline-delimited objects (with another key) in the other
    first = [{"event": "view", "n": 1}, {"event": "buy", "n": 2}]
    second = [{"event": "view", "n": 3, "source": "ad"}, {"event": "leave", "n": 4, "source": None}]
    project.write("data/events.json", json.dumps(first))
    project.write("data/events.ndjson", "".join(json.dumps(e) + "\n" for e in second))
    events = [{**e, "source": None} for e in first] + second
    return parts, sales, events


PACKAGE_SOURCES = """
  orders: {file: data/orders.csv}
  customers: {file: data/customers.csv}
  extra: {file: data/extra.csv}
"""

OTHER_PACKAGES = {
    "source_parquet": """
        sources: {orders: {file: data/orders.parquet}}
        steps:
          - from: orders
          - aggregate: {by: [status], metrics: {revenue: sum(amount), units: sum(quantity), n: count(*)}}
        sink: {file: out/source_parquet.parquet}
        """,
    "source_json": """
        sources: {a: {file: data/events.json}, b: {file: data/events.ndjson}}
        steps:
          - from: a
          - union: {with: b}
        sink: {file: out/source_json.parquet}
        """,
    "source_glob": """
        sources: {parts: {file: "data/parts/*.csv"}}
        steps:
          - from: parts
        sink: {file: out/source_glob.parquet}
        """,
    "source_hive": """
        sources: {sales: {file: "data/sales/**/*.csv"}}
        steps:
          - from: sales
        sink: {file: out/source_hive.parquet}
        """,
    "sink_csv": """
        sources: {orders: {file: data/orders.csv}}
        steps:
          - from: orders
          - filter: "country = 'FR'"
        sink: {file: out/sink_csv.csv}
        """,
    "sink_json": """
        sources: {orders: {file: data/orders.csv}}
        steps:
          - from: orders
          - select: [order_id, amount, status]
        sink: {file: out/sink_json.json}
        """,
    "sink_partitioned": """
        sources: {orders: {file: data/orders.csv}}
        steps:
          - from: orders
        sink: {file: out/by_country, format: parquet, partition_by: [country]}
        """,
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    root = tmp_path_factory.mktemp("steps") / "proj"
    root.mkdir()
    (root / "flowstage.yaml").write_text("{}\n")
    project = Project(root)
    data = make_data()
    parts, sales, events = write_inputs(project, data)
    tasks = []
    for case in STEP_CASES:
        project.write(
            f"packages/{case.id}.yaml",
            f"name: {case.id}\nsources:{PACKAGE_SOURCES}steps:\n{indent(case.steps, 2)}\nsink: {{file: out/{case.id}.parquet}}\n",
        )
        tasks.append(f"  - name: {case.id}\n    dataflow: packages/{case.id}.yaml\n")
    for name, body in OTHER_PACKAGES.items():
        project.write(f"packages/{name}.yaml", f"name: {name}\n{indent(body, 0)}\n")
        tasks.append(f"  - name: {name}\n    dataflow: packages/{name}.yaml\n")
    project.write("workflows/steps.yaml", "name: steps\ntasks:\n" + "".join(tasks))
    result = project.cli("run", "steps", "--json", timeout=180)
    record = record_of(result)
    return Flow(project, data, record, parts, sales, events)


# ---------------------------------------------------------------------------------------------- steps
@pytest.mark.parametrize("case", STEP_CASES, ids=[c.id for c in STEP_CASES])
def test_each_step_kind_gives_the_rows_python_computes(flow: Flow, case: Case) -> None:
    task_of(flow.record, case.id)
    columns, rows = read_parquet(flow.out(f"{case.id}.parquet"))
    if case.check is not None:
        case.check(flow.data, columns, rows)
        return
    assert case.expect is not None
    expected = case.expect(flow.data)
    want_columns = case.columns or (list(expected[0]) if expected else [])
    assert columns == want_columns
    expected = [pick(r, want_columns) for r in expected]
    assert expected, "a case whose expectation is empty proves nothing"
    if case.ordered:
        assert normalized(rows) == normalized(expected)
    else:
        assert Counter(normalized(rows)) == Counter(normalized(expected))


# ---------------------------------------------------------------------------------------------- sources
def test_csv_null_markers_are_nulls_and_numeric_columns_stay_numeric(flow: Flow) -> None:
    types = parquet_types(flow.out("from.parquet"))
    assert types["amount"] == "DOUBLE"
    assert types["quantity"] == "BIGINT"
    assert types["ordered_at"] == "DATE"
    _, rows = read_parquet(flow.out("from.parquet"))
    nulls = sum(1 for o in flow.data.orders if o["amount"] is None)
    assert nulls >= len(NULL_MARKERS)  # every marker spelling occurs in the file
    assert sum(1 for r in rows if r["amount"] is None) == nulls
    assert sum(1 for r in rows if r["quantity"] is None) == sum(1 for o in flow.data.orders if o["quantity"] is None)


def test_parquet_source_keeps_its_types_and_values(flow: Flow) -> None:
    task_of(flow.record, "source_parquet")
    _, rows = read_parquet(flow.out("source_parquet.parquet"))
    expected = group(
        flow.data.orders,
        ["status"],
        lambda g: {"revenue": sum(amounts(g)), "units": sum(r["quantity"] for r in g if r["quantity"] is not None), "n": len(g)},
    )
    assert Counter(normalized(rows)) == Counter(normalized(expected))


def test_json_array_and_ndjson_sources_read_every_object(flow: Flow) -> None:
    task_of(flow.record, "source_json")
    columns, rows = read_parquet(flow.out("source_json.parquet"))
    assert columns == ["event", "n", "source"]
    assert Counter(normalized(rows)) == Counter(normalized(flow.events))


def test_glob_over_files_with_different_columns_merges_them_by_name(flow: Flow) -> None:
    task_of(flow.record, "source_glob")
    columns, rows = read_parquet(flow.out("source_glob.parquet"))
    assert sorted(columns) == ["id", "x", "y", "z"]
    assert Counter(normalized(rows)) == Counter(normalized([pick(p, columns) for p in flow.parts]))


def test_hive_partition_folders_become_columns(flow: Flow) -> None:
    task_of(flow.record, "source_hive")
    columns, rows = read_parquet(flow.out("source_hive.parquet"))
    assert {"sale_id", "units", "region", "year"} == set(columns)
    got = Counter((r["sale_id"], r["units"], r["region"], str(r["year"])) for r in rows)
    assert got == Counter((s["sale_id"], s["units"], s["region"], str(s["year"])) for s in flow.sales)


# ---------------------------------------------------------------------------------------------- file sinks
def test_csv_sink_writes_a_header_and_the_rows(flow: Flow) -> None:
    task_of(flow.record, "sink_csv")
    with flow.out("sink_csv.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ORDER_COLUMNS
        got = sorted((int(r["order_id"]), r["amount"]) for r in reader)
    fr = [o for o in flow.data.orders if o["country"] == "FR"]
    assert [g[0] for g in got] == sorted(o["order_id"] for o in fr)
    by_id = {o["order_id"]: o["amount"] for o in fr}
    for order_id, amount in got:
        assert (None if amount == "" else float(amount)) == by_id[order_id]


def test_json_sink_writes_one_object_per_row(flow: Flow) -> None:
    task_of(flow.record, "sink_json")
    text = flow.out("sink_json.json").read_text(encoding="utf-8")
    objects = [json.loads(line) for line in text.splitlines() if line.strip()]
    expected = [pick(o, ["order_id", "amount", "status"]) for o in flow.data.orders]
    assert Counter(normalized(objects)) == Counter(normalized(expected))


def test_partitioned_sink_writes_one_folder_per_value(flow: Flow) -> None:
    task_of(flow.record, "sink_partitioned")
    folder = flow.out("by_country")
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"country={c}" for c in COUNTRIES)
    for country in COUNTRIES:
        _, rows = query_rows("SELECT order_id FROM read_parquet(?)", [str(folder / f"country={country}" / "*.parquet")])
        assert sorted(r["order_id"] for r in rows) == sorted(o["order_id"] for o in flow.data.orders if o["country"] == country)


# ---------------------------------------------------------------------------------------------- metrics
def test_show_json_reports_rows_read_per_source_rows_and_bytes_written(flow: Flow) -> None:
    shown = flow.project.cli("show", flow.record["id"], "--json")
    assert shown.code == 0, shown
    record = record_of(shown)

    metrics = task_of(record, "join_inner_on")["metrics"]
    assert metrics["rows_read_by_source"] == {"orders": 300, "customers": 40}
    assert metrics["rows_read"] == 340
    _, rows = read_parquet(flow.out("join_inner_on.parquet"))
    assert metrics["rows_written"] == len(rows) == len(joined(flow.data, "inner"))
    assert metrics["bytes_written"] == flow.out("join_inner_on.parquet").stat().st_size > 0
    assert metrics["seconds"] >= 0

    metrics = task_of(record, "source_json")["metrics"]
    assert metrics["rows_read_by_source"] == {"a": 2, "b": 2}
    assert metrics["rows_written"] == 4

    metrics = task_of(record, "sink_partitioned")["metrics"]
    assert metrics["rows_written"] == 300
    on_disk = sum(p.stat().st_size for p in flow.out("by_country").rglob("*") if p.is_file())
    assert metrics["bytes_written"] == on_disk > 0


# ---------------------------------------------------------------------------------------------- runs of their own
def test_task_variables_override_package_variables_which_override_run_variables(project: Project) -> None:
    data = make_data()
    project.write("data/orders.csv", csv_text(data.orders, ORDER_COLUMNS, cycle(NULL_MARKERS)))
    for name in ("package_wins", "task_wins"):  # the same package, one output file each
        project.write(
            f"packages/{name}.yaml",
            f"""
            name: {name}
            variables: {{min_amount: 100}}
            sources: {{orders: {{file: data/orders.csv}}}}
            steps:
              - from: orders
              - filter: "amount >= :min_amount AND status = :status"
              - select: [order_id]
            sink: {{file: out/{name}.csv}}
            """,
        )
    project.write(
        "workflows/vars.yaml",
        """
        name: vars
        variables: {min_amount: 5, status: open}
        tasks:
          - name: package_wins
            dataflow: packages/package_wins.yaml
          - name: task_wins
            dataflow: packages/task_wins.yaml
            variables: {min_amount: 150}
          - name: run_scope
            dataflow:
              name: run_scope
              sources: {orders: {file: data/orders.csv}}
              steps:
                - from: orders
                - filter: "amount >= :min_amount AND status = :status"
                - select: [order_id]
              sink: {file: out/run_scope.csv}
        """,
    )
    result = project.cli("run", "vars", "--var", "min_amount=20", "--var", "status=paid", "--json")
    record = record_of(result)
    for name in ("package_wins", "task_wins", "run_scope"):
        task_of(record, name)

    def ids(name: str) -> list[int]:
        with (project.root / "out" / f"{name}.csv").open(newline="", encoding="utf-8") as fh:
            return sorted(int(r["order_id"]) for r in csv.DictReader(fh))

    def expected(minimum: float) -> list[int]:
        return sorted(
            o["order_id"] for o in data.orders if o["status"] == "paid" and o["amount"] is not None and o["amount"] >= minimum
        )

    assert ids("package_wins") == expected(100)  # the package's 100 beats --var 20
    assert ids("task_wins") == expected(150)  # the task's 150 beats the package's 100
    assert ids("run_scope") == expected(20)  # --var 20 beats the workflow's 5; --var status beats `open`
    assert expected(150) != expected(100) != expected(20)


def test_partitioned_append_adds_files_and_overwrite_replaces_them(project: Project) -> None:
    data = make_data()
    project.write("data/orders.csv", csv_text(data.orders, ORDER_COLUMNS, cycle(NULL_MARKERS)))
    for mode in ("append", "overwrite"):
        project.write(
            f"workflows/{mode}.yaml",
            f"""
            name: {mode}
            tasks:
              - name: write
                dataflow:
                  name: write
                  sources: {{orders: {{file: data/orders.csv}}}}
                  steps:
                    - from: orders
                    - select: [order_id, status]
                  sink: {{file: out/by_status, format: parquet, partition_by: [status], mode: {mode}}}
            """,
        )

    def counts() -> Counter[str]:
        _, rows = query_rows(
            "SELECT status, count(*) AS n FROM read_parquet(?, hive_partitioning = true) GROUP BY status",
            [str(project.root / "out" / "by_status" / "**" / "*.parquet")],
        )
        return Counter({r["status"]: r["n"] for r in rows})

    once = Counter(o["status"] for o in data.orders)
    for runs in (1, 2):
        result = project.cli("run", "append", "--json")
        assert result.code == 0, result
        assert counts() == Counter({k: v * runs for k, v in once.items()})
    result = project.cli("run", "overwrite", "--json")
    assert result.code == 0, result
    assert counts() == once
