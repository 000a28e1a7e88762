"""The example project's mixed workflow: a Spark dataflow, a PySpark script, python, SQL and shell tasks
in one run, on a Dask cluster (worker processes on 127.0.0.1) — and the Spark dataflow's rows are the
ones DuckDB computes from the same files."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CI, Project
from tests.records import record_of, tasks_of

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


@pytest.fixture
def cluster() -> Iterator[Any]:
    from flowstage.data.spark_session import missing

    reason = missing()
    try:
        from distributed import LocalCluster
    except ImportError:
        reason = reason or "distributed is not installed"
    if reason is not None:
        if CI:
            pytest.fail(f"{reason}, and CI=true: the mixed example must run")
        pytest.skip(reason)
    found = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
    )
    try:
        yield found
    finally:
        found.close()


@pytest.mark.timeout(300)
def test_the_mixed_example_runs_spark_beside_every_other_kind_on_dask(tmp_path: Path, cluster: Any) -> None:
    import duckdb

    root = tmp_path / "demo"
    shutil.copytree(DEMO, root, ignore=shutil.ignore_patterns(".flowstage", "out", "generated", "shop.db", "__pycache__"))
    project = Project(root)
    url = "dask://" + str(cluster.scheduler_address).removeprefix("tcp://")
    result = project.cli("run", "mixed_engines", "--json", "--executor", url, env=project.env(SPARK_LOCAL_IP="127.0.0.1"))
    assert result.code == 0, result.out[-3000:] + result.err[-3000:]
    record = record_of(result)
    tasks = tasks_of(record)
    assert {name: t["status"] for name, t in tasks.items()} == dict.fromkeys(
        ["generate_orders", "threshold", "revenue_on_spark", "statuses", "check_revenue", "announce"], "succeeded"
    )
    logs = project.cli("logs", record["id"]).out
    for task in ("generate_orders", "revenue_on_spark", "statuses", "check_revenue", "announce"):
        assert f"{task}#1: attempt runs on Dask worker tcp://127.0.0.1:" in logs, f"{task} did not run on a worker"
    assert "threshold#1: attempt runs on Dask worker" not in logs  # SQL stays on the runner

    con = duckdb.connect()
    expected = con.execute(
        f"""
        SELECT region, country, CAST(date_trunc('month', ordered_at) AS DATE) AS month, round(sum(amount), 2) AS revenue, count(*) AS orders
        FROM read_csv('{root}/data/generated/orders/**/*.csv', hive_partitioning = true, nullstr = ['', 'NA'])
        WHERE status = 'paid' AND amount >= 10
        GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    got = con.execute(
        f"SELECT region, country, CAST(month AS DATE), revenue, orders FROM read_parquet('{root}/out/revenue_spark.parquet') ORDER BY ALL"
    ).fetchall()
    con.close()
    assert [(r, c, m, float(v), n) for r, c, m, v, n in got] == [(r, c, m, float(v), n) for r, c, m, v, n in expected]
    paid = tasks["statuses"]["saved"]["statuses"]["paid"]
    assert tasks["check_revenue"]["saved"]["report"] == {"rows": len(expected), "orders": sum(r[4] for r in expected)}
    assert paid >= sum(r[4] for r in expected)
    assert f"spark revenue rows: {len(expected)}, paid orders: {paid}" in logs
