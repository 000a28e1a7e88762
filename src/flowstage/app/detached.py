"""Detached runs: a run driven by a runner process of its own, which outlives whoever started it.

`detach_run` starts ``python -m flowstage.app.detached start ...`` in a new session (so a signal
to the caller's terminal or process group never reaches it), waits until the run is recorded,
and returns its id; the runner process then drives the run to its end, writing its own output to
``.flowstage/runners/<run id>.log``. `detach_resume` does the same for a resume. The server and
the embedded scheduler start runs this way, so that a restart neither kills nor loses them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowstage.errors import ExitCode, FlowstageError, RunError
from flowstage.settings import Project

START_TIMEOUT_SECONDS = 60.0


def _log_file(project: Project, run_id: str) -> Path:
    folder = project.state_dir / "runners"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{run_id}.log"


def _spawn(project: Project, run_id: str, argv: list[str]) -> subprocess.Popen[bytes]:
    log = _log_file(project, run_id)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flowstage.app.detached", *argv, "--root", str(project.root), "--run-id", run_id],
            cwd=project.root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Collect the runner process's exit when it ends, so a long-lived caller keeps no zombie of it."""
    import threading

    threading.Thread(target=proc.wait, name=f"flowstage-reap-{proc.pid}", daemon=True).start()


def _wait_recorded(project: Project, run_id: str, proc: subprocess.Popen[bytes], *, claimed_by: bool) -> None:
    """Until the runner process has recorded (or claimed) the run; its error if it ended first."""
    from flowstage.app.runs import open_store

    store = open_store(project)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        delay = 0.005
        while time.monotonic() < deadline:
            run = store.get_run(run_id, with_tasks=False)
            if run is not None and (not claimed_by or run.runner_pid == proc.pid):
                return
            code = proc.poll()
            if code is not None:
                run = store.get_run(run_id, with_tasks=False)
                if run is not None and (not claimed_by or run.runner_pid == proc.pid):
                    return
                tail = _log_file(project, run_id).read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RunError(f"the runner process of {run_id} ended (exit code {code}) before the run started: {tail[0]}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        raise RunError(f"the runner process of {run_id} did not record the run within {START_TIMEOUT_SECONDS:g}s")
    finally:
        store.close()


def detach_run(
    project: Project,
    workflow: str,
    *,
    variables: Mapping[str, Any] | None = None,
    version: int | None = None,
    executor: str | None = None,
    run_id: str | None = None,
    logical_time: float | None = None,
    source: str | None = None,
) -> str:
    """Start a run of `workflow` (a name or a file; a deployed `version` if given) in a runner process of its own.

    `logical_time` (epoch seconds, default now) is the time the run is for, as a scheduler's fire
    gives it; `source` replaces the recorded "where the definition came from" label.
    """
    from flowstage.app.runs import new_run_id

    run_id = run_id or new_run_id()
    argv = ["start", "--workflow", workflow, "--variables", json.dumps(dict(variables or {}), default=str)]
    if version is not None:
        argv += ["--version", str(version)]
    if executor:
        argv += ["--executor", executor]
    if logical_time is not None:
        argv += ["--logical-time", repr(float(logical_time))]
    if source:
        argv += ["--source", source]
    proc = _spawn(project, run_id, argv)
    _wait_recorded(project, run_id, proc, claimed_by=False)
    _reap(proc)
    return run_id


def detach_resume(project: Project, run_id: str, *, executor: str | None = None) -> str:
    """Resume `run_id` in a runner process of its own; returns once that process has claimed it."""
    from flowstage.app.liveness import effective_status
    from flowstage.app.runs import get_run, open_store
    from flowstage.errors import UsageError
    from flowstage.model.statuses import RUN_RESUMABLE

    store = open_store(project)
    try:
        shown = effective_status(get_run(store, run_id))
    finally:
        store.close()
    if shown not in {s.value for s in RUN_RESUMABLE}:
        raise UsageError(f"run {run_id} {shown}; only a failed, cancelled, timed-out or interrupted run can be resumed")
    proc = _spawn(project, run_id, ["resume", *(["--executor", executor] if executor else [])])
    _wait_recorded(project, run_id, proc, claimed_by=True)
    _reap(proc)
    return run_id


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowstage.app.detached", description="a detached runner process")
    parser.add_argument("action", choices=["start", "resume"])
    parser.add_argument("--root", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--workflow")
    parser.add_argument("--version", type=int)
    parser.add_argument("--variables", default="{}")
    parser.add_argument("--executor")
    parser.add_argument("--logical-time", type=float)
    parser.add_argument("--source")
    args = parser.parse_args(argv)
    from flowstage.app.runs import open_store, resume_run, start_run
    from flowstage.app.workflows import resolve_workflow
    from flowstage.settings import load_project

    project = load_project(root=Path(args.root))
    store = open_store(project)
    try:
        if args.action == "resume":
            run = resume_run(project, args.run_id, store=store, executor=args.executor)
        else:
            found = resolve_workflow(project, args.workflow, store=store)
            workflow, version, source, definition = found.workflow, found.version, found.source, found.definition
            if args.version is not None and args.version != version:
                from flowstage.app.definitions import validate_definition

                kept = store.deployments.version(workflow.name, args.version)
                if kept is None:
                    raise RunError(f"{workflow.name} has no version {args.version}")
                (workflow, definition), version = validate_definition(project, kept.definition), args.version
                source = f"{workflow.name} v{version}"
            run = start_run(
                project,
                workflow,
                store=store,
                variables=json.loads(args.variables),
                version=version,
                source=args.source or source,
                definition=definition,
                executor=args.executor,
                run_id=args.run_id,
                logical_time=args.logical_time,
            )
    except FlowstageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return int(getattr(exc, "exit_code", ExitCode.RUN_FAILED))
    finally:
        store.close()
    sys.stdout.write(f"run {run.id} ({run.workflow}) {run.status}\n")
    return int(ExitCode.OK if run.status == "succeeded" else ExitCode.RUN_FAILED)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    import faulthandler

    faulthandler.enable()  # a fatal signal leaves its last word in the runner's log (its stderr)
    from flowstage.exiting import exit_now

    exit_now(_main())
