"""Dataflow speed: a generated 5 M-row orders CSV -> filter -> aggregate by two keys -> Parquet.

Runs the same work as a flowstage dataflow task (through `flowstage run`'s engine, with its
metrics recorded) and as the hand-written DuckDB query, in one run, and prints both times, the
ratio (target <= 1.15) and rows per second. A benchmark, not a test: `make bench`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

QUERY = (
    "COPY (SELECT country, status, sum(amount) AS revenue, count(*) AS orders "
    "FROM read_csv('{csv}'{options}) WHERE amount >= 10 AND status <> 'cancelled' GROUP BY country, status) "
    "TO '{out}' (FORMAT PARQUET)"
)
# flowstage reads CSV with these null markers (SPEC 3.1): the same query written by hand says so too
SAME_NULLS = ", nullstr = ['', 'NA', 'N/A', 'NULL', 'null']"


def generate(path: Path, rows: int) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(
        f"""COPY (
          SELECT range AS order_id,
                 (range * 7919) % 100000 AS customer_id,
                 ['FR','DE','US','JP','BR','IN','ES','IT'][(range % 8) + 1] AS country,
                 ['paid','paid','paid','refunded','cancelled'][(range % 5) + 1] AS status,
                 round(((range * 37) % 50000) / 100.0, 2) AS amount,
                 DATE '2026-01-01' + CAST(range % 300 AS INTEGER) AS ordered_at
          FROM range({rows})
        ) TO '{path}' (HEADER, DELIMITER ',')"""
    )
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import duckdb

    from flowstage.app.runs import open_store, start_run
    from flowstage.model.loader import load_text
    from flowstage.settings import load_project

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "flowstage.yaml").write_text("{}\n")
        csv = root / "orders.csv"
        t0 = time.perf_counter()
        generate(csv, args.rows)
        print(f"generated {args.rows:,} rows ({csv.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f}s")
        workflow = load_text(
            f"""
name: bench_dataflow
tasks:
  - name: revenue
    dataflow:
      name: revenue
      variables: {{min_amount: 10}}
      sources: {{orders: {{file: "{csv}"}}}}
      steps:
        - from: orders
        - filter: "amount >= :min_amount AND status <> 'cancelled'"
        - aggregate: {{by: [country, status], metrics: {{revenue: sum(amount), orders: count(*)}}}}
      sink: {{file: out/revenue.parquet}}
"""
        )
        project = load_project(root=root)
        store = open_store(project)
        flow, raw, plain = [], [], []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            run = start_run(project, workflow, store=store)
            flow.append(time.perf_counter() - t0)
            assert run.status == "succeeded", run.tasks[0].error
            con = duckdb.connect()
            t0 = time.perf_counter()
            con.execute(QUERY.format(csv=csv, out=root / f"raw-{i}.parquet", options=SAME_NULLS))
            raw.append(time.perf_counter() - t0)
            con.close()
            con = duckdb.connect()
            t0 = time.perf_counter()
            con.execute(QUERY.format(csv=csv, out=root / f"plain-{i}.parquet", options=""))
            plain.append(time.perf_counter() - t0)
            con.close()
        check = duckdb.connect()
        # parallel sums of doubles differ in the last bits from run to run: compare to the cent
        same = "SELECT country, status, round(revenue, 2), orders FROM '{}' ORDER BY ALL"
        a = check.execute(same.format(f"{root}/out/revenue.parquet")).fetchall()
        b = check.execute(same.format(f"{root}/raw-0.parquet")).fetchall()
        assert a == b, "the dataflow and the hand-written query disagree"
        f, r, p = statistics.median(flow), statistics.median(raw), statistics.median(plain)
        print(f"{'flowstage dataflow (whole run)':<44}{f:>8.3f} s  {args.rows / f / 1e6:>6.2f} M rows/s")
        print(f"{'the same query by hand (same null markers)':<44}{r:>8.3f} s  {args.rows / r / 1e6:>6.2f} M rows/s")
        print(f"{'plain read_csv by hand (empty = null only)':<44}{p:>8.3f} s  {args.rows / p / 1e6:>6.2f} M rows/s")
        print(f"{'ratio to the same query (target <= 1.15)':<44}{f / r:>8.3f}")
        print(f"{'ratio to plain read_csv':<44}{f / p:>8.3f}")
        store.close()


if __name__ == "__main__":
    main()
