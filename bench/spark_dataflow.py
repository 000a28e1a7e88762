"""Spark vs DuckDB on one dataflow: a generated orders CSV -> filter -> aggregate -> Parquet.

The same package runs through flowstage's DuckDB engine and its Spark engine on `local[2]`; the
Spark session's start (a JVM, once per runner process) is timed apart from the dataflow itself,
which runs twice (the second run has a warm JVM). Both outputs are checked to hold the same rows.
A benchmark, not a test: ``python bench/spark_dataflow.py --rows 5000000``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

PACKAGE = {
    "name": "revenue",
    "variables": {"min_amount": 10},
    "sources": {"orders": {"file": "orders.csv"}},
    "steps": [
        {"from": "orders"},
        {"filter": "amount >= :min_amount AND status <> 'cancelled'"},
        {"aggregate": {"by": ["country", "status"], "metrics": {"revenue": "sum(amount)", "orders": "count(*)"}}},
    ],
}


def generate(path: Path, rows: int) -> None:
    """An orders-like CSV: id, customer, country, status, amount (some amounts missing, as NA)."""
    import duckdb

    con = duckdb.connect()
    con.execute(
        f"""COPY (
          SELECT range AS id,
                 (range * 7919) % 100000 AS customer,
                 ['FR','DE','US','JP','BR','IN','ES','IT'][(range % 8) + 1] AS country,
                 ['paid','paid','paid','refunded','cancelled'][(range % 5) + 1] AS status,
                 CASE WHEN range % 97 = 0 THEN NULL ELSE round(((range * 37) % 50000) / 100.0, 2) END AS amount
          FROM range({rows})
        ) TO '{path}' (HEADER, DELIMITER ',', NULLSTR 'NA')"""
    )
    con.close()


def _run(engine: str, root: Path, settings: Any) -> tuple[float, Any]:
    from flowstage.connections import Connections
    from flowstage.data.engine import DataflowRequest, engine_for
    from flowstage.model.dataflow import package_from_data
    from flowstage.settings import load_project

    out = f"out/{engine}-{time.monotonic_ns()}.parquet"
    package = package_from_data({**PACKAGE, "engine": engine, "sink": {"file": out}}, "revenue.yaml")
    project = load_project(root=root)
    conns = Connections(project.connections, root=root)
    try:
        request = DataflowRequest(
            package=package, variables=dict(package.variables), root=root, connections=conns, spark=settings
        )
        t0 = time.perf_counter()
        result = engine_for(engine).run(request, lambda _callback: None)
        return time.perf_counter() - t0, (root / out, result)
    finally:
        conns.close()


def _rows(path: Path) -> list[tuple[Any, ...]]:
    import duckdb

    con = duckdb.connect()
    try:
        # parallel sums of doubles differ in the last bits between engines: compare to the cent
        return con.execute(f"SELECT country, status, round(revenue, 2), orders FROM '{path}' ORDER BY ALL").fetchall()
    finally:
        con.close()


def spark_vs_duckdb(rows: int = 5_000_000) -> dict[str, Any]:
    """Seconds of the same package on DuckDB and on Spark local[2] (session start apart), and the input size."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from flowstage.data.spark_session import shared_session
    from flowstage.settings import SparkSettings

    settings = SparkSettings(master="local[2]")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "flowstage.yaml").write_text("{}\n")
        csv = root / "orders.csv"
        t0 = time.perf_counter()
        generate(csv, rows)
        figures: dict[str, Any] = {
            "rows": rows,
            "csv_mb": round(csv.stat().st_size / 1e6, 1),
            "generate_seconds": round(time.perf_counter() - t0, 3),
        }
        duck_seconds, (duck_out, duck_result) = _run("duckdb", root, settings)
        t0 = time.perf_counter()
        session = shared_session(settings)
        figures["spark_session_seconds"] = round(time.perf_counter() - t0, 3)
        spark_seconds, (spark_out, spark_result) = _run("spark", root, settings)
        warm_seconds, _ = _run("spark", root, settings)
        assert _rows(duck_out) == _rows(spark_out), "the two engines disagree"
        assert duck_result.metrics["rows_read"] == spark_result.metrics["rows_read"] == rows
        figures.update(
            {
                "duckdb_seconds": round(duck_seconds, 3),
                "spark_seconds": round(spark_seconds, 3),
                "spark_warm_seconds": round(warm_seconds, 3),
                "spark_over_duckdb": round(warm_seconds / duck_seconds, 2),
            }
        )
        session.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    figures = spark_vs_duckdb(args.rows)
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
