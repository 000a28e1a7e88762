"""`/metrics`: the server in the Prometheus text format, computed when it is scraped.

- `flowstage_runs{workflow, status}`: runs by workflow and shown status (a run whose runner is
  gone counts as `interrupted`), over the newest `RUNS_BOUND` runs of the store;
- `flowstage_scheduler_starts_total` and `flowstage_scheduler_fires_total{outcome}`: what the
  scheduler inside this server started, and what became of the due times it claimed;
- `flowstage_server_uptime_seconds`.

Each scrape fills a registry of its own, never the process-wide one of `prometheus_client`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from flowstage.api.auth import require
from flowstage.api.context import ApiContext, context

#: the newest runs counted by `flowstage_runs` (older ones are not read at scrape time)
RUNS_BOUND = 10_000

router = APIRouter(tags=["metrics"])

Ctx = Annotated[ApiContext, Depends(context)]


class _Collector:
    """The metrics of one scrape, read from the store and the app's state."""

    def __init__(self, ctx: ApiContext, state: Any) -> None:
        self.ctx = ctx
        self.state = state

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
    return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


__all__ = ["RUNS_BOUND", "router"]
