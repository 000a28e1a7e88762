"""`/catalog`: the tables crawlers found, their columns, and one table's schema history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from flowstage.api import models
from flowstage.api.auth import require
from flowstage.api.context import ApiContext, context
from flowstage.api.problems import ApiProblem, problem_responses
from flowstage.views.records import iso

router = APIRouter(tags=["catalog"])

Ctx = Annotated[ApiContext, Depends(context)]


def _entry(t: Any) -> dict[str, Any]:
    return {
        "name": t.name,
        "location": t.location,
        "connection": t.connection,
        "format": t.format,
        "columns": t.columns,
        "partitions": t.partitions,
        "row_estimate": t.row_estimate,
        "version": t.version,
        "updated_at": iso(t.updated_at),
    }


@router.get("/catalog", response_model=list[models.CatalogSummary], dependencies=[Depends(require("viewer"))])
def list_tables(ctx: Ctx) -> list[Any]:
    """The catalog's tables."""
    return [ctx.masked(_entry(t)) for t in ctx.store.catalog.tables()]


@router.get(
    "/catalog/{name}",
    response_model=models.CatalogDetail,
    responses=problem_responses(404, 422),
    dependencies=[Depends(require("viewer"))],
)
def get_table(name: Annotated[str, Path(max_length=500)], ctx: Ctx) -> dict[str, Any]:
    """One table: columns, location, row estimate and its schema history (newest first)."""
    table = ctx.store.catalog.get(name)
    if table is None:
        raise ApiProblem(404, f"no catalog table {name!r}")
    out = _entry(table)
    out["history"] = [dict(h, at=iso(h["at"])) for h in ctx.store.catalog.history(name)]
    return dict(ctx.masked(out))


__all__ = ["router"]
