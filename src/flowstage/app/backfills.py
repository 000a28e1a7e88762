"""Backfills: run a deployed workflow's schedule over a past range, each logical time at most once.

`create_backfill` turns a range into the logical times the scheduler would have fired in it
(`engine.scheduling.CronSchedule`, so DST is handled exactly as for scheduled runs), decides per
time what `reprocess` says about the runs it already has (`decide`), and records the backfill.
`BackfillDriver` then drives it in this process: it claims the oldest queued time in the store
(`BackfillStore.claim_next`: a compare-and-set that also holds `max_active` and the backfill's
status), records the run under the run id of the claim, and drives it in a worker thread, as the
scheduler drives a scheduled run. Only a claim starts a run, so two drivers of one backfill, or a
driver killed and another started with `backfill resume`, never start a time twice.

A driver also looks after the times that another driver left running: a run that ended is
recorded as such; a run whose runner died is resumed (or failed, with `server: {orphans: fail}`
in flowstage.yaml, the server's rule for orphaned runs); a claim whose run was never recorded
(its driver killed between the claim and the record) is taken over once its driver is gone and
its run created under the claimed id, which the runs table's key makes unique.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowstage.app.liveness import effective_status
from flowstage.app.runs import begin_run, drive, fail_orphan, new_run_id, request_cancel, resume_run, who
from flowstage.engine.scheduling import CronSchedule, zone
from flowstage.errors import FlowstageError, NotFoundError, UsageError
from flowstage.model.statuses import RunStatus
from flowstage.model.workflow import Workflow
from flowstage.settings import Project
from flowstage.stores.backfills import (
    BACKFILL_FINAL,
    TIME_CANCELLED,
    TIME_FAILED,
    TIME_QUEUED,
    TIME_RUNNING,
    TIME_SKIPPED,
    Backfill,
    BackfillStatus,
    BackfillTime,
    NewBackfill,
    PriorRun,
    Reprocess,
)
from flowstage.stores.base import RunStore

logger = logging.getLogger(__name__)

#: a backfill of more logical times than this is refused (a typo in a range, or a minutely cron over years)
MAX_TIMES = 100_000
#: a claim whose run was not recorded after this long is taken over (sooner when its driver is gone from this host)
ORPHAN_CLAIM_SECONDS = 60.0
#: how often a driver looks at the store when no run of its own ended (pause, cancel, other drivers)
POLL_SECONDS = 0.25
#: run statuses no transition leaves (`interrupted` is shown, never stored)
_RUN_FINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})


# --------------------------------------------------------------------------- the range
def parse_time(text: str, timezone: str, *, option: str) -> float:
    """An ISO 8601 date or date-time as epoch seconds; without an offset it is read in `timezone`."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: not a date or time (write e.g. 2026-03-01, 2026-03-01T06:00 or 2026-03-01T06:00+01:00)"
        ) from None
    if parsed.tzinfo is None:
        from flowstage.engine.scheduling import wall_to_instant

        return wall_to_instant(parsed, zone(timezone))
    return parsed.timestamp()


def logical_times(schedule: CronSchedule, start: float, end: float, *, limit: int = MAX_TIMES) -> list[float]:
    """The fire times of `schedule` in [start, end], oldest first, as the scheduler computes them.

    Raises `UsageError` past `limit` times.
    """
    found: list[float] = []
    for at in schedule.after(start - 0.001):
        if at > end:
            break
        if at < start:
            continue
        found.append(at)
        if len(found) > limit:
            raise UsageError(
                f"the range holds more than {limit:,} logical times of {schedule.expression!r}; backfill a shorter range"
            )
    return found


def decide(reprocess: Reprocess, latest: PriorRun | None) -> str:
    """Whether a logical time runs (`queued`) or not (`skipped`), given its latest earlier run."""
    if latest is None or reprocess is Reprocess.ALL:
        return TIME_QUEUED
    if reprocess is Reprocess.FAILED and latest.status in ("failed", "timed_out", "cancelled"):
        return TIME_QUEUED
    return TIME_SKIPPED


@dataclass(frozen=True)
class Target:
    """The deployed workflow a backfill runs, at the version it runs."""

    workflow: Workflow
    version: int
    schedule: CronSchedule


def deployed_target(project: Project, store: RunStore, name: str, version: int | None = None) -> Target:
    """The current (or a given) deployed version of `name`; `UsageError` unless it has a schedule."""
    from flowstage.app.definitions import validate_definition

    deployed = store.deployments.workflow(name)
    if deployed is None:
        raise NotFoundError(f"no deployed workflow {name!r}; a backfill runs a deployed workflow (flowstage deploy workflows/)")
    number = deployed.current_version if version is None else version
    kept = store.deployments.version(name, number)
    if kept is None:
        raise NotFoundError(f"workflow {name!r} has no version {number}")
    workflow, _ = validate_definition(project, kept.definition)
    trigger = workflow.trigger
    if trigger is None or not trigger.schedule:
        raise UsageError(
            f"workflow {name!r} v{number} has no schedule (trigger: {{schedule: ...}}): a backfill runs the logical "
            "times of a schedule; start a single run with `flowstage run`"
        )
    return Target(workflow, number, CronSchedule(trigger.schedule, trigger.timezone))


def create_backfill(
    project: Project,
    store: RunStore,
    name: str,
    *,
    start: str,
    end: str,
    max_active: int | None = None,
    reprocess: str = "none",
) -> Backfill:
    """Record a backfill of `name` over [start, end] (ISO texts, read in the schedule's time zone)."""
    try:
        mode = Reprocess(str(reprocess).strip().lower())
    except ValueError:
        raise UsageError(f"--reprocess {reprocess!r}: expected one of {', '.join(r.value for r in Reprocess)}") from None
    if max_active is not None and max_active < 1:
        raise UsageError(f"--max-active {max_active}: at least one run must be allowed at a time")
    target = deployed_target(project, store, name)
    tz = target.schedule.timezone
    t1 = parse_time(start, tz, option="--from")
    t2 = parse_time(end, tz, option="--to")
    if t2 < t1:
        raise UsageError(f"--to {end!r} is before --from {start!r}")
    times = logical_times(target.schedule, t1, t2)
    if not times:
        raise UsageError(f"no logical time of {target.schedule.expression!r} ({tz}) lies between {start} and {end}")
    latest: dict[float, PriorRun] = {}
    for run in store.backfills.prior_runs(name, start=t1, end=t2):  # oldest start first: the last one wins
        latest[run.logical_time] = run
    rows = []
    for at in times:
        prior = latest.get(at)
        rows.append(BackfillTime(at, decide(mode, prior), prior_run_id=prior.id if prior is not None else None))
    assert target.workflow.trigger is not None
    backfill_id = "bf" + new_run_id()
    store.backfills.create(
        NewBackfill(
            id=backfill_id,
            workflow=name,
            version=target.version,
            start=t1,
            end=t2,
            max_active=max_active or target.workflow.trigger.max_active_runs,
            reprocess=mode.value,
            created_at=time.time(),
            created_by=who(),
            times=rows,
        )
    )
    return get_backfill(store, backfill_id)


def get_backfill(store: RunStore, backfill_id: str) -> Backfill:
    found = store.backfills.get(backfill_id)
    if found is None:
        raise NotFoundError(f"no backfill {backfill_id!r} (see flowstage backfill list)")
    return found


def failed_times(backfill: Backfill) -> int:
    """How many times of the backfill ended failed or timed out."""
    return sum(n for status, n in backfill.counts.items() if status in TIME_FAILED)


# --------------------------------------------------------------------------- pause, resume, cancel
def pause_backfill(store: RunStore, backfill_id: str) -> Backfill:
    """No new run of the backfill starts; those running finish (its driver then stops)."""
    found = get_backfill(store, backfill_id)
    if found.status == BackfillStatus.PAUSED.value:
        return found
    if not store.backfills.set_status(backfill_id, BackfillStatus.PAUSED.value, expect=["queued", "running"], at=time.time()):
        raise UsageError(
            f"backfill {backfill_id} is {get_backfill(store, backfill_id).status}; only a queued or running one can be paused"
        )
    return get_backfill(store, backfill_id)


def mark_running(store: RunStore, backfill_id: str) -> Backfill:
    """Let the backfill's times start (from queued or paused; a running one, whose driver may be gone, stays so)."""
    found = get_backfill(store, backfill_id)
    if found.status in {s.value for s in BACKFILL_FINAL}:
        raise UsageError(f"backfill {backfill_id} is {found.status}; nothing to resume")
    store.backfills.set_status(backfill_id, BackfillStatus.RUNNING.value, expect=["queued", "paused"], at=time.time())
    found = get_backfill(store, backfill_id)
    if found.status != BackfillStatus.RUNNING.value:
        raise UsageError(f"backfill {backfill_id} became {found.status} meanwhile")
    return found


def cancel_backfill(store: RunStore, backfill_id: str, *, wait_seconds: float = 15.0) -> Backfill:
    """No new run starts, the queued times are cancelled, and the running runs are cancelled (waited for up to `wait_seconds`)."""
    found = get_backfill(store, backfill_id)
    if found.status in {s.value for s in BACKFILL_FINAL}:
        raise UsageError(f"backfill {backfill_id} is {found.status} already; nothing to cancel")
    store.backfills.set_status(
        backfill_id, BackfillStatus.CANCELLED.value, expect=["queued", "running", "paused"], at=time.time()
    )
    running = [t for t in get_backfill(store, backfill_id).times if t.status == TIME_RUNNING and t.run_id]
    for t in running:
        assert t.run_id is not None
        run = store.get_run(t.run_id, with_tasks=False)
        if run is None:
            continue  # claimed, not recorded yet: its driver sees the cancel before it records more
        if run.status == RunStatus.RUNNING.value:
            with contextlib.suppress(FlowstageError):  # it ended meanwhile
                request_cancel(store, t.run_id)
    deadline = time.monotonic() + wait_seconds
    left = list(running)
    while left:
        still = []
        for t in left:
            assert t.run_id is not None
            run = store.get_run(t.run_id, with_tasks=False)
            if run is None:
                store.backfills.finish_time(backfill_id, t.logical_time, run_id=t.run_id, status=TIME_CANCELLED, at=time.time())
            elif run.status in _RUN_FINAL:
                store.backfills.finish_time(backfill_id, t.logical_time, run_id=t.run_id, status=run.status, at=time.time())
            else:
                still.append(t)
        left = still
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return get_backfill(store, backfill_id)


def detach_backfill(project: Project, backfill_id: str, *, executor: str | None = None) -> int:
    """Drive the backfill in a process of its own (``flowstage backfill resume ID``), which outlives the caller.

    Its output goes to ``.flowstage/runners/<backfill id>.log``; answers the process id.
    """
    import subprocess
    import sys

    folder = project.state_dir / "runners"
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "flowstage", "backfill", "resume", backfill_id, *(["--executor", executor] if executor else [])]
    with open(folder / f"{backfill_id}.log", "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=project.root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a signal to the caller's process group never reaches it
            close_fds=True,
        )
    threading.Thread(target=proc.wait, name=f"flowstage-reap-{proc.pid}", daemon=True).start()
    return proc.pid


def orphan_policy(project: Project) -> str:
    """`server: {orphans: resume | fail}` of flowstage.yaml: what becomes of a run whose runner died."""
    server = project.config.get("server")
    policy = server.get("orphans", "resume") if isinstance(server, dict) else "resume"
    return "fail" if policy == "fail" else "resume"


# --------------------------------------------------------------------------- the driver
@dataclass
class _Mine:
    """A time this driver runs (or resumes), and the future of its worker thread."""

    time: BackfillTime
    run_id: str
    future: Future[Any]
    cancel_sent: bool = False


class BackfillDriver:
    """Drives one backfill in this process until it is done, paused or cancelled."""

    def __init__(
        self,
        project: Project,
        store: RunStore,
        backfill_id: str,
        *,
        executor: str | None = None,
        report: Callable[[str], None] | None = None,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.project = project
        self.store = store
        self.backfill_id = backfill_id
        self.executor = executor
        self.report = report or (lambda line: logger.info("%s", line))
        self.poll = poll
        self.pid = os.getpid()
        self.host = os.uname().nodename  # as runs record their runner host
        self.policy = orphan_policy(project)
        self._mine: dict[float, _Mine] = {}
        self._pause = threading.Event()
        self._wake = threading.Event()
        self._target: Target | None = None
        self._pool: ThreadPoolExecutor | None = None

    def request_pause(self) -> None:
        """Pause the backfill at the next look (safe from a signal handler)."""
        self._pause.set()
        self._wake.set()

    # ------------------------------------------------------------------ helpers
    def _iso(self, at: float) -> str:
        tz = self._target.schedule.timezone if self._target else "UTC"
        return datetime.fromtimestamp(at, zone(tz)).isoformat()

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        assert self._pool is not None
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda _f: self._wake.set())
        return future

    def _begin(self, t: BackfillTime, run_id: str) -> None:
        """Record the run of a claimed time and drive it in a worker thread."""
        assert self._target is not None
        workflow = self._target.workflow
        try:
            begun = begin_run(
                self.project,
                workflow,
                store=self.store,
                variables=dict(workflow.trigger.variables) if workflow.trigger else {},
                version=self._target.version,
                source=f"{workflow.name} v{self._target.version} (backfill {self.backfill_id})",
                executor=self.executor,
                logical_time=t.logical_time,
                run_id=run_id,
            )
        except FlowstageError as exc:
            self.report(f"{self._iso(t.logical_time)}: could not start run {run_id}: {exc}")
            self.store.backfills.finish_time(self.backfill_id, t.logical_time, run_id=run_id, status="failed", at=time.time())
            return
        self.report(f"{self._iso(t.logical_time)}: run {run_id} started")
        self._mine[t.logical_time] = _Mine(t, run_id, self._submit(drive, begun))

    def _resume(self, t: BackfillTime, run_id: str) -> None:
        """Resume the run of a time whose runner died, in a worker thread."""

        def go() -> Any:
            return resume_run(self.project, run_id, store=self.store, executor=self.executor)

        self.report(f"{self._iso(t.logical_time)}: run {run_id} was interrupted; resuming it")
        self._mine[t.logical_time] = _Mine(t, run_id, self._submit(go))

    def _reconcile(self, backfill: Backfill) -> None:
        """Look after the running times that are not this driver's own (another driver's, or a dead one's)."""
        now = time.time()
        for t in backfill.times:
            if t.status != TIME_RUNNING or t.logical_time in self._mine or t.run_id is None:
                continue
            run = self.store.get_run(t.run_id, with_tasks=False)
            if run is None:
                gone = t.claimed_host == self.host and t.claimed_pid is not None and not _pid_alive(t.claimed_pid)
                stale = t.claimed_at is None or now - t.claimed_at >= ORPHAN_CLAIM_SECONDS
                if backfill.status == BackfillStatus.CANCELLED.value and (gone or stale):
                    self.store.backfills.finish_time(
                        self.backfill_id, t.logical_time, run_id=t.run_id, status=TIME_CANCELLED, at=now
                    )
                elif (gone or stale) and self.store.backfills.take_over(
                    self.backfill_id, t, pid=self.pid, host=self.host, at=now
                ):
                    self._begin(t, t.run_id)
                continue
            if run.status in _RUN_FINAL:
                self.store.backfills.finish_time(self.backfill_id, t.logical_time, run_id=t.run_id, status=run.status, at=now)
                continue
            if effective_status(run) != RunStatus.INTERRUPTED.value:
                continue  # driven by a live runner elsewhere: its driver records the end
            if backfill.status == BackfillStatus.CANCELLED.value:
                try:
                    request_cancel(self.store, t.run_id)  # ends an orphan as cancelled
                except FlowstageError:
                    pass
                continue
            if self.policy == "fail":
                full = self.store.get_run(t.run_id)
                if full is not None:
                    fail_orphan(
                        self.store, full, reason=f"its runner died (backfill {self.backfill_id}; server: {{orphans: fail}})"
                    )
                    self.store.backfills.finish_time(self.backfill_id, t.logical_time, run_id=t.run_id, status="failed", at=now)
                continue
            self._resume(t, t.run_id)

    def _start_more(self, backfill: Backfill) -> None:
        while len(self._mine) < backfill.max_active:
            run_id = new_run_id()
            claimed = self.store.backfills.claim_next(
                self.backfill_id, run_id=run_id, pid=self.pid, host=self.host, at=time.time()
            )
            if claimed is None:
                return
            self._begin(claimed, run_id)

    def _cancel_mine(self) -> None:
        for mine in self._mine.values():
            if not mine.cancel_sent:
                mine.cancel_sent = True
                self.store.request_cancel(mine.run_id, time.time())

    def _collect(self) -> None:
        for at, mine in list(self._mine.items()):
            if not mine.future.done():
                continue
            del self._mine[at]
            status = "failed"
            try:
                status = mine.future.result().status
            except BaseException as exc:  # a worker's failure is this time's, never the driver's
                run = self.store.get_run(mine.run_id, with_tasks=False)
                if run is not None and run.status in _RUN_FINAL:
                    status = run.status
                elif isinstance(exc, UsageError) and run is not None:
                    self.report(f"{self._iso(at)}: run {mine.run_id}: {exc}")
                    continue  # another process resumed it first: it records the end
                else:
                    self.report(f"{self._iso(at)}: run {mine.run_id} stopped: {type(exc).__name__}: {exc}")
            self.store.backfills.finish_time(self.backfill_id, at, run_id=mine.run_id, status=status, at=time.time())
            self.report(f"{self._iso(at)}: run {mine.run_id} {status}")

    # ------------------------------------------------------------------ the loop
    def run(self) -> Backfill:
        """Drive the backfill (it must be running) until it is done, paused or cancelled; answer it as stored then."""
        backfill = get_backfill(self.store, self.backfill_id)
        self._target = deployed_target(self.project, self.store, backfill.workflow, backfill.version)
        self._pool = ThreadPoolExecutor(max_workers=max(1, backfill.max_active) * 2, thread_name_prefix="flowstage-backfill")
        try:
            while True:
                if self._pause.is_set():
                    self._pause.clear()
                    if self.store.backfills.set_status(
                        self.backfill_id, BackfillStatus.PAUSED.value, expect=["running"], at=time.time()
                    ):
                        self.report(f"backfill {self.backfill_id} paused: waiting for {len(self._mine)} running run(s) to finish")
                backfill = get_backfill(self.store, self.backfill_id)
                self._reconcile(backfill)
                if backfill.status == BackfillStatus.RUNNING.value:
                    self._start_more(backfill)
                elif backfill.status == BackfillStatus.CANCELLED.value:
                    self._cancel_mine()
                self._collect()
                if not self._mine:
                    backfill = get_backfill(self.store, self.backfill_id)
                    if backfill.status == BackfillStatus.RUNNING.value and self.store.backfills.complete(
                        self.backfill_id, at=time.time()
                    ):
                        return get_backfill(self.store, self.backfill_id)
                    if backfill.status != BackfillStatus.RUNNING.value and not _others_running(backfill):
                        return backfill
                    if (
                        backfill.status == BackfillStatus.RUNNING.value
                        and backfill.counts.get(TIME_QUEUED)
                        and not _others_running(backfill)
                    ):
                        continue  # a time was freed between the claim and now: claim again at once
                    self._wake.wait(self.poll)
                    self._wake.clear()
                    continue
                self._wake.clear()
                wait([m.future for m in self._mine.values()], timeout=self.poll, return_when=FIRST_COMPLETED)
        finally:
            self._pool.shutdown(wait=not self._mine)


def _others_running(backfill: Backfill) -> bool:
    return any(t.status == TIME_RUNNING for t in backfill.times)


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def times_by_status(backfill: Backfill) -> dict[str, int]:
    """Counts by status in a stable order: queued, running, then the final ones."""
    order = [TIME_QUEUED, TIME_RUNNING, "succeeded", "failed", "timed_out", TIME_CANCELLED, TIME_SKIPPED]
    return {s: backfill.counts[s] for s in sorted(backfill.counts, key=lambda s: (order.index(s) if s in order else 99, s))}


def backfill_zone(store: RunStore, backfill: Backfill) -> str:
    """The time zone of the backfilled schedule (its version's trigger), in which its times are shown."""
    if backfill.version is None:
        return "UTC"
    kept = store.deployments.version(backfill.workflow, backfill.version)
    trigger = (kept.definition if kept is not None else {}).get("trigger") or {}
    return str(trigger.get("timezone") or "UTC")


def local_time(at: float, tz: str) -> str:
    """`at` as ISO 8601 in the zone `tz`."""
    return datetime.fromtimestamp(at, zone(tz)).isoformat()


def backfill_record(store: RunStore, backfill: Backfill, *, with_times: bool) -> dict[str, Any]:
    """A backfill as plain data, times in its schedule's zone: what `backfill show --json` and the API answer."""
    from flowstage.views.records import iso

    tz = backfill_zone(store, backfill)
    entry: dict[str, Any] = {
        "id": backfill.id,
        "workflow": backfill.workflow,
        "version": backfill.version,
        "from": local_time(backfill.start, tz),
        "to": local_time(backfill.end, tz),
        "timezone": tz,
        "max_active": backfill.max_active,
        "reprocess": backfill.reprocess,
        "status": backfill.status,
        "created_at": iso(backfill.created_at),
        "updated_at": iso(backfill.updated_at),
        "created_by": backfill.created_by,
        "total": backfill.total,
        "counts": times_by_status(backfill),
    }
    if with_times:
        entry["times"] = [
            {
                "logical_time": local_time(t.logical_time, tz),
                "status": t.status,
                "run_id": t.run_id,
                "prior_run_id": t.prior_run_id,
                "ended_at": iso(t.ended_at),
            }
            for t in backfill.times
        ]
    return entry


__all__ = [
    "MAX_TIMES",
    "BackfillDriver",
    "Target",
    "backfill_record",
    "backfill_zone",
    "cancel_backfill",
    "create_backfill",
    "decide",
    "deployed_target",
    "detach_backfill",
    "failed_times",
    "get_backfill",
    "local_time",
    "logical_times",
    "mark_running",
    "orphan_policy",
    "parse_time",
    "pause_backfill",
    "times_by_status",
]
