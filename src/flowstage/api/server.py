"""`create_app(project)`: the FastAPI app of the REST API, every route under `/api/v1`.

The run store is opened when the app starts (its lifespan) and closed when it stops; runs are
started and resumed in runner processes of their own (`flowstage.app.detached`), so stopping
the server neither kills nor loses them. Interactive docs are off in this version: their assets
would have to be served from here, never from a CDN.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from flowstage.api import catalog, events, models, problems, runs, workflows
from flowstage.api.auth import AuthState, auth_forced
from flowstage.api.context import ApiContext, scrubber_for
from flowstage.settings import Project

PREFIX = "/api/v1"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowstage")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(project: Project) -> FastAPI:
    """The REST API of `project` (SPEC §5.2); OpenAPI at `/api/v1/openapi.json`."""
    scrub = scrubber_for(project)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from flowstage.app.stores import open_store

        store = open_store(project)
        app.state.flowstage = ApiContext(project=project, store=store, scrub=scrub, auth=AuthState(auth_forced(project.config)))
        try:
            yield
        finally:
            store.close()

    app = FastAPI(
        title="flowstage",
        version=_version(),
        summary="ETL workflows of stages and tasks: deploy, run, resume, and read the record back.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    problems.install(app, scrub)
    api = APIRouter(prefix=PREFIX)
    version = _version()

    # /health needs no role: a probe must answer whether or not auth is on
    @api.get("/health", response_model=models.Health, tags=["health"])
    def health() -> models.Health:
        """Whether the server answers."""
        return models.Health(status="ok", version=version)

    for router in (workflows.router, runs.router, events.router, catalog.router):
        api.include_router(router)
    app.include_router(api)
    return app


__all__ = ["PREFIX", "create_app"]
