"""`/runs`: the run history by cursor, a run's record with its dynamic graph, resume, cancel, logs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from flowstage.api import models
from flowstage.api.auth import require
from flowstage.api.context import ApiContext, context
from flowstage.api.paging import decode_cursor, runs_page
from flowstage.api.problems import ApiProblem, from_flowstage, problem_responses
from flowstage.errors import FlowstageError
from flowstage.logging import LEVELS, level_name
from flowstage.model.statuses import RunStatus
from flowstage.stores.base import StoredRun
from flowstage.views.records import iso

router = APIRouter(tags=["runs"])

Ctx = Annotated[ApiContext, Depends(context)]
RunIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]+$", max_length=200, description="a run id")]
RunStatusName = Literal["running", "succeeded", "failed", "cancelled", "timed_out", "interrupted"]
LevelName = Literal["debug", "info", "notice", "warning", "error", "critical"]

assert set(RunStatusName.__args__) == {s.value for s in RunStatus}, "RunStatusName follows RunStatus"  # type: ignore[attr-defined]
assert set(LevelName.__args__) == set(LEVELS), "LevelName follows the log levels"  # type: ignore[attr-defined]


def _run(ctx: ApiContext, run_id: str) -> StoredRun:
    run = ctx.store.get_run(run_id)
    if run is None:
        raise ApiProblem(404, f"no run {run_id!r}")
    return run


@router.get("/runs", response_model=models.RunPage, responses=problem_responses(422), dependencies=[Depends(require("viewer"))])
def list_runs(
    request: Request,
    ctx: Ctx,
    workflow: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[list[RunStatusName] | None, Query(description="only runs with this status (repeatable)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=500, description="the `next` page's cursor")] = None,
) -> dict[str, Any]:
    """Run history, newest first, one page at a time; `next` is the URL of the page after this one."""
    from flowstage.views.records import run_summary

    try:
        key = decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise ApiProblem(422, f"query cursor: {exc}") from None
    page = runs_page(ctx.store, workflow=workflow, statuses=status or [], limit=limit, cursor=key)
    following = str(request.url.include_query_params(cursor=page.cursor)) if page.cursor else None
    return {"items": [run_summary(run, shown) for run, shown in page.runs], "next": following}


@router.get(
    "/runs/{run_id}",
    response_model=models.RunRecord,
    responses={**problem_responses(404, 422), 304: {"description": "unchanged since the ETag given in If-None-Match"}},
    dependencies=[Depends(require("viewer"))],
)
def get_run_route(
    run_id: RunIdPath,
    ctx: Ctx,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """The run record (SPEC §5.1) with the dynamic graph: each node's status.

    Its `ETag` changes with each change of the run, so a client polling with `If-None-Match`
    gets `304 Not Modified` until something happened; the answer of an unchanged run is kept
    and sent again without being rebuilt.
    """
    from flowstage.app.liveness import effective_status

    # one look, before the record is read: a change made meanwhile gives the next request a new
    # tag, never an old body under a new tag
    head = ctx.store.run_head(run_id)
    if head is None:
        raise ApiProblem(404, f"no run {run_id!r}")
    tag = f'W/"{head.newest_event}-{effective_status(head)}-{head.resumes}-{head.ended_at or 0}"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if if_none_match is not None and tag in (t.strip() for t in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    body = ctx.answers.get(tag, run_id)
    if body is None:
        body = models.RunRecord.model_validate(get_run(run_id, ctx)).model_dump_json(by_alias=True).encode()
        ctx.answers.put(tag, run_id, body)
    return Response(body, media_type="application/json", headers=headers)


def get_run(run_id: str, ctx: ApiContext) -> dict[str, Any]:
    """The run record with its dynamic graph, masked (the answer of `GET /runs/{id}` and the snapshot of its events)."""
    from flowstage.app.liveness import effective_status
    from flowstage.views.records import run_code, run_record

    run = _run(ctx, run_id)
    record = run_record(run, effective_status(run), run_code(ctx.store, run_id))
    record["graph"] = _dynamic_graph(ctx, run)
    return dict(ctx.masked(record))


GRAPHS_KEPT = 512


def _dynamic_graph(ctx: ApiContext, run: StoredRun) -> dict[str, Any]:
    """The run's graph with each node's status; its static part is compiled once per run and kept."""
    static = ctx.graphs.get(run.id)
    if static is None:
        from flowstage.engine.plan import compile_plan
        from flowstage.model.workflow import Workflow
        from flowstage.views.graph import graph_data

        static = graph_data(compile_plan(Workflow.model_validate(run.definition)))
        ctx.graphs[run.id] = static
        while len(ctx.graphs) > GRAPHS_KEPT:  # requests run on several threads: another may pop first
            try:
                ctx.graphs.popitem(last=False)
            except KeyError:
                break
    statuses = {t.name: str(t.status) for t in run.tasks}
    nodes = [{**node, "status": statuses.get(node["id"], "pending")} for node in static["nodes"]]
    return {"nodes": nodes, "edges": static["edges"]}


@router.post(
    "/runs/{run_id}/resume",
    response_model=models.RunId,
    status_code=202,
    responses=problem_responses(404, 409, 422),
    dependencies=[Depends(require("operator"))],
)
def resume(run_id: RunIdPath, ctx: Ctx) -> dict[str, Any]:
    """Resume a failed, cancelled, timed-out or interrupted run in a runner process of its own (409 otherwise)."""
    from flowstage.app.detached import detach_resume

    _run(ctx, run_id)
    try:
        detach_resume(ctx.project, run_id)
    except FlowstageError as exc:
        raise from_flowstage(exc, conflict=True) from None
    return {"id": run_id}


@router.post(
    "/runs/{run_id}/cancel",
    response_model=models.Cancelled,
    status_code=202,
    responses=problem_responses(404, 409, 422),
    dependencies=[Depends(require("operator"))],
)
def cancel(run_id: RunIdPath, ctx: Ctx) -> dict[str, Any]:
    """Cancel a running run (409 when it already ended): answers at once with the run's status then.

    The runner kills the running tasks and cancels the pending ones within about a second: the
    status is still `running` until it has (follow `/runs/{id}/events`). A run whose runner is
    gone is cancelled here, and answers `cancelled`.
    """
    from flowstage.app.runs import request_cancel

    _run(ctx, run_id)
    try:
        run = request_cancel(ctx.store, run_id)
    except FlowstageError as exc:
        raise from_flowstage(exc, conflict=True) from None
    return {"id": run.id, "status": run.status}


@router.get(
    "/alerts", response_model=list[models.AlertFired], responses=problem_responses(422), dependencies=[Depends(require("viewer"))]
)
def list_alerts(
    ctx: Ctx,
    workflow: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Any]:
    """The alerts that fired, newest first (of one workflow with `workflow=`)."""
    from flowstage.views.records import alert_entry

    return [ctx.masked(alert_entry(r)) for r in ctx.store.alerts.recent(workflow=workflow, limit=limit)]  # type: ignore[attr-defined]


@router.get(
    "/runs/{run_id}/alerts",
    response_model=list[models.AlertFired],
    responses=problem_responses(404, 422),
    dependencies=[Depends(require("viewer"))],
)
def run_alerts(run_id: RunIdPath, ctx: Ctx) -> list[Any]:
    """The alerts of a run, in the order they fired: rule, value seen, notifier and delivery."""
    from flowstage.views.records import alert_entry

    if ctx.store.run_head(run_id) is None:
        raise ApiProblem(404, f"no run {run_id!r}")
    return [ctx.masked(alert_entry(r)) for r in ctx.store.alerts.for_run(run_id)]  # type: ignore[attr-defined]


@router.get(
    "/runs/{run_id}/logs",
    response_model=models.LogPage,
    responses=problem_responses(404, 422),
    dependencies=[Depends(require("viewer"))],
)
def logs(
    request: Request,
    run_id: RunIdPath,
    ctx: Ctx,
    task: Annotated[str | None, Query(max_length=200)] = None,
    level: Annotated[LevelName, Query(description="the lowest level returned")] = "debug",
    after: Annotated[int, Query(ge=0, le=models.BIGINT_MAX, description="the id of the last line already read")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    q: Annotated[str | None, Query(max_length=200, description="only lines with this text (any case)")] = None,
) -> dict[str, Any]:
    """Log lines of a run (of one task), oldest first, after the cursor `after`."""
    run = _run(ctx, run_id)
    if task is not None and task not in {t.name for t in run.tasks}:
        raise ApiProblem(404, f"run {run_id} has no task {task!r}")
    lines = ctx.store.logs(run_id, task=task, min_level=LEVELS[level], after=after, limit=limit + 1, contains=q or None)
    page = lines[:limit]
    last = page[-1].id if page else after
    items = [
        {
            "id": s.id,
            "at": iso(s.line.at),
            "level": level_name(s.line.level),
            "task": s.line.task,
            "attempt": s.line.attempt,
            "message": ctx.scrub(s.line.message),
        }
        for s in page
    ]
    following = str(request.url.include_query_params(after=last)) if len(lines) > limit else None
    return {"items": items, "next": following, "after": last}


@router.get(
    "/runs/{run_id}/tasks/{task}/explain",
    response_model=dict[str, Any],
    responses=problem_responses(404, 422),
    dependencies=[Depends(require("viewer"))],
)
def explain_task(run_id: RunIdPath, task: Annotated[str, Path(max_length=200, description="a task name")], ctx: Ctx) -> Any:
    """Why a task ran, waited or was skipped (back to the root cause), its variables with the scope
    each came from, and its templates rendered: what `flowstage explain RUN TASK --json` prints."""
    from flowstage.app.explain import explain

    run = _run(ctx, run_id)
    if task not in {t.name for t in run.tasks}:
        raise ApiProblem(404, f"run {run_id} has no task {task!r}")
    try:
        return ctx.masked(explain(ctx.project, ctx.store, run, task))
    except FlowstageError as exc:
        raise from_flowstage(exc) from None


__all__ = ["router"]
