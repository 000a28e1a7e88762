"""Live events: `GET /runs/{id}/events` and `GET /events` as server-sent events fed by the event log.

A stream opens with a snapshot (the run record with its dynamic graph; for `/events`, the runs
still running), then sends each recorded change as it comes: its SSE `id:` is the event's cursor
in the log, so a client that reconnects with `Last-Event-ID` (or `?after=`) gets exactly the
events after the last one it saw — none lost, none repeated — and no snapshot. A `: ping` comment
keeps an idle stream open every 15 s; a run's stream ends after the run's final event.

The events come from the server's `EventHub` (api/hub.py): one thread waits on the store
(LISTEN/NOTIFY on PostgreSQL, short polling on SQLite), reads each new event once and renders its
frame once for every subscriber, so a change reaches a hundred subscribers within a few tens of
milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from flowstage.api.auth import require
from flowstage.api.context import ApiContext, context, masked
from flowstage.api.models import BIGINT_MAX
from flowstage.api.problems import ApiProblem, problem_responses
from flowstage.engine.ports import Event
from flowstage.engine.projection import RUN_FINISHED
from flowstage.views.records import iso

router = APIRouter(tags=["events"])

Ctx = Annotated[ApiContext, Depends(context)]
PING_SECONDS = 15.0
PAGE = 500
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _frame(event_id: int | None, kind: str, data: Any) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


def _event_data(scrub: Callable[[str], str], event: Event) -> Any:
    data = {
        "run_id": event.run_id,
        "at": iso(event.at),
        "kind": event.kind,
        "task": event.task,
        "status": event.status,
        "data": event.data,
    }
    return masked(scrub, data)


def renderer(scrub: Callable[[str], str]) -> Callable[[int, Event], str]:
    """How the hub renders an event's frame (masked like every answer)."""
    return lambda event_id, event: _frame(event_id, event.kind, _event_data(scrub, event))


def _cursor(last_event_id: str | None, after: int | None) -> int | None:
    """Where a reconnecting client stands (None: a new subscriber, who gets a snapshot first)."""
    if after is not None:
        return after
    if last_event_id is None or not last_event_id.strip():
        return None
    try:
        value = int(last_event_id.strip())
    except ValueError:
        raise ApiProblem(422, f"header Last-Event-ID: not an event id: {last_event_id[:40]!r}") from None
    if not 0 <= value <= BIGINT_MAX:
        raise ApiProblem(422, "header Last-Event-ID: not an event id")
    return value


async def _follow(request: Request, ctx: ApiContext, cursor: int, run_id: str | None) -> AsyncIterator[str]:
    """Every event after `cursor` (of one run), as it comes, until the run ends or the client leaves.

    Events come from the server's hub (read once for every subscriber); a cursor older than what
    the hub holds reads the store until it has caught up.
    """
    store, hub = ctx.store, ctx.hub
    position = cursor  # every event (of the run) up to here was sent
    looked = False
    while True:
        held = hub.read(position, run_id)
        if held is not None:
            frames, reached = [(h.id, h.event.kind, h.frame) for h in held[0]], held[1]
        else:
            base = hub.base
            events = await run_in_threadpool(store.events_after, position, run_id=run_id, limit=PAGE)
            frames = [(i, e.kind, _frame(i, e.kind, _event_data(ctx.scrub, e))) for i, e in events]
            # nothing of the run after `position` in the store: nothing of it up to the hub's base either
            reached = frames[-1][0] if len(frames) == PAGE else max(position, base, frames[-1][0] if frames else 0)
        for _, kind, frame in frames:
            yield frame
            if run_id is not None and kind == RUN_FINISHED:
                return
        position = reached
        if len(frames) == PAGE:
            continue
        if await request.is_disconnected():
            return
        if run_id is not None and not looked:
            looked = True
            if await run_in_threadpool(_ended, store, run_id, position):
                return  # the run ended before this stream caught up with it
        if not await hub.wait(position, PING_SECONDS):
            yield ": ping\n\n"
            looked = False  # a quiet stream looks again whether its run ended unseen


def _ended(store: Any, run_id: str, cursor: int) -> bool:
    """Whether run `run_id` is final and nothing of it comes after `cursor`."""
    run = store.get_run(run_id, with_tasks=False)
    return run is None or (run.status != "running" and not store.events_after(cursor, run_id=run_id, limit=1))


def _stream(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get(
    "/runs/{run_id}/events",
    responses={**problem_responses(404, 422), 200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
    response_class=StreamingResponse,
    dependencies=[Depends(require("viewer"))],
)
async def run_events(
    run_id: str,
    request: Request,
    ctx: Ctx,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
    after: Annotated[int | None, Query(ge=0, le=BIGINT_MAX, description="the last event id seen (as Last-Event-ID)")] = None,
) -> StreamingResponse:
    """One run's changes as server-sent events: a snapshot first, then each change; it ends with the run."""
    from flowstage.api.runs import get_run

    run = await run_in_threadpool(ctx.store.get_run, run_id, with_tasks=False)
    if run is None:
        raise ApiProblem(404, f"no run {run_id!r}")
    cursor = _cursor(last_event_id, after)

    async def body() -> AsyncIterator[str]:
        start = cursor
        if start is None:
            # the cursor before the snapshot: a change made meanwhile is sent again, never lost
            start = await run_in_threadpool(ctx.store.last_event_id, run_id)
            record = await run_in_threadpool(get_run, run_id, ctx)
            yield _frame(start, "snapshot", record)
        async for frame in _follow(request, ctx, start, run_id):
            yield frame

    return _stream(body())


@router.get(
    "/events",
    responses={**problem_responses(422), 200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
    response_class=StreamingResponse,
    dependencies=[Depends(require("viewer"))],
)
async def all_events(
    request: Request,
    ctx: Ctx,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
    after: Annotated[int | None, Query(ge=0, le=BIGINT_MAX, description="the last event id seen (as Last-Event-ID)")] = None,
) -> StreamingResponse:
    """Every run's changes as server-sent events (for dashboards): the running runs first, then each change."""
    from flowstage.app.liveness import effective_status
    from flowstage.views.records import run_summary

    cursor = _cursor(last_event_id, after)

    async def body() -> AsyncIterator[str]:
        start = cursor
        if start is None:
            start = await run_in_threadpool(ctx.store.last_event_id, None)
            running = await run_in_threadpool(ctx.store.list_runs, statuses=["running"], limit=1000)
            yield _frame(start, "snapshot", ctx.masked({"runs": [run_summary(r, effective_status(r)) for r in running]}))
        async for frame in _follow(request, ctx, start, None):
            yield frame

    return _stream(body())


__all__ = ["renderer", "router"]
