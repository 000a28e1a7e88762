"""Engine overhead, measured: flowstage beside a bare thread pool, in one run.

Prints, for no-op in-process tasks with every state change durably recorded in SQLite:
  * a 1 -> 500 -> 1 fan-out and a 100-task chain (ms per task),
  * a 10,000-task workflow: validate and run (wall seconds, peak memory of the process),
  * the whole-process time of `flowstage run` on a one-task workflow (cold start),
next to the same graphs on a bare ThreadPoolExecutor, with and without a SQLite commit per
state change (the raw baseline). A benchmark, not a test: run `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

NOOP = "def noop():\n    return None\n"


def write_project(root: Path) -> None:
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    (root / "tasks" / "bench.py").write_text(NOOP)
    (root / "flowstage.yaml").write_text("{}\n")


def noop_task(name: str, after: list[str] | None = None) -> dict:
    task: dict = {"name": name, "python": "tasks/bench.py:noop", "in_process": True}
    if after is not None:
        task["after"] = after
    return task


def fanout_workflow(width: int = 500) -> dict:
    tasks = [noop_task("start")]
    tasks += [noop_task(f"t{i}", ["start"]) for i in range(width)]
    tasks.append(noop_task("end", [f"t{i}" for i in range(width)]))
    return {"name": "fanout", "preferences": {"max_parallel": 8}, "tasks": tasks}


def chain_workflow(length: int = 100) -> dict:
    tasks = [noop_task("t0")] + [noop_task(f"t{i}", [f"t{i - 1}"]) for i in range(1, length)]
    return {"name": "chain", "tasks": tasks}


def staged_workflow(stages: int = 100, width: int = 100) -> dict:
    return {
        "name": "big",
        "preferences": {"max_parallel": 8},
        "stages": [{"name": f"s{s}", "tasks": [noop_task(f"s{s}_t{i}") for i in range(width)]} for s in range(stages)],
    }


def graph_of(wf: dict) -> dict[str, list[str]]:
    """name -> predecessors, stage defaults expanded."""
    preds: dict[str, list[str]] = {}
    if "tasks" in wf:
        for t in wf["tasks"]:
            preds[t["name"]] = list(t.get("after", []))
        return preds
    prev: list[str] = []
    for stage in wf["stages"]:
        names = [t["name"] for t in stage["tasks"]]
        for n in names:
            preds[n] = list(prev)
        prev = names
    return preds


def baseline(preds: dict[str, list[str]], db: Path | None, workers: int = 8) -> float:
    """The same graph on a bare thread pool; with `db`, a SQLite commit per state change."""
    conn = None
    if db is not None:
        conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS state (task TEXT PRIMARY KEY, status TEXT)")

    def record(name: str, status: str) -> None:
        if conn is not None:
            conn.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (name, status))

    def noop() -> None:
        return None

    t0 = time.perf_counter()
    waiting = {n: set(p) for n, p in preds.items()}
    succ: dict[str, list[str]] = {n: [] for n in preds}
    for n, ps in preds.items():
        for p in ps:
            succ[p].append(n)
    for n in preds:
        record(n, "pending")
    with ThreadPoolExecutor(workers) as pool:
        futures = {}
        for n, ps in waiting.items():
            if not ps:
                record(n, "running")
                futures[pool.submit(noop)] = n
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for f in done:
                n = futures.pop(f)
                record(n, "succeeded")
                for s in succ[n]:
                    waiting[s].discard(n)
                    if not waiting[s]:
                        record(s, "running")
                        futures[pool.submit(noop)] = s
    if conn is not None:
        conn.close()
    return time.perf_counter() - t0


def flowstage_run(root: Path, wf: dict) -> tuple[float, float]:
    """(load + validate seconds, run seconds) through the Python API, SQLite store."""
    from flowstage.app.runs import open_store, start_run
    from flowstage.model.loader import load
    from flowstage.settings import load_project

    path = root / "workflows" / f"{wf['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wf))
    project = load_project(root=root)
    store = open_store(project)
    t0 = time.perf_counter()
    workflow = load(path)
    t1 = time.perf_counter()
    run = start_run(project, workflow, store=store)
    t2 = time.perf_counter()
    assert run.status == "succeeded", run.status
    store.close()
    return t1 - t0, t2 - t1


def child_peak(cmd: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the median is shown")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        write_project(root)
        for label, wf in (("fanout_1_500_1", fanout_workflow()), ("chain_100", chain_workflow())):
            n = len(graph_of(wf))
            fs, bare, bare_db = [], [], []
            for i in range(args.repeat):
                fs.append(flowstage_run(root, wf)[1])
                bare.append(baseline(graph_of(wf), None))
                bare_db.append(baseline(graph_of(wf), Path(tmp) / f"base-{label}-{i}.db"))
            results[label] = {
                "tasks": n,
                "flowstage_ms_per_task": round(statistics.median(fs) / n * 1000, 3),
                "threadpool_ms_per_task": round(statistics.median(bare) / n * 1000, 3),
                "threadpool_sqlite_ms_per_task": round(statistics.median(bare_db) / n * 1000, 3),
            }
        # 10,000 tasks: validate and run in a fresh process, peak memory of that process
        big = staged_workflow()
        big_path = root / "workflows" / "big.yaml"
        big_path.parent.mkdir(parents=True, exist_ok=True)
        import yaml

        big_path.write_text(yaml.safe_dump(big, sort_keys=False))
        exe = [sys.executable, "-m", "flowstage"]
        v_wall, v_mem, v_code = child_peak([*exe, "validate", str(big_path)], root)
        r_wall, r_mem, r_code = child_peak([*exe, "run", str(big_path), "-q"], root)
        b_wall = baseline(graph_of(big), Path(tmp) / "base-big.db")
        results["tasks_10000"] = {
            "validate_seconds": round(v_wall, 3),
            "validate_peak_mb": round(v_mem, 1),
            "run_seconds": round(r_wall, 3),
            "run_peak_mb": round(r_mem, 1),
            "exit_codes": [v_code, r_code],
            "threadpool_sqlite_seconds": round(b_wall, 3),
        }
        # cold start: the whole `flowstage run` process on a one-task workflow
        one = {"name": "one", "tasks": [noop_task("only")]}
        (root / "workflows" / "one.yaml").write_text(yaml.safe_dump(one))
        child_peak([*exe, "run", "one", "-q"], root)  # migrate the store first
        walls = [child_peak([*exe, "run", "one", "-q"], root)[0] for _ in range(max(5, args.repeat))]
        python_walls = [child_peak([sys.executable, "-c", "pass"], root)[0] for _ in range(5)]
        results["cold_run_one_task"] = {
            "flowstage_run_seconds": round(statistics.median(walls), 3),
            "bare_python_seconds": round(statistics.median(python_walls), 3),
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'measure':<34}{'flowstage':>14}{'thread pool':>14}{'pool+sqlite':>14}")
    for label in ("fanout_1_500_1", "chain_100"):
        r = results[label]
        print(
            f"{label + ' (ms/task)':<34}{r['flowstage_ms_per_task']:>14.3f}"
            f"{r['threadpool_ms_per_task']:>14.3f}{r['threadpool_sqlite_ms_per_task']:>14.3f}"
        )
    r = results["tasks_10000"]
    print(f"{'10,000 tasks: validate (s)':<34}{r['validate_seconds']:>14.3f}")
    print(f"{'10,000 tasks: run (s)':<34}{r['run_seconds']:>14.3f}{'':>14}{r['threadpool_sqlite_seconds']:>14.3f}")
    print(f"{'10,000 tasks: peak memory (MB)':<34}{r['run_peak_mb']:>14.1f}")
    r = results["cold_run_one_task"]
    print(
        f"{'flowstage run, one task (s)':<34}{r['flowstage_run_seconds']:>14.3f}   (python -c pass: {r['bare_python_seconds']:.3f})"
    )


if __name__ == "__main__":
    main()
