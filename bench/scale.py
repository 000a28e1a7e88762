"""Scale-out: the Dask executor on 1 vs 2 workers, its cost per task, and Spark vs DuckDB.

1. Speed-up: 8 CPU-bound python tasks of about 1 s each, on a Dask cluster of 1 worker and of 2
   workers (one process and one thread each, on 127.0.0.1), runs alternating between the two;
   the median of each and their ratio (target >= 1.7x on 2 cores).
2. Cost per task: 500 `shell: "true"` tasks through the Dask executor (2 workers) beside the same
   workflow on the local executor and beside bare Dask running the same command with
   `subprocess.run` (`client.map`), in the same run.
3. Spark: a 5 M-row orders dataflow (filter -> aggregate -> Parquet) on Spark local[2] and on
   DuckDB (`bench/spark_dataflow.py`), unless `--no-spark`.

A benchmark, not a test: `make bench` runs it; its figures are in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CPU_TASK = """
import time


def burn(seconds):
    # CPU-bound work for about `seconds` (calibrated below), no sleeping
    n, end = 0, time.process_time() + seconds
    while time.process_time() < end:
        for i in range(10_000):
            n += i * i
    return n % 7
"""


def _cluster(workers: int, *, profiler: bool = True) -> Any:
    import dask
    from distributed import LocalCluster

    # Dask workers sample their threads every 10 ms by default (their statistical profiler):
    # on 2 cores that CPU is taken from the tasks, so the speed-up is measured with it on and off
    with dask.config.set({"distributed.worker.profile.enabled": profiler}):
        return _local_cluster(LocalCluster, workers)


def _local_cluster(cluster_class: Any, workers: int) -> Any:
    return cluster_class(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
        silence_logs=40,
    )


def _url(cluster: Any) -> str:
    return "dask://" + str(cluster.scheduler_address).removeprefix("tcp://")


def _run(root: Path, workflow: str, executor: str) -> float:
    """The run's own duration (seconds), as the store recorded it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSTAGE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "flowstage", "run", workflow, "--json", "--executor", executor],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"run {workflow} on {executor} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return float(json.loads(proc.stdout)["duration_seconds"])


def speed_up(root: Path, repeat: int, *, profiler: bool = True) -> dict[str, float]:
    (root / "tasks").mkdir(exist_ok=True)
    (root / "tasks" / "cpu.py").write_text(CPU_TASK)
    tasks = "\n".join(f"  - {{name: t{i}, python: tasks/cpu.py:burn, with: {{seconds: 1.0}}}}" for i in range(8))
    (root / "workflows" / "cpu.yaml").write_text(f"name: cpu\npreferences: {{max_parallel: 8}}\ntasks:\n{tasks}\n")
    one, two = _cluster(1, profiler=profiler), _cluster(2, profiler=profiler)
    try:
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(repeat):
            for workers, cluster in ((1, one), (2, two)):
                times[workers].append(_run(root, "cpu", _url(cluster)))
    finally:
        one.close()
        two.close()
    m1, m2 = statistics.median(times[1]), statistics.median(times[2])
    return {"one_worker_s": m1, "two_workers_s": m2, "speed_up": m1 / m2}


def per_task(root: Path, tasks: int, repeat: int) -> dict[str, float]:
    body = "\n".join(f"  - {{name: n{i}, shell: 'true'}}" for i in range(tasks))
    (root / "workflows" / "noop.yaml").write_text(f"name: noop\npreferences: {{max_parallel: 8}}\ntasks:\n{body}\n")
    cluster = _cluster(2)
    try:
        from distributed import Client

        client = Client(cluster.scheduler_address, set_as_default=False)
        bare, local, dask = [], [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            client.gather(client.map(subprocess.run, [["true"]] * tasks, pure=False))
            bare.append(time.perf_counter() - t0)
            local.append(_run(root, "noop", "local"))
            dask.append(_run(root, "noop", _url(cluster)))
        client.close()
    finally:
        cluster.close()
    b, lo, d = statistics.median(bare), statistics.median(local), statistics.median(dask)
    return {
        "tasks": tasks,
        "bare_dask_s": b,
        "local_s": lo,
        "dask_s": d,
        "added_vs_bare_dask_ms": (d - b) / tasks * 1000,
        "added_vs_local_ms": (d - lo) / tasks * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the Spark vs DuckDB dataflow")
    parser.add_argument("--no-spark", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "flowstage.yaml").write_text("{}\n")
        (root / "workflows").mkdir()
        for profiler in (True, False):
            s = speed_up(root, args.repeat, profiler=profiler)
            print(
                f"8 CPU-bound tasks of ~1 s, workers' profiler {'on' if profiler else 'off'}: 1 worker "
                f"{s['one_worker_s']:.2f}s, 2 workers {s['two_workers_s']:.2f}s -> speed-up {s['speed_up']:.2f}x "
                f"(target >= 1.7x; median of {args.repeat} alternating runs)"
            )
        if not args.tasks:
            return
        p = per_task(root, args.tasks, args.repeat)
        print(
            f"{p['tasks']} shell 'true' tasks: bare Dask {p['bare_dask_s']:.2f}s, flowstage local {p['local_s']:.2f}s, "
            f"flowstage on Dask (2 workers) {p['dask_s']:.2f}s -> added per task "
            f"{p['added_vs_bare_dask_ms']:.1f} ms over bare Dask, {p['added_vs_local_ms']:.1f} ms over the local executor"
        )
    if not args.no_spark:
        sys.path.insert(0, str(Path(__file__).parent))
        from spark_dataflow import spark_vs_duckdb

        r = spark_vs_duckdb(args.rows)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
