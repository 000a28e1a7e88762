"""The scheduler service: starts deployed workflows on their schedules and event triggers.

One loop (`Scheduler.serve`) wakes when the next schedule is due, when a run it started ends,
and at least once a `poll` interval to see new deployments and runs ended elsewhere. Each pass
(`Scheduler.tick`) decides with the pure rules of `engine.scheduling` what is due and claims
each start in the store; only a claimed fire starts a run, so two schedulers on one PostgreSQL
store start exactly one run per due time and per event (docs/adr/0004). A run is recorded with
its version and logical time and then driven in a worker thread: it is a normal run, shown by
`runs` and `show`, resumable if the scheduler dies under it. A scheduler made with `detached=True`
(the one inside `flowstage server`) instead starts each run in a runner process of its own
(`flowstage.app.detached`), so its runs outlive it.

Restarts are safe by construction: the last fired time of each schedule is in the store, so a
restarted scheduler never fires a time twice and applies `catch_up` to the time it was down; a
fire whose scheduler died before its run was recorded is taken over (compare-and-set) and its
run created under the run id the fire holds, which the runs table's key makes unique.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowstage.app.liveness import runner_alive
from flowstage.app.runs import BegunRun, begin_run, drive, new_run_id
from flowstage.engine.ports import Clock, SystemClock
from flowstage.engine.scheduling import STATUS_RULES, CronSchedule, due_times, event_fires, zone
from flowstage.errors import FlowstageError
from flowstage.model.workflow import AfterWorkflows, Workflow
from flowstage.settings import Project
from flowstage.stores.base import RunStore
from flowstage.stores.deployments import ActiveRun, Claim, DeploymentStore, Fire

logger = logging.getLogger(__name__)

#: a fire whose run was not recorded after this long is taken over (sooner when its scheduler is gone from this host)
ORPHAN_AFTER_SECONDS = 60.0
#: how often to look for such fires, and to re-read event triggers even when no run end was seen
SWEEP_SECONDS = 30.0
#: due times claimed in one transaction (a thousand schedules due at once take a few)
CLAIM_BATCH = 100
#: how far back before the oldest unconsumed run an event trigger keeps looking (late records, clock skew)
EVENT_LOOKBACK_SECONDS = 3600.0


class ScaledClock:
    """Wall time shifted by `offset` seconds, running `rate` times faster than real time after `origin`.

    For tests and benchmarks: processes given the same origin, rate and offset agree on the
    time, like real clocks do.
    """

    def __init__(self, *, origin: float, rate: float = 1.0, offset: float = 0.0) -> None:
        self.origin = origin
        self.rate = rate
        self.offset = offset

    def time(self) -> float:
        return self.origin + self.offset + (time.time() - self.origin) * self.rate

    def monotonic(self) -> float:
        return time.monotonic() * self.rate


@dataclass
class _Entry:
    """One deployed workflow with a trigger, as the scheduler follows it."""

    name: str
    version: int
    workflow: Workflow
    schedule: CronSchedule | None = None
    rule: AfterWorkflows | None = None
    since: float = 0.0  # schedules: the latest time fired (or the deployment of the schedule)
    next_at: float | None = None
    floor: float = float("-inf")  # event triggers: no run ended before this is left to consume

    @property
    def trigger_variables(self) -> dict[str, Any]:
        return dict(self.workflow.trigger.variables) if self.workflow.trigger else {}

    @property
    def expression(self) -> str:
        return self.schedule.expression if self.schedule else ""

    @property
    def max_active(self) -> int:
        return self.workflow.trigger.max_active_runs if self.workflow.trigger else 1

    @property
    def catch_up(self) -> bool:
        return bool(self.workflow.trigger and self.workflow.trigger.catch_up)


@dataclass
class Started:
    """A run this scheduler started."""

    workflow: str
    run_id: str
    logical_time: float
    kind: str
    version: int | None
    reason: str | None = None


@dataclass
class _Stats:
    started: int = 0
    taken: int = 0
    busy: int = 0
    failed: int = 0
    history: list[Started] = field(default_factory=list)
    #: how late the scheduled runs started (seconds after their due time): count, sum, the last
    lag_count: int = 0
    lag_sum: float = 0.0
    lag_last: float = 0.0

    def lagged(self, seconds: float) -> None:
        self.lag_count += 1
        self.lag_sum += seconds
        self.lag_last = seconds


class Scheduler:
    """Fires the schedules and event triggers of the workflows deployed in `store`."""

    def __init__(
        self,
        project: Project,
        *,
        store: RunStore,
        clock: Clock | None = None,
        workers: int = 16,
        poll: float = 1.0,
        executor: str | None = None,
        report: Callable[[str], None] | None = None,
        keep_history: bool = False,
        detached: bool = False,
    ) -> None:
        self.project = project
        self.store = store
        self.deployments: DeploymentStore = store.deployments
        self.clock: Clock = clock or SystemClock()
        self.rate = float(getattr(self.clock, "rate", 1.0))
        self.poll = poll
        self.executor = executor
        self.report = report or (lambda line: logger.info("%s", line))
        self.keep_history = keep_history
        self.detached = detached
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.stats = _Stats()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="flowstage-scheduled")
        self._running: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, str]] = []
        self._blocked: set[str] = set()
        self._stamp: tuple[Any, ...] | None = None
        self._checked = float("-inf")  # monotonic seconds of the last look at deployments
        self._ended_mark: float | None = None
        self._events_due = True
        self._last_sweep = float("-inf")

    # ------------------------------------------------------------------ deployments
    def refresh(self, *, force: bool = False) -> None:
        """Re-read the deployed workflows when a deploy or rollback happened since the last look."""
        stamp = self.deployments.stamp()
        if stamp == self._stamp and not force:
            return
        self._stamp = stamp
        last = self.deployments.last_fires()
        entries: dict[str, _Entry] = {}
        for deployed in self.deployments.workflows():
            trigger = (deployed.definition or {}).get("trigger") or {}
            if not trigger.get("schedule") and not trigger.get("after"):
                continue
            old = self._entries.get(deployed.name)
            if old is not None and old.version == deployed.current_version:
                workflow = old.workflow
            else:
                try:
                    workflow = Workflow.model_validate(deployed.definition)
                except ValueError as exc:
                    self.report(f"skipping {deployed.name} v{deployed.current_version}: invalid definition ({exc})")
                    continue
            assert workflow.trigger is not None
            entry = _Entry(deployed.name, deployed.current_version, workflow)
            if workflow.trigger.schedule:
                entry.schedule = CronSchedule(workflow.trigger.schedule, workflow.trigger.timezone)
                entry.since = max(last.get(deployed.name, float("-inf")), deployed.schedule_since or deployed.activated_at)
                entry.next_at = entry.schedule.next_after(entry.since)
            elif workflow.trigger.after is not None:
                entry.rule = workflow.trigger.after
                entry.since = deployed.event_since or deployed.activated_at
            entries[deployed.name] = entry
        self._entries = entries
        self._heap = [(e.next_at, e.name) for e in entries.values() if e.next_at is not None]
        heapq.heapify(self._heap)
        self._blocked = set()
        self._events_due = True

    @property
    def schedules(self) -> int:
        return sum(1 for e in self._entries.values() if e.schedule is not None)

    @property
    def event_triggers(self) -> int:
        return sum(1 for e in self._entries.values() if e.rule is not None)

    def next_due(self) -> float | None:
        """The logical time of the next schedule due (None without schedules)."""
        return self._heap[0][0] if self._heap else None

    # ------------------------------------------------------------------ one pass
    def tick(self) -> list[Started]:
        """Start everything due now; answer the runs started."""
        started: list[Started] = []
        mono = time.monotonic()
        if mono - self._checked >= self.poll or self._stamp is None:
            self._checked = mono
            self.refresh()
            mark = self.deployments.latest_end() if self.event_triggers else None
            if mark != self._ended_mark:
                self._ended_mark = mark
                self._events_due = True
        if mono - self._last_sweep >= SWEEP_SECONDS:
            self._last_sweep = mono
            self._events_due = True
            started += self._recover_orphans()
        now = self.clock.time()
        started += self._fire_schedules(now)
        if self._events_due and self.event_triggers:
            self._events_due = False
            started += self._fire_events(now)
        return started

    def _fire_schedules(self, now: float) -> list[Started]:
        # workflows held back by max_active_runs are looked at again on every pass (a run ending wakes the loop)
        for name in self._blocked:
            heapq.heappush(self._heap, (now, name))
        self._blocked.clear()
        due: list[tuple[_Entry, float]] = []
        touched: dict[str, _Entry] = {}
        while self._heap and self._heap[0][0] <= now:
            _, name = heapq.heappop(self._heap)
            entry = self._entries.get(name)
            if entry is None or entry.schedule is None or name in touched:
                continue
            touched[name] = entry
            due += [(entry, at) for at in due_times(entry.schedule, since=entry.since, now=now, catch_up=entry.catch_up)]
        started: list[Started] = []
        for i in range(0, len(due), CLAIM_BATCH):
            started += self._claim_and_launch(due[i : i + CLAIM_BATCH])
        for name, entry in touched.items():
            if name in self._blocked:
                continue
            assert entry.schedule is not None
            entry.next_at = entry.schedule.next_after(entry.since)
            if entry.next_at is not None:
                heapq.heappush(self._heap, (entry.next_at, name))
        return started

    def _claim_and_launch(self, due: list[tuple[_Entry, float]]) -> list[Started]:
        """Claim a batch of due times in one transaction, then record and launch the claimed runs."""
        fires = [self._fire(entry, at, kind="schedule", reason=f"schedule {entry.expression}") for entry, at in due]
        claims = self.deployments.claim_fires(
            [(f, e.max_active) for f, (e, _) in zip(fires, due, strict=True)], alive=self._alive
        )
        started: list[Started] = []
        taken: set[str] = set()
        for (entry, at), fire, claim in zip(due, fires, claims, strict=True):
            if claim is Claim.BUSY:
                self.stats.busy += 1
                self._blocked.add(entry.name)
            elif claim is Claim.TAKEN:
                self.stats.taken += 1
                taken.add(entry.name)
            else:
                entry.since = max(entry.since, at)
                run = self._launch(entry.workflow, fire)
                if run is not None:
                    started.append(run)
        for name in taken:  # another scheduler fired these (or later times): go on from its latest
            entry = self._entries[name]
            entry.since = max(entry.since, self.deployments.last_fire(name) or entry.since)
        return started

    def _fire_events(self, now: float) -> list[Started]:
        started: list[Started] = []
        for entry in list(self._entries.values()):
            if entry.rule is None:
                continue
            runs = self.deployments.pending_events(
                entry.name,
                watched=entry.rule.workflows,
                statuses=sorted(STATUS_RULES[entry.rule.status]),
                since=max(entry.since, entry.floor),
            )
            consumed: set[str] = set()
            for fire in event_fires(entry.rule, runs):
                claim, run = self._start(
                    entry, fire.logical_time, kind="event", reason=f"after {fire.reason}", consumed=list(fire.consumed)
                )
                if claim is Claim.BUSY:
                    break
                consumed.update(fire.consumed)
                if run is not None:
                    started.append(run)
            # Later passes need not look further back than the oldest run left unconsumed, less a
            # margin for runs recorded late or by a runner whose clock is behind.
            left = [r.ended_at for r in runs if r.id not in consumed]
            if runs:
                entry.floor = max(entry.floor, (min(left) if left else max(r.ended_at for r in runs)) - EVENT_LOOKBACK_SECONDS)
        return started

    def _alive(self, run: ActiveRun) -> bool:
        """A run counts against `max_active_runs` while its driver beats (or waits for a worker thread)."""
        with self._lock:
            future = self._running.get(run.id)
        if future is not None and not future.running() and not future.done():
            return True  # recorded, queued for a worker thread: its driver has not begun to beat
        if future is not None and self.detached and not future.done():
            return True  # its runner process is being started and has not recorded the run yet
        return runner_alive(run)

    def _fire(self, entry: _Entry, logical_time: float, *, kind: str, reason: str, consumed: list[str] | None = None) -> Fire:
        return Fire(
            workflow=entry.name,
            logical_time=logical_time,
            kind=kind,
            version=entry.version,
            run_id=new_run_id(),
            fired_at=time.time(),
            fired_pid=self.pid,
            fired_host=self.host,
            reason=reason,
            consumed=consumed or [],
        )

    def _start(
        self,
        entry: _Entry,
        logical_time: float,
        *,
        kind: str,
        reason: str,
        consumed: list[str] | None = None,
    ) -> tuple[Claim, Started | None]:
        fire = self._fire(entry, logical_time, kind=kind, reason=reason, consumed=consumed)
        claim = self.deployments.claim_fire(fire, max_active=entry.max_active, alive=self._alive)
        if claim is Claim.TAKEN:
            self.stats.taken += 1
            return claim, None
        if claim is Claim.BUSY:
            self.stats.busy += 1
            return claim, None
        return claim, self._launch(entry.workflow, fire)

    def _launch(self, workflow: Workflow, fire: Fire) -> Started | None:
        """Record the run of a claimed fire and drive it in a worker thread (or in a runner process, detached)."""
        label = "scheduled" if fire.kind == "schedule" else "triggered"
        if self.detached:
            return self._launch_detached(workflow, fire, label)
        try:
            begun = begin_run(
                self.project,
                workflow,
                store=self.store,
                variables=dict(workflow.trigger.variables) if workflow.trigger else {},
                version=fire.version,
                source=f"{workflow.name} v{fire.version} ({label})",
                executor=self.executor,
                logical_time=fire.logical_time,
                run_id=fire.run_id,
            )
        except FlowstageError as exc:
            self.stats.failed += 1
            self.report(f"{workflow.name}: could not start the run of {_iso(fire.logical_time, workflow)}: {exc}")
            return None
        started = Started(workflow.name, fire.run_id, fire.logical_time, fire.kind, fire.version, fire.reason)
        self.stats.started += 1
        if fire.kind == "schedule":
            self.stats.lagged(max(0.0, self.clock.time() - fire.logical_time))
        if self.keep_history:
            self.stats.history.append(started)
        self.report(f"{workflow.name} v{fire.version}: run {fire.run_id} {label} for {_iso(fire.logical_time, workflow)}")
        with self._lock:
            self._running[fire.run_id] = self._pool.submit(self._drive, begun)
        return started

    def _launch_detached(self, workflow: Workflow, fire: Fire, label: str) -> Started:
        """Start the run of a claimed fire in a runner process of its own (from a worker thread)."""
        started = Started(workflow.name, fire.run_id, fire.logical_time, fire.kind, fire.version, fire.reason)
        self.stats.started += 1
        if fire.kind == "schedule":
            self.stats.lagged(max(0.0, self.clock.time() - fire.logical_time))
        if self.keep_history:
            self.stats.history.append(started)
        with self._lock:
            self._running[fire.run_id] = self._pool.submit(self._detach, workflow, fire, label)
        return started

    def _detach(self, workflow: Workflow, fire: Fire, label: str) -> None:
        from flowstage.app.detached import detach_run

        try:
            detach_run(
                self.project,
                workflow.name,
                variables=dict(workflow.trigger.variables) if workflow.trigger else {},
                version=fire.version,
                executor=self.executor,
                run_id=fire.run_id,
                logical_time=fire.logical_time,
                source=f"{workflow.name} v{fire.version} ({label})",
            )
            self.report(f"{workflow.name} v{fire.version}: run {fire.run_id} {label} for {_iso(fire.logical_time, workflow)}")
        except BaseException as exc:  # a worker thread must never die silently
            self.stats.failed += 1
            self.report(f"{workflow.name}: could not start the run of {_iso(fire.logical_time, workflow)}: {exc}")
        finally:
            with self._lock:
                self._running.pop(fire.run_id, None)
            self._wake.set()

    def _drive(self, begun: BegunRun) -> None:
        try:
            run = drive(begun)
            self.report(f"{run.workflow}: run {run.id} {run.status}")
        except BaseException as exc:  # a worker thread must never die silently
            self.report(f"run {begun.id} stopped: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.pop(begun.id, None)
            self._events_due = True
            self._wake.set()

    def _recover_orphans(self) -> list[Started]:
        """Start the runs of fires whose scheduler died between the fire and the run's record."""
        started: list[Started] = []
        real = time.time()
        for fire in self.deployments.orphan_fires(since=real - 86_400.0):
            gone = fire.fired_host == self.host and fire.fired_pid is not None and not _pid_alive(fire.fired_pid)
            if not gone and real - fire.fired_at < ORPHAN_AFTER_SECONDS:
                continue
            entry = self._entries.get(fire.workflow)
            workflow = entry.workflow if entry is not None else None
            if fire.version is not None:
                version = self.deployments.version(fire.workflow, fire.version)
                if version is not None:
                    workflow = Workflow.model_validate(version.definition)
            if workflow is None or not self.deployments.take_over(fire, at=real, pid=self.pid, host=self.host):
                continue
            run = self._launch(workflow, fire)
            if run is not None:
                started.append(run)
        return started

    # ------------------------------------------------------------------ the loop
    def serve(self, *, once: bool = False) -> None:
        """Run passes until `stop()` (or after one pass and its runs with `once`)."""
        self.refresh(force=True)
        self.report(f"scheduler started (pid {self.pid}): {self.schedules} schedule(s), {self.event_triggers} event trigger(s)")
        while not self._stopping.is_set():
            try:
                self.tick()
            except FlowstageError as exc:
                self.report(f"scheduler: {exc}; retrying")
            if once:
                self.wait_idle()
                if self._events_due and self.event_triggers:
                    continue  # runs that just ended may trigger others
                return
            self._wake.clear()
            self._wake.wait(self._sleep_seconds())

    def _sleep_seconds(self) -> float:
        """Real seconds until the next schedule is due, at most one poll interval."""
        wait = self.poll
        due = self.next_due()
        if due is not None:
            wait = min(wait, max(0.0, (due - self.clock.time()) / self.rate))
        return max(0.001, wait)

    def stop(self) -> None:
        """Ask `serve` to return (safe from a signal handler)."""
        self._stopping.set()
        self._wake.set()

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for the runs this scheduler started; True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                futures = list(self._running.values())
            if not futures:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            for f in futures:
                try:
                    f.result(timeout=left)
                except TimeoutError:
                    return False
                except Exception:  # reported by _drive
                    pass

    def shutdown(self, *, grace: float = 10.0) -> list[str]:
        """Let running runs finish for `grace` seconds, then cancel the rest (resumable); answer those."""
        cancelled: list[str] = []
        if self.detached:  # what is left are runner processes being started: their runs are theirs
            self.wait_idle(grace)
        elif not self.wait_idle(grace):
            for run_id in self.running():
                if self.store.request_cancel(run_id, time.time()):
                    cancelled.append(run_id)
            self.wait_idle(15.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        return cancelled


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _iso(at: float, workflow: Workflow) -> str:
    tz = zone(workflow.trigger.timezone) if workflow.trigger else zone("UTC")
    return datetime.fromtimestamp(at, tz).isoformat()


__all__ = ["ScaledClock", "Scheduler", "Started"]
