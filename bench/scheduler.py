"""The scheduler, measured: 1,000 deployed schedules due at once, and its CPU time when idle.

Deploys 1,000 workflows (one in-process no-op python task each, all on ``* * * * *``) into a
fresh project on the default SQLite store, starts `flowstage scheduler` with its wall clock
shifted so that the next minute begins a few seconds after it is up, and prints:
  * the delay from the due time to each run's start (its record written, status running),
    p50 / p95 / max, and until the 1,000th run has ended;
  * the scheduler process's CPU time while idle (every schedule deployed, none due), measured
    over a shorter window and scaled to a minute.
A benchmark, not a test: ``.venv/bin/python bench/scheduler.py``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

NOOP = "def noop():\n    return None\n"


def write_project(root: Path, count: int) -> None:
    (root / "tasks").mkdir(parents=True)
    (root / "workflows").mkdir()
    (root / "tasks" / "noop.py").write_text(NOOP)
    (root / "flowstage.yaml").write_text("{}\n")
    for i in range(count):
        (root / "workflows" / f"w{i:04d}.yaml").write_text(
            f"name: w{i:04d}\n"
            'trigger: {schedule: "* * * * *"}\n'
            "tasks:\n"
            "  - {name: work, python: tasks/noop.py:noop, in_process: true}\n"
        )


def flowstage(*args: str) -> list[str]:
    return [sys.executable, "-m", "flowstage", *args]


def runs(db: Path) -> list[tuple[float, float, float | None]]:
    conn = sqlite3.connect(db, timeout=60)
    try:
        return list(conn.execute("SELECT logical_time, started_at, ended_at FROM runs"))
    finally:
        conn.close()


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--idle-window", type=float, default=30.0, help="seconds of idle CPU measured (scaled to a minute)")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="flowstage-bench-") as tmp:
        root = Path(tmp)
        write_project(root, args.schedules)
        t = time.perf_counter()
        subprocess.run(flowstage("deploy", "workflows"), cwd=root, check=True, stdout=subprocess.DEVNULL)
        deploy_seconds = time.perf_counter() - t
        db = root / ".flowstage" / "flowstage.db"

        # The scheduler's clock is shifted so that the first minute after the deploy comes `lead`
        # real seconds after launch: the scheduler is up well before, and no earlier time is due.
        lead = 6.0
        now = time.time()
        due = (int(now) // 60 + 1) * 60.0
        offset = due - (now + lead)
        real_due = due - offset
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSTAGE_")}
        proc = subprocess.Popen(
            flowstage("scheduler", "--workers", str(args.workers), "--clock-offset", repr(offset)),
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            ps = psutil.Process(proc.pid)
            deadline = real_due + 120
            while time.time() < deadline:
                done = [r for r in runs(db) if r[2] is not None]
                if len(done) >= args.schedules:
                    break
                time.sleep(0.2)
            fired = runs(db)
            assert len(fired) == args.schedules, f"{len(fired)} runs started of {args.schedules}"
            assert {r[0] for r in fired} == {due}, "every run has the due time as its logical time"
            delays = [r[1] - real_due for r in fired]
            all_ended = max(r[2] or 0.0 for r in fired) - real_due

            # idle: every schedule deployed, the next due time a minute away
            time.sleep(2.0)
            next_due_in = real_due + 60 - time.time()
            window = min(args.idle_window, next_due_in - 3)
            c0, w0 = cpu_seconds(ps), time.monotonic()
            time.sleep(window)
            c1, w1 = cpu_seconds(ps), time.monotonic()
            idle_per_minute = (c1 - c0) * 60.0 / (w1 - w0)
            memory_mb = ps.memory_info().rss / 1e6
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)

    print(f"schedules deployed: {args.schedules} (deploy took {deploy_seconds:.2f} s), scheduler workers: {args.workers}")
    print(
        f"delay from due time to run start: p50 {statistics.median(delays):.3f} s, "
        f"p95 {percentile(delays, 0.95):.3f} s, max {max(delays):.3f} s, first {min(delays):.3f} s"
    )
    print(f"all {args.schedules} runs ended {all_ended:.2f} s after the due time")
    print(f"idle scheduler CPU time: {idle_per_minute:.3f} s per minute (measured over {w1 - w0:.1f} s), RSS {memory_mb:.0f} MB")


if __name__ == "__main__":
    main()
