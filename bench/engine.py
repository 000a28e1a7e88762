"""Engine overhead, measured: flowstage beside a bare baseline doing the same work, in one run.

Workloads (`--only` picks some, comma-separated; all by default):
  * shell      502 `shell: "true"` tasks (1 -> 500 -> 1, max_parallel 8) beside a bare
               ThreadPoolExecutor(8) running `/bin/sh -c true` as often: ms added per task;
  * python     502 python no-op tasks in child processes (the default) beside a bare
               ProcessPoolExecutor(8) calling the same function, pool start included in both;
  * inprocess  in-process no-op tasks, a 1 -> 500 -> 1 fan-out and a 100-task chain, beside a
               bare thread pool without and with a commit per state change in the same store kind;
  * big        10,000 and 100,000-task workflows (stages of 100 tasks, and a flat fan-out), each
               validated and run by `flowstage run FILE -q` in a process of its own: wall seconds
               and the peak memory of that whole process;
  * cold       the whole `flowstage run` process on a one-task workflow (median of 7 or more)
               beside `python -c pass` and the import of pydantic and click alone; with valgrind
               on PATH, also the instructions each executes (callgrind: the same on a busy machine).
With `--store URL` (``postgresql+psycopg://user@host:port/db``) every workload records in a fresh
database made on that server for this run and dropped after it; the default is SQLite.
A benchmark, not a test: run `make bench`, or `python bench/engine.py --only inprocess`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WORKLOADS = ("shell", "python", "inprocess", "big", "cold")
NOOP = "def noop():\n    return None\n"
#: the YAML reader's cap on nodes (model/yamlsource.py); a 100,000-task file needs about a million
NODE_CAP_MESSAGE = "document too large"


def noop() -> None:
    return None


def sh_true() -> None:
    subprocess.run(["/bin/sh", "-c", "true"], check=True)


# --------------------------------------------------------------------------- workflows
def write_project(root: Path, store_url: str | None) -> None:
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    (root / "tasks" / "bench.py").write_text(NOOP)
    (root / "flowstage.yaml").write_text(json.dumps({"store": store_url}) + "\n" if store_url else "{}\n")


def python_task(name: str, after: list[str] | None = None, *, in_process: bool = True) -> dict[str, Any]:
    task: dict[str, Any] = {"name": name, "python": "tasks/bench.py:noop"}
    if in_process:
        task["in_process"] = True
    if after is not None:
        task["after"] = after
    return task


def shell_task(name: str, after: list[str] | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"name": name, "shell": "true"}
    if after is not None:
        task["after"] = after
    return task


def fanout_workflow(width: int = 500, make: Callable[..., dict[str, Any]] = python_task, name: str = "fanout") -> dict[str, Any]:
    tasks = [make("start")]
    tasks += [make(f"t{i}", ["start"]) for i in range(width)]
    tasks.append(make("end", [f"t{i}" for i in range(width)]))
    return {"name": name, "preferences": {"max_parallel": 8}, "tasks": tasks}


def chain_workflow(length: int = 100) -> dict[str, Any]:
    tasks = [python_task("t0")] + [python_task(f"t{i}", [f"t{i - 1}"]) for i in range(1, length)]
    return {"name": "chain", "tasks": tasks}


def staged_workflow(stages: int = 100, width: int = 100) -> dict[str, Any]:
    return {
        "name": f"staged_{stages * width}",
        "preferences": {"max_parallel": 8},
        "stages": [{"name": f"s{s}", "tasks": [python_task(f"s{s}_t{i}") for i in range(width)]} for s in range(stages)],
    }


def graph_of(wf: dict[str, Any]) -> dict[str, list[str]]:
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


# --------------------------------------------------------------------------- the bare baseline
Recorder = Callable[[str, str], None]


@contextmanager
def sqlite_recorder(db: Path) -> Iterator[Recorder]:
    """A commit per state change in a SQLite file (WAL, synchronous=NORMAL, as the store runs)."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS state (task TEXT PRIMARY KEY, status TEXT)")
    try:
        yield lambda name, status: conn.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (name, status)) and None
    finally:
        conn.close()


@contextmanager
def postgres_recorder(url: str) -> Iterator[Recorder]:
    """A commit per state change in PostgreSQL (autocommit: each statement is a transaction)."""
    import psycopg

    table = "bench_state_" + secrets.token_hex(4)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (task TEXT PRIMARY KEY, status TEXT)")
        sql = f"INSERT INTO {table} VALUES (%s, %s) ON CONFLICT (task) DO UPDATE SET status = excluded.status"
        try:
            yield lambda name, status: conn.execute(sql, (name, status)) and None
        finally:
            conn.execute(f"DROP TABLE {table}")


def baseline(
    preds: dict[str, list[str]],
    work: Callable[[], None],
    *,
    pool: Callable[[], Executor] = lambda: ThreadPoolExecutor(8),
    record: Recorder | None = None,
) -> float:
    """The same graph on a bare pool (its start included); with `record`, a commit per state change."""

    def mark(name: str, status: str) -> None:
        if record is not None:
            record(name, status)

    t0 = time.perf_counter()
    waiting = {n: set(p) for n, p in preds.items()}
    succ: dict[str, list[str]] = {n: [] for n in preds}
    for n, ps in preds.items():
        for p in ps:
            succ[p].append(n)
    for n in preds:
        mark(n, "pending")
    with pool() as executor:
        futures: dict[Future[None], str] = {}
        for n, ps in waiting.items():
            if not ps:
                mark(n, "running")
                futures[executor.submit(work)] = n
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for f in done:
                n = futures.pop(f)
                f.result()
                mark(n, "succeeded")
                for s in succ[n]:
                    waiting[s].discard(n)
                    if not waiting[s]:
                        mark(s, "running")
                        futures[executor.submit(work)] = s
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- flowstage
def flowstage_run(root: Path, wf: dict[str, Any]) -> float:
    """Seconds to start and drive `wf` to its end through the Python API (the project's store)."""
    from flowstage.app.runs import open_store, start_run
    from flowstage.model.loader import load
    from flowstage.settings import load_project

    path = root / "workflows" / f"{wf['name']}.json"
    path.write_text(json.dumps(wf))
    project = load_project(root=root)
    store = open_store(project)
    try:
        workflow = load(path)
        t0 = time.perf_counter()
        run = start_run(project, workflow, store=store)
        elapsed = time.perf_counter() - t0
    finally:
        store.close()
    assert run.status == "succeeded", run.status
    return elapsed


def child_peak(cmd: list[str], cwd: Path) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS MB, exit code, last line of stderr) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace").strip()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    return wall, usage.ru_maxrss / 1024, proc.returncode, err.splitlines()[-1] if err else ""


def flowstage_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flowstage", *args]


# the same CLI with the YAML reader's node cap lifted, for files the cap refuses (see NODE_CAP_MESSAGE)
_UNCAPPED = (
    "import sys; import flowstage.model.yamlsource as y; y._MAX_NODES = 10**8; "
    "sys.argv[0] = 'flowstage'; from flowstage.cli.main import main; main()"
)


def median_ms_per_task(times: list[float], n: int) -> float:
    return round(statistics.median(times) / n * 1000, 3)


# --------------------------------------------------------------------------- workloads
def bench_shell(root: Path, repeat: int, **_: Any) -> dict[str, Any]:
    wf = fanout_workflow(make=shell_task, name="shell_fanout")
    n = len(graph_of(wf))
    fs, bare = [], []
    for _i in range(repeat):
        fs.append(flowstage_run(root, wf))
        bare.append(baseline(graph_of(wf), sh_true))
    f, b = median_ms_per_task(fs, n), median_ms_per_task(bare, n)
    return {"tasks": n, "flowstage_ms_per_task": f, "threadpool_sh_ms_per_task": b, "added_ms_per_task": round(f - b, 3)}


def bench_python(root: Path, repeat: int, **_: Any) -> dict[str, Any]:
    wf = fanout_workflow(make=lambda name, after=None: python_task(name, after, in_process=False), name="python_fanout")
    n = len(graph_of(wf))
    fs, bare = [], []
    for _i in range(repeat):
        fs.append(flowstage_run(root, wf))
        bare.append(baseline(graph_of(wf), noop, pool=lambda: ProcessPoolExecutor(8)))
    f, b = median_ms_per_task(fs, n), median_ms_per_task(bare, n)
    return {"tasks": n, "flowstage_ms_per_task": f, "processpool_ms_per_task": b, "added_ms_per_task": round(f - b, 3)}


def bench_inprocess(root: Path, repeat: int, tmp: Path, store_url: str | None, **_: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, wf in (("fanout_1_500_1", fanout_workflow()), ("chain_100", chain_workflow())):
        n = len(graph_of(wf))
        fs, bare, bare_db = [], [], []
        for i in range(repeat):
            fs.append(flowstage_run(root, wf))
            bare.append(baseline(graph_of(wf), noop))
            with postgres_recorder(store_url) if store_url else sqlite_recorder(tmp / f"base-{label}-{i}.db") as record:
                bare_db.append(baseline(graph_of(wf), noop, record=record))
        out[label] = {
            "tasks": n,
            "flowstage_ms_per_task": median_ms_per_task(fs, n),
            "threadpool_ms_per_task": median_ms_per_task(bare, n),
            "threadpool_commits_ms_per_task": median_ms_per_task(bare_db, n),
        }
    return out


def bench_big(root: Path, sizes: list[int], **_: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    shapes: list[tuple[str, dict[str, Any]]] = []
    for size in sizes:
        shapes.append((f"staged_{size}", staged_workflow(size // 100, 100)))
        if size >= 100_000:
            shapes.append((f"flat_{size}", fanout_workflow(size - 2, name=f"flat_{size}")))
    for label, wf in shapes:
        path = root / "workflows" / f"{label}.json"
        path.write_text(json.dumps(wf))
        uncapped = False
        wall, peak, code, err = child_peak(flowstage_cli("run", str(path), "-q"), root)
        if code != 0 and NODE_CAP_MESSAGE in err:
            uncapped = True
            wall, peak, code, err = child_peak([sys.executable, "-c", _UNCAPPED, "run", str(path), "-q"], root)
        out[label] = {
            "tasks": len(graph_of(wf)),
            "validate_and_run_seconds": round(wall, 3),
            "peak_mb": round(peak, 1),
            "exit_code": code,
            "node_cap_lifted": uncapped,
            **({"error": err} if code != 0 else {}),
        }
    return out


def bench_cold(root: Path, repeat: int, **_: Any) -> dict[str, Any]:
    one = {"name": "one", "tasks": [python_task("only")]}
    (root / "workflows" / "one.json").write_text(json.dumps(one))
    env_cmd = ["env", "-u", "PYTHONDONTWRITEBYTECODE"]
    child_peak([*env_cmd, *flowstage_cli("run", "one", "-q")], root)  # migrate the store, write the .pyc files
    times = max(7, repeat)
    walls = [child_peak([*env_cmd, *flowstage_cli("run", "one", "-q")], root)[0] for _ in range(times)]
    python_walls = [child_peak([*env_cmd, sys.executable, "-c", "pass"], root)[0] for _ in range(times)]
    floor = [*env_cmd, sys.executable, "-c", "import pydantic.main, click"]
    floor_walls = [child_peak(floor, root)[0] for _ in range(times)]
    out: dict[str, Any] = {
        "runs": times,
        "flowstage_run_seconds": round(statistics.median(walls), 3),
        "bare_python_seconds": round(statistics.median(python_walls), 3),
        "import_pydantic_click_seconds": round(statistics.median(floor_walls), 3),
    }
    if shutil.which("valgrind"):  # instructions do not depend on what else the machine is doing
        out["instructions_millions"] = {
            "flowstage_run": instructions(flowstage_cli("run", "one", "-q"), root),
            "python_pass": instructions([sys.executable, "-c", "pass"], root),
            "import_pydantic_click": instructions(floor[len(env_cmd) :], root),
        }
    return out


def instructions(cmd: list[str], cwd: Path) -> int:
    """Millions of instructions `cmd` executes, counted by callgrind (repeatable on a busy machine)."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        capture_output=True,
        text=True,
        check=True,
    )
    counted = re.search(r"Collected : (\d+)", proc.stderr)
    assert counted, proc.stderr[-500:]
    return round(int(counted.group(1)) / 1e6)


# --------------------------------------------------------------------------- a fresh PostgreSQL database
def libpq_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


@contextmanager
def fresh_database(url: str | None) -> Iterator[str | None]:
    """A new database on `url`'s server for this run (dropped after it); None stays None (SQLite)."""
    if url is None:
        yield None
        return
    import psycopg

    base, _, _db = url.rpartition("/")
    name = "flowstage_bench_" + secrets.token_hex(4)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --------------------------------------------------------------------------- output
def table(results: dict[str, Any], store: str) -> str:
    lines = [f"flowstage engine overhead (store: {store}; medians; baselines measured in the same run)"]

    def row(label: str, *cells: str) -> None:
        lines.append(f"  {label:<40}" + "".join(f"{c:>16}" for c in cells))

    if "shell" in results:
        r = results["shell"]
        row("shell 1->500->1 (ms/task)", "flowstage", "pool+sh", "added")
        row("", f"{r['flowstage_ms_per_task']:.3f}", f"{r['threadpool_sh_ms_per_task']:.3f}", f"{r['added_ms_per_task']:.3f}")
    if "python" in results:
        r = results["python"]
        row("python child 1->500->1 (ms/task)", "flowstage", "process pool", "added")
        row("", f"{r['flowstage_ms_per_task']:.3f}", f"{r['processpool_ms_per_task']:.3f}", f"{r['added_ms_per_task']:.3f}")
    if "inprocess" in results:
        row("in-process no-ops (ms/task)", "flowstage", "thread pool", "pool+commits")
        for label, r in results["inprocess"].items():
            row(
                f"  {label}",
                f"{r['flowstage_ms_per_task']:.3f}",
                f"{r['threadpool_ms_per_task']:.3f}",
                f"{r['threadpool_commits_ms_per_task']:.3f}",
            )
    if "big" in results:
        row("flowstage run FILE -q (whole process)", "seconds", "peak MB", "exit")
        for label, r in results["big"].items():
            note = " (node cap lifted)" if r["node_cap_lifted"] else ""
            row(f"  {label}{note}", f"{r['validate_and_run_seconds']:.2f}", f"{r['peak_mb']:.0f}", str(r["exit_code"]))
    if "cold" in results:
        r = results["cold"]
        row(f"cold flowstage run, one task (s, n={r['runs']})", "flowstage", "python -c pass")
        row("", f"{r['flowstage_run_seconds']:.3f}", f"{r['bare_python_seconds']:.3f}")
        row("  import pydantic.main, click alone (s)", f"{r['import_pydantic_click_seconds']:.3f}")
        if "instructions_millions" in r:
            i = r["instructions_millions"]
            row("  instructions (millions, callgrind)", str(i["flowstage_run"]), str(i["python_pass"]))
            row("  import pydantic.main, click alone", str(i["import_pydantic_click"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each timed workload; the median is shown")
    parser.add_argument("--only", default=",".join(WORKLOADS), help=f"workloads to run, comma-separated: {','.join(WORKLOADS)}")
    parser.add_argument("--sizes", default="10000,100000", help="task counts of the `big` workload, comma-separated")
    parser.add_argument("--store", default=None, help="a PostgreSQL URL: record in a fresh database there (default SQLite)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    chosen = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    benches: dict[str, Callable[..., dict[str, Any]]] = {
        "shell": bench_shell,
        "python": bench_python,
        "inprocess": bench_inprocess,
        "big": bench_big,
        "cold": bench_cold,
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.store) as store_url:
        root = Path(tmp) / "proj"
        write_project(root, store_url)
        for name in WORKLOADS:
            if name in chosen:
                results[name] = benches[name](
                    root=root,
                    repeat=args.repeat,
                    tmp=Path(tmp),
                    store_url=store_url,
                    sizes=[int(s) for s in args.sizes.split(",") if s.strip()],
                )
    store = "postgresql" if args.store else "sqlite"
    if args.json:
        print(json.dumps({"store": store, **results}, indent=2))
    else:
        print(table(results, store))


if __name__ == "__main__":
    main()
