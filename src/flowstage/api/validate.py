"""`POST /validate`: check a workflow file's text without deploying it (the editor's live validation).

It answers every problem located by line and column, and, when the file is valid, the graph
the workflow would have, laid out as the web UI draws it: the editor's live preview.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from flowstage.api import models
from flowstage.api.auth import require
from flowstage.api.context import ApiContext, context
from flowstage.api.problems import problem_responses
from flowstage.errors import DefinitionError

router = APIRouter(tags=["workflows"])

Ctx = Annotated[ApiContext, Depends(context)]


def check_text(ctx: ApiContext, text: str, source: str) -> dict[str, Any]:
    """The problems of a workflow text (and its laid-out graph when there are none)."""
    from flowstage.deploy import prepare_text
    from flowstage.engine.plan import compile_plan
    from flowstage.views.layout import elements

    try:
        prepared = prepare_text(ctx.project, text, source)
    except DefinitionError as exc:
        problems = [
            {"line": p.line, "column": p.column, "message": ctx.scrub(p.message), "text": ctx.scrub(str(p))} for p in exc.problems
        ]
        return {"valid": False, "name": None, "problems": problems, "graph": None}
    return {"valid": True, "name": prepared.workflow.name, "problems": [], "graph": elements(compile_plan(prepared.workflow))}


@router.post(
    "/validate",
    response_model=models.Validation,
    responses=problem_responses(415, 422),
    dependencies=[Depends(require("viewer"))],
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the workflow file's text",
            "content": {"application/yaml": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def validate(request: Request, ctx: Ctx) -> dict[str, Any]:
    """Validate a workflow file's text: its problems by line and column, or the graph it would have."""
    from flowstage.api.workflows import workflow_text

    text, source = await workflow_text(request)
    return await run_in_threadpool(check_text, ctx, text, source)


__all__ = ["check_text", "router"]
