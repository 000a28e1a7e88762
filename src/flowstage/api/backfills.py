"""`/backfills`: list and show backfills, start one for a deployed workflow, pause, resume, cancel.

A backfill started or resumed here is driven by a process of its own (``flowstage backfill resume
ID``, see `flowstage.app.backfills.detach_backfill`), so a server restart neither stops nor loses it.
Viewers read; operators start, pause, resume and cancel, as for runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field

from flowstage.api.auth import require
from flowstage.api.context import ApiContext, context
from flowstage.api.models import Answer
from flowstage.api.problems import ApiProblem, from_flowstage, problem_responses
from flowstage.errors import FlowstageError, NotFoundError
from flowstage.stores.backfills import Backfill

router = APIRouter(tags=["backfills"])

Ctx = Annotated[ApiContext, Depends(context)]
Name = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]*$", max_length=200, description="a workflow name")]
BackfillIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]+$", max_length=200, description="a backfill id")]


class BackfillTimeEntry(Answer):
    logical_time: str = Field(description="ISO 8601, in the schedule's time zone")
    status: str = Field(description="queued, running, skipped, or the final status of its run")
    run_id: str | None
    prior_run_id: str | None = Field(description="the earlier run that made a skipped time skipped")
    ended_at: str | None


class BackfillEntry(Answer):
    id: str
    workflow: str
    version: int | None
    from_: str = Field(alias="from")
    to: str
    timezone: str
    max_active: int
    reprocess: str
    status: Literal["queued", "running", "paused", "cancelled", "done"]
    created_at: str
    updated_at: str
    created_by: str | None
    total: int
    counts: dict[str, int]
    times: list[BackfillTimeEntry] | None = None


class BackfillRequest(Answer):
    from_: str = Field(alias="from", max_length=100, description="the first logical time (ISO date or time)")
    to: str = Field(max_length=100, description="the last logical time, included")
    max_active: int | None = Field(
        default=None, ge=1, le=10_000, description="runs at once (default: the trigger's max_active_runs)"
    )
    reprocess: Literal["none", "failed", "all"] = "none"


def _entry(ctx: ApiContext, backfill: Backfill, *, with_times: bool) -> dict[str, Any]:
    from flowstage.app.backfills import backfill_record

    return backfill_record(ctx.store, backfill, with_times=with_times)


def _get(ctx: ApiContext, backfill_id: str) -> Backfill:
    found = ctx.store.backfills.get(backfill_id)
    if found is None:
        raise ApiProblem(404, f"no backfill {backfill_id!r}")
    return found


@router.get(
    "/backfills",
    response_model=list[BackfillEntry],
    response_model_exclude_none=True,
    responses=problem_responses(422),
    dependencies=[Depends(require("viewer"))],
)
def list_backfills(ctx: Ctx, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Any]:
    """Backfills, newest first, with their counts by status."""
    return [_entry(ctx, b, with_times=False) for b in ctx.store.backfills.list(limit=limit)]


@router.get(
    "/backfills/{backfill_id}",
    response_model=BackfillEntry,
    responses=problem_responses(404, 422),
    dependencies=[Depends(require("viewer"))],
)
def get_backfill(backfill_id: BackfillIdPath, ctx: Ctx) -> dict[str, Any]:
    """A backfill: range, status, counts by status, and each logical time with its run id and status."""
    return _entry(ctx, _get(ctx, backfill_id), with_times=True)


@router.post(
    "/workflows/{name}/backfills",
    response_model=BackfillEntry,
    status_code=202,
    responses=problem_responses(400, 404, 422, 500),
    dependencies=[Depends(require("operator"))],
)
def start_backfill(name: Name, body: BackfillRequest, ctx: Ctx) -> dict[str, Any]:
    """Backfill the deployed workflow `name` over [from, to]; it is driven by a process of its own.

    Answers 202 with the backfill as recorded (its times queued or skipped); follow it with
    `GET /backfills/{id}`. A workflow without a schedule, a time that does not parse or a range
    with no logical time is 422; an unknown workflow 404.
    """
    from flowstage.app.backfills import create_backfill, detach_backfill

    try:
        backfill = create_backfill(
            ctx.project, ctx.store, name, start=body.from_, end=body.to, max_active=body.max_active, reprocess=body.reprocess
        )
        detach_backfill(ctx.project, backfill.id)
    except NotFoundError as exc:
        raise ApiProblem(404, str(exc)) from None
    except FlowstageError as exc:
        raise from_flowstage(exc) from None
    return _entry(ctx, backfill, with_times=True)


@router.post(
    "/backfills/{backfill_id}/pause",
    response_model=BackfillEntry,
    responses=problem_responses(404, 409, 422),
    dependencies=[Depends(require("operator"))],
)
def pause(backfill_id: BackfillIdPath, ctx: Ctx) -> dict[str, Any]:
    """No new run of the backfill starts; the running ones finish (409 when it is done or cancelled)."""
    from flowstage.app.backfills import pause_backfill

    _get(ctx, backfill_id)
    try:
        return _entry(ctx, pause_backfill(ctx.store, backfill_id), with_times=False)
    except FlowstageError as exc:
        raise from_flowstage(exc, conflict=True) from None


@router.post(
    "/backfills/{backfill_id}/resume",
    response_model=BackfillEntry,
    status_code=202,
    responses=problem_responses(404, 409, 422),
    dependencies=[Depends(require("operator"))],
)
def resume(backfill_id: BackfillIdPath, ctx: Ctx) -> dict[str, Any]:
    """Continue a paused (or killed) backfill in a process of its own (409 when it is done or cancelled)."""
    from flowstage.app.backfills import detach_backfill, mark_running

    _get(ctx, backfill_id)
    try:
        backfill = mark_running(ctx.store, backfill_id)
        detach_backfill(ctx.project, backfill_id)
    except FlowstageError as exc:
        raise from_flowstage(exc, conflict=True) from None
    return _entry(ctx, backfill, with_times=False)


@router.post(
    "/backfills/{backfill_id}/cancel",
    response_model=BackfillEntry,
    status_code=202,
    responses=problem_responses(404, 409, 422),
    dependencies=[Depends(require("operator"))],
)
def cancel(backfill_id: BackfillIdPath, ctx: Ctx) -> dict[str, Any]:
    """No new run starts, the queued times are cancelled and the running runs asked to stop (409 when it ended).

    Answers at once; runs still stopping show `running` until their runner has stopped them.
    """
    from flowstage.app.backfills import cancel_backfill

    _get(ctx, backfill_id)
    try:
        return _entry(ctx, cancel_backfill(ctx.store, backfill_id, wait_seconds=0), with_times=False)
    except FlowstageError as exc:
        raise from_flowstage(exc, conflict=True) from None


__all__ = ["router"]
