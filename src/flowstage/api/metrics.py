"""`/metrics`: the server in the Prometheus text format, computed when it is scraped.

- `flowstage_runs{workflow, status}`: runs by workflow and shown status (a run whose runner is
  gone counts as `interrupted`), over the newest `RUNS_BOUND` runs of the store;
- `flowstage_scheduler_starts_total` and `flowstage_scheduler_fires_total{outcome}`: what the
  scheduler inside this server started, and what became of the due times it claimed;
- `flowstage_scheduler_lag_seconds` (a summary: count and sum) and
  `flowstage_scheduler_last_lag_seconds`: how late after their due time scheduled runs started;
- from the events this server read since it started (`EventMetrics`, fed by the event hub, so
  runs of every runner process count): `flowstage_events_total` (its rate is events per
  second), `flowstage_task_attempts_total{workflow}`, and the histograms
  `flowstage_run_duration_seconds{workflow, status}` and
  `flowstage_task_duration_seconds{workflow, status}`, and `flowstage_alerts_total{workflow, notifier}`;
- `flowstage_server_uptime_seconds`.

Each server keeps a registry of its own, never the process-wide one of `prometheus_client`.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from flowstage.api.auth import require
from flowstage.api.context import ApiContext, context

#: the newest runs counted by `flowstage_runs` (older ones are not read at scrape time)
RUNS_BOUND = 10_000
#: seconds: from a no-op task to a six-hour run
DURATION_BUCKETS = (0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
#: runs whose workflow is remembered (events name their run, the metrics its workflow)
WORKFLOWS_KEPT = 4096
FINAL_TASK = frozenset({"succeeded", "failed", "timed_out", "cancelled"})


class EventMetrics:
    """Counters and histograms of what the event log tells, one registry per server."""

    def __init__(self, store: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.store = store
        self.registry = CollectorRegistry(auto_describe=False)
        self.events = Counter(
            "flowstage_events", "Events read from the event log since this server started.", registry=self.registry
        )
        self.attempts = Counter(
            "flowstage_task_attempts", "Task attempts started, by workflow.", ["workflow"], registry=self.registry
        )
        self.run_seconds = Histogram(
            "flowstage_run_duration_seconds",
            "Duration of the runs that ended.",
            ["workflow", "status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.task_seconds = Histogram(
            "flowstage_task_duration_seconds",
            "Duration of the tasks that ended (their last attempt).",
            ["workflow", "status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.alerts = Counter(
            "flowstage_alerts",
            "Alerts fired, by workflow and notifier (suppressed ones included).",
            ["workflow", "notifier"],
            registry=self.registry,
        )
        self._runs: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def _run(self, run_id: str) -> tuple[str, float] | None:
        found = self._runs.get(run_id)
        if found is None:
            run = self.store.get_run(run_id, with_tasks=False)
            if run is None:
                return None
            found = (run.workflow, run.started_at)
            self._runs[run_id] = found
            while len(self._runs) > WORKFLOWS_KEPT:
                self._runs.popitem(last=False)
        return found

    def observe(self, event: Any) -> None:
        """Count one event (on the hub's thread)."""
        self.events.inc()
        if event.kind not in ("task_status", "run_finished", "alert_fired"):
            return
        run = self._run(event.run_id)
        if run is None:
            return
        workflow, started_at = run
        data = event.data or {}
        if event.kind == "alert_fired":
            self.alerts.labels(workflow, str(data.get("notifier", "?"))).inc()
            return
        if event.kind == "run_finished":
            self.run_seconds.labels(workflow, str(event.status)).observe(max(0.0, event.at - started_at))
            self._runs.pop(event.run_id, None)
            return
        if "attempt_started" in data:
            self.attempts.labels(workflow).inc()
        if event.status in FINAL_TASK:
            seconds = ((data.get("set") or {}).get("metrics") or {}).get("runtime_seconds")
            if isinstance(seconds, int | float):
                self.task_seconds.labels(workflow, str(event.status)).observe(float(seconds))


router = APIRouter(tags=["metrics"])

Ctx = Annotated[ApiContext, Depends(context)]


class _Collector:
    """The metrics of one scrape, read from the store and the app's state."""

    def __init__(self, ctx: ApiContext, state: Any) -> None:
        self.ctx = ctx
        self.state = state

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        from flowstage.app.liveness import effective_status

        now = time.time()
        counts = Counter((run.workflow, effective_status(run, now)) for run in self.ctx.store.list_runs(limit=RUNS_BOUND))
        runs = GaugeMetricFamily(
            "flowstage_runs", f"Runs by workflow and status (the newest {RUNS_BOUND} runs).", labels=["workflow", "status"]
        )
        for (workflow, status), n in sorted(counts.items()):
            runs.add_metric([workflow, status], n)
        yield runs

        scheduler = getattr(self.state, "scheduler", None)
        if scheduler is not None:
            stats = scheduler.stats
            starts = CounterMetricFamily("flowstage_scheduler_starts", "Runs the scheduler of this server started.")
            starts.add_metric([], stats.started)
            yield starts
            fires = CounterMetricFamily(
                "flowstage_scheduler_fires",
                "Due times and events the scheduler of this server handled, by outcome "
                "(started; taken by another scheduler; busy at max_active_runs; failed to start).",
                labels=["outcome"],
            )
            for outcome, n in (
                ("started", stats.started),
                ("taken", stats.taken),
                ("busy", stats.busy),
                ("failed", stats.failed),
            ):
                fires.add_metric([outcome], n)
            yield fires
            lag = SummaryMetricFamily(
                "flowstage_scheduler_lag_seconds", "How late after their due time the scheduled runs started."
            )
            lag.add_metric([], stats.lag_count, stats.lag_sum)
            yield lag
            last = GaugeMetricFamily("flowstage_scheduler_last_lag_seconds", "How late the last scheduled run started.")
            last.add_metric([], stats.lag_last)
            yield last

        started = getattr(self.state, "started_monotonic", None)
        if started is not None:
            uptime = GaugeMetricFamily("flowstage_server_uptime_seconds", "Seconds since this server started.")
            uptime.add_metric([], time.monotonic() - started)
            yield uptime


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "The Prometheus text format."}},
    dependencies=[Depends(require("viewer"))],
)
def metrics(request: Request, ctx: Ctx) -> Response:
    """Runs by workflow and status, the scheduler's counters and the uptime, in the Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(ctx, request.app.state))
    body = generate_latest(registry)
    observed = getattr(request.app.state, "event_metrics", None)
    if observed is not None:
        body += generate_latest(observed.registry)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)


__all__ = ["RUNS_BOUND", "EventMetrics", "router"]
