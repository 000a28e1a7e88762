"""Chaos: the runner SIGKILLed at random moments, then `flowstage resume` until the run is final.

Each round starts `flowstage run chaos --json` in a fresh project (SQLite, or with `--store URL` a
fresh schema of that PostgreSQL database) and kills the runner (`kill -9`) in one window:
  * creation  a few milliseconds after the process started, around the run's creation;
  * stage     as soon as a task of the run is running (its "start" line is in the ledger);
  * effect    right after a task's side effect was written (its "done" line), before the runner
              can record the task succeeded;
  * random    at a random moment of the run's expected length.
Then it resumes the run (each resume is itself killed at random, 30% of the time) until the run is
final. The workflow has retries (a task failing its first attempt), fan-out (`for_each`) and a
sub-workflow (`workflow:`); every task appends "start" and "done" lines, with the run id, the task,
its copy and its attempt number, to a ledger file.

Reported: rounds whose run ended final; double runs — a task copy recorded succeeded must have
exactly one "done" line for its succeeded attempt and none from a later attempt (a copy may run
twice only when its first attempt was never recorded succeeded); orphan processes — any process
still alive in the round's project folder once the run is final.

A benchmark script, not a test: `python bench/chaos.py --runs 60 --seed 1 [--store URL] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

FLOWSTAGE = [sys.executable, "-m", "flowstage"]
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}
WINDOWS = ("creation", "stage", "effect", "random")

# `effect {{ ... }}` lines: run id, task, copy, attempt, phase
_LINE = "echo {{ run.id }} {{ task.name }} {{ task.instance | default(0) }} {{ task.attempt }} %s >> ledger.txt"


def _task(body: str) -> str:
    return f"{_LINE % 'start'}; {body}; {_LINE % 'done'}"


MAIN = f"""
name: chaos
preferences: {{max_parallel: 4, retry_delay: 0.1s}}
stages:
  - name: first
    tasks:
      - name: flaky
        retries: 2
        shell: '{_LINE % "start"}; sleep 0.2; [ {{{{ task.attempt }}}} -gt 1 ] || exit 1; {_LINE % "done"}'
      - name: fan
        for_each: "{{{{ ['a', 'b', 'c', 'd'] }}}}"
        shell: '{_task("sleep 0.15")}'
  - name: second
    tasks:
      - {{name: sub, workflow: child}}
      - {{name: after_sub, shell: '{_task("sleep 0.1")}', after: [fan]}}
  - name: third
    tasks:
      - {{name: last, shell: '{_task("sleep 0.05")}'}}
"""

CHILD = f"""
name: child
tasks:
  - {{name: c1, shell: '{_task("sleep 0.1")}'}}
  - {{name: c2, shell: '{_task("sleep 0.1")}', after: [c1]}}
"""

EXPECTED_SECONDS = 1.5  # one undisturbed run of `chaos`, about


@dataclass
class Round:
    window: str
    killed: bool = False
    run_id: str | None = None
    status: str | None = None
    resumes: int = 0
    resume_kills: int = 0
    double_runs: list[str] = field(default_factory=list)
    missing_effects: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    error: str | None = None


def _env(store: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSTAGE_")}
    if store:
        env["FLOWSTAGE_STORE"] = store
    return env


def _cli(root: Path, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWSTAGE, *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _ledger(root: Path) -> list[list[str]]:
    try:
        return [line.split() for line in (root / "ledger.txt").read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _kill_in_window(proc: subprocess.Popen[str], root: Path, window: str, rng: random.Random) -> bool:
    """SIGKILL the runner in `window`; False when it ended first."""
    deadline = time.monotonic() + 30
    if window == "creation":
        time.sleep(rng.uniform(0.0, 0.4))
    elif window == "random":
        time.sleep(rng.uniform(0.0, EXPECTED_SECONDS))
    else:
        phase = "start" if window == "stage" else "done"
        # which line to wait for: the first, or one further into the run
        wanted = rng.randint(1, 6)
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(1 for line in _ledger(root) if line[-1] == phase) >= wanted:
                break
            time.sleep(0.002)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _run_id(root: Path, env: dict[str, str]) -> str | None:
    listed = _cli(root, env, "runs", "chaos", "--json")
    if listed.returncode != 0:
        raise RuntimeError(f"runs --json: {listed.stderr.strip()}")
    runs = json.loads(listed.stdout)
    return str(runs[0]["id"]) if runs else None


def _show(root: Path, env: dict[str, str], run_id: str) -> dict[str, Any]:
    shown = _cli(root, env, "show", run_id, "--json")
    if shown.returncode != 0:
        raise RuntimeError(f"show {run_id}: {shown.stderr.strip()}")
    record: dict[str, Any] = json.loads(shown.stdout)
    return record


def _check_effects(root: Path, env: dict[str, str], record: dict[str, Any], rnd: Round) -> None:
    """Double runs and missing side effects of the run and of its sub-runs, from the ledger."""
    done = Counter((r, t, i, int(a)) for r, t, i, a, phase in _ledger(root) if phase == "done")
    done_attempts: dict[tuple[str, str, str], list[int]] = {}
    for r, t, i, a in done:
        done_attempts.setdefault((r, t, i), []).append(a)
    records = [record]
    for task in record["tasks"]:
        sub = (task.get("metrics") or {}).get("sub_run_id")
        if sub:
            records.append(_show(root, env, str(sub)))
    for rec in records:
        for task in rec["tasks"]:
            if task["status"] != "succeeded" or task["name"] == "sub":
                continue
            for attempt in task["attempts"]:
                if attempt["status"] != "succeeded":
                    continue
                copy = str(attempt.get("instance", 0))
                key = (rec["id"], task["name"], copy)
                where = f"{rec['id']}/{task['name']}[{copy}]#{attempt['number']}"
                count = done[(*key, int(attempt["number"]))]
                if count == 0:
                    rnd.missing_effects.append(where)
                elif count > 1:
                    rnd.double_runs.append(f"{where} done {count} times")
                later = [a for a in done_attempts.get(key, []) if a > int(attempt["number"])]
                if later:
                    rnd.double_runs.append(f"{where} ran again as attempt(s) {later}")


def _orphans(root: Path) -> list[str]:
    """Processes still alive whose working directory is in the round's project (after a grace period)."""
    deadline = time.monotonic() + 5
    while True:
        left = []
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if Path(proc.cwd()).is_relative_to(root):
                    left.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])[:120]}")
            except (psutil.Error, OSError):
                continue
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _fresh_store(base: str | None) -> tuple[str | None, Any]:
    """A fresh PostgreSQL schema of `base` for one round (and how to drop it), or SQLite."""
    if not base:
        return None, None
    import sqlalchemy as sa

    schema = "chaos_" + secrets.token_hex(5)
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", drop


def one_round(workdir: Path, index: int, window: str, rng: random.Random, store_base: str | None) -> Round:
    rnd = Round(window=window)
    root = workdir / f"round{index:03d}"
    (root / "workflows").mkdir(parents=True)
    (root / "flowstage.yaml").write_text("{}\n")
    (root / "workflows" / "chaos.yaml").write_text(MAIN)
    (root / "workflows" / "child.yaml").write_text(CHILD)
    store, drop = _fresh_store(store_base)
    env = _env(store)
    try:
        proc = subprocess.Popen(
            [*FLOWSTAGE, "run", "chaos", "--json"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        rnd.killed = _kill_in_window(proc, root, window, rng)
        run_id = _run_id(root, env)
        if run_id is None:  # killed before the run was recorded: nothing to resume, run it again
            done = _cli(root, env, "run", "chaos", "--json")
            run_id = _run_id(root, env)
            if run_id is None:
                raise RuntimeError(f"no run recorded: {done.stderr.strip()}")
        rnd.run_id = run_id
        for _ in range(10):
            status = _show(root, env, run_id)["status"]
            if status in FINAL:
                break
            rnd.resumes += 1
            resume = subprocess.Popen(
                [*FLOWSTAGE, "resume", run_id], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0.05, EXPECTED_SECONDS))
                if resume.poll() is None:
                    resume.send_signal(signal.SIGKILL)
                    rnd.resume_kills += 1
            _, err = resume.communicate(timeout=120)
            if resume.returncode not in (0, 1, -signal.SIGKILL):
                raise RuntimeError(f"resume {run_id} exited {resume.returncode}: {err.strip()}")
        record = _show(root, env, run_id)
        rnd.status = record["status"]
        _check_effects(root, env, record, rnd)
        rnd.orphans = _orphans(root)
    except Exception as exc:
        rnd.error = f"{type(exc).__name__}: {exc}"
    finally:
        if drop is not None:
            drop()
    return rnd


def main() -> None:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds (one runner kill each, at least); default 30")
    parser.add_argument("--seed", type=int, default=1, help="random seed of windows and moments; default 1")
    parser.add_argument("--store", help="a PostgreSQL URL: each round records in a fresh schema of that database")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument("--keep", action="store_true", help="keep the rounds' project folders")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="flowstage-chaos-"))
    started = time.monotonic()
    rounds: list[Round] = []
    try:
        for i in range(args.runs):
            window = WINDOWS[i % len(WINDOWS)]
            rnd = one_round(workdir, i, window, rng, args.store)
            rounds.append(rnd)
            if not args.json:
                flags = " ".join(
                    f"{k}={v}"
                    for k, v in (
                        ("double", rnd.double_runs),
                        ("missing", rnd.missing_effects),
                        ("orphans", rnd.orphans),
                        ("error", rnd.error),
                    )
                    if v
                )
                print(
                    f"round {i + 1:3d} {window:9s} killed={rnd.killed!s:5s} resumes={rnd.resumes} -> {rnd.status} {flags}",
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "store": "postgresql" if args.store else "sqlite",
        "seed": args.seed,
        "rounds": len(rounds),
        "runner_kills": sum(r.killed for r in rounds) + sum(r.resume_kills for r in rounds),
        "kills_by_window": dict(Counter(r.window for r in rounds if r.killed)),
        "resumes": sum(r.resumes for r in rounds),
        "ended_final": sum(r.status in FINAL for r in rounds),
        "statuses": dict(Counter(str(r.status) for r in rounds)),
        "double_runs": sum(len(r.double_runs) for r in rounds),
        "missing_side_effects": sum(len(r.missing_effects) for r in rounds),
        "orphan_processes": sum(len(r.orphans) for r in rounds),
        "errors": sum(r.error is not None for r in rounds),
        "seconds": round(time.monotonic() - started, 1),
        "problems": [
            asdict(r) for r in rounds if r.double_runs or r.missing_effects or r.orphans or r.error or r.status not in FINAL
        ],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(json.dumps({k: v for k, v in report.items() if k != "problems"}, indent=2))
        for problem in report["problems"]:
            print(problem)
    bad = (
        report["ended_final"] != len(rounds)
        or report["double_runs"]
        or report["missing_side_effects"]
        or report["orphan_processes"]
    )
    sys.exit(1 if bad or report["errors"] else 0)


if __name__ == "__main__":
    main()
