"""`/workflows`: deployed workflows, their versions and static graph; deploy, rollback, start a run."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from flowstage.api import models
from flowstage.api.auth import require
from flowstage.api.context import ApiContext, context
from flowstage.api.problems import ApiProblem, from_flowstage, problem_responses
from flowstage.errors import DefinitionError, FlowstageError, NotFoundError
from flowstage.views.records import iso

router = APIRouter(tags=["workflows"])

Name = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]*$", max_length=200, description="a workflow name")]
Ctx = Annotated[ApiContext, Depends(context)]

WORKFLOW_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/json")
MAX_WORKFLOW_BYTES = 5_000_000


def _summary(ctx: ApiContext, w: Any) -> dict[str, Any]:
    last = ctx.store.list_runs(workflow=w.name, limit=1)
    return {
        "name": w.name,
        "version": w.current_version,
        "versions": w.versions,
        "deployed_at": iso(w.activated_at),
        "description": w.definition.get("description"),
        "tags": list(w.definition.get("tags") or []),
        "trigger": w.definition.get("trigger") or None,
        "last_run": {"id": last[0].id, "status": last[0].status, "started_at": iso(last[0].started_at)} if last else None,
    }


def _deployed(ctx: ApiContext, name: str) -> Any:
    found = ctx.store.deployments.workflow(name)
    if found is None:
        raise ApiProblem(404, f"workflow {name!r} was never deployed")
    return found


@router.get("/workflows", response_model=list[models.WorkflowSummary], dependencies=[Depends(require("viewer"))])
def list_workflows(ctx: Ctx) -> list[dict[str, Any]]:
    """Deployed workflows, with their current version and last run."""
    return [ctx.masked(_summary(ctx, w)) for w in ctx.store.deployments.workflows()]


@router.get(
    "/workflows/{name}",
    response_model=models.WorkflowDetail,
    responses=problem_responses(404, 422),
    dependencies=[Depends(require("viewer"))],
)
def get_workflow(name: Name, ctx: Ctx) -> dict[str, Any]:
    """A deployed workflow: its current version's definition."""
    w = _deployed(ctx, name)
    current = ctx.store.deployments.version(name, w.current_version)
    out = _summary(ctx, w)
    out.update(
        definition=w.definition,
        source=current.source if current is not None else None,
        text=current.text if current is not None else None,
    )
    return dict(ctx.masked(out))


@router.get(
    "/workflows/{name}/versions",
    response_model=list[models.WorkflowVersion],
    responses=problem_responses(404, 422),
    dependencies=[Depends(require("viewer"))],
)
def list_versions(name: Name, ctx: Ctx) -> list[dict[str, Any]]:
    """The versions of a workflow, newest first (the current one marked)."""
    w = _deployed(ctx, name)
    return [
        {
            "version": v.version,
            "current": v.version == w.current_version,
            "hash": v.content_hash,
            "deployed_at": iso(v.deployed_at),
            "deployed_by": v.deployed_by,
            "source": v.source,
            "files": sorted(v.files),
        }
        for v in ctx.store.deployments.versions(name)
    ]


@router.get(
    "/workflows/{name}/graph",
    response_model=models.StaticGraph,
    response_model_exclude_none=True,
    responses=problem_responses(404, 422),
    dependencies=[Depends(require("viewer"))],
)
def workflow_graph(name: Name, ctx: Ctx) -> dict[str, Any]:
    """The static view: nodes with their stage, edges with their condition, the stages in order.

    A deployed workflow's current version; a name never deployed is looked up in `workflows/`.
    """
    from flowstage.app.workflows import resolve_workflow
    from flowstage.engine.plan import compile_plan
    from flowstage.views.graph import graph_data

    try:
        found = resolve_workflow(ctx.project, name, store=ctx.store)
    except NotFoundError:
        raise ApiProblem(404, f"no workflow named {name!r} (neither deployed nor in workflows/)") from None
    except DefinitionError as exc:
        raise from_flowstage(exc) from None
    return graph_data(compile_plan(found.workflow))


async def workflow_text(request: Request) -> tuple[str, str]:
    """A workflow file sent as a request's body (YAML or JSON), and the name it gets in messages."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in WORKFLOW_MEDIA_TYPES:
        raise ApiProblem(
            415, f"Content-Type {media or '(none)'!r}: send the workflow file as application/yaml or application/json"
        )
    body = await request.body()
    if len(body) > MAX_WORKFLOW_BYTES:
        raise ApiProblem(422, f"the workflow file is larger than {MAX_WORKFLOW_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiProblem(422, "the workflow file is not UTF-8 text") from None
    return text, "workflow.json" if media == "application/json" else "workflow.yaml"


@router.post(
    "/workflows",
    response_model=models.Deployed,
    status_code=201,
    responses={200: {"model": models.Deployed, "description": "the content was already deployed"}, **problem_responses(415, 422)},
    dependencies=[Depends(require("admin"))],
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the workflow file's text",
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def deploy_workflow(request: Request, response: Response, ctx: Ctx) -> dict[str, Any]:
    """Deploy a workflow file: a new version when its content changed (201), else the version it is (200)."""
    from starlette.concurrency import run_in_threadpool

    from flowstage.deploy import deploy_text

    text, source = await workflow_text(request)
    try:
        outcome = await run_in_threadpool(deploy_text, ctx.project, text, store=ctx.store, source=source)
    except FlowstageError as exc:
        raise from_flowstage(exc) from None
    if not outcome.created:
        response.status_code = 200
    return {
        "name": outcome.name,
        "version": outcome.version,
        "previous": outcome.previous,
        "created": outcome.created,
        "activated": outcome.activated,
    }


@router.post(
    "/workflows/{name}/rollback",
    response_model=models.RolledBack,
    responses=problem_responses(400, 404, 422),
    dependencies=[Depends(require("admin"))],
)
def rollback_workflow(name: Name, body: models.RollbackRequest, ctx: Ctx) -> dict[str, Any]:
    """Make an earlier version current again."""
    from flowstage.deploy import rollback

    try:
        outcome = rollback(name, body.version, store=ctx.store)
    except FlowstageError as exc:
        raise from_flowstage(exc) from None
    return {"name": outcome.name, "version": outcome.version, "previous": outcome.previous, "activated": outcome.activated}


@router.post(
    "/workflows/{name}/runs",
    response_model=models.RunId,
    status_code=202,
    responses=problem_responses(400, 404, 422, 500),
    dependencies=[Depends(require("operator"))],
)
def start_workflow_run(name: Name, ctx: Ctx, body: models.StartRequest | None = None) -> dict[str, Any]:
    """Start a run (the current deployed version, else the file in `workflows/`) in a runner process of its own.

    Answers 202 with the run id once the run is recorded; follow it with `GET /runs/{id}`.
    """
    from flowstage.app.detached import detach_run
    from flowstage.app.workflows import resolve_workflow

    variables = body.variables if body is not None else {}
    try:
        found = resolve_workflow(ctx.project, name, store=ctx.store)
        run_id = detach_run(ctx.project, name, variables=variables, version=found.version)
    except NotFoundError:
        raise ApiProblem(404, f"no workflow named {name!r} (neither deployed nor in workflows/)") from None
    except FlowstageError as exc:
        raise from_flowstage(exc) from None
    return {"id": run_id}


__all__ = ["router", "workflow_text"]
