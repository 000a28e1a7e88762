"""`create_app(project)`: the FastAPI app of the REST API, every route under `/api/v1`.

The run store is opened when the app starts (its lifespan) and closed when it stops; runs are
started and resumed in runner processes of their own (`flowstage.app.detached`), so stopping
the server neither kills nor loses them. The lifespan also hosts the project's scheduler on a
thread of its own (its runs detached too, fired exactly once per due time by the store's rule
however many servers share it), and on start deals with the runs left interrupted by a runner
that died: each is resumed, or failed with `server: {orphans: fail}` in flowstage.yaml.
Interactive docs (Swagger UI) are at `/api/v1/docs`, their assets served from this package, never
from a CDN (`flowstage.api.docs`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from flowstage.api import backfills, catalog, events, metrics, models, problems, runs, validate, workflows
from flowstage.api.auth import auth_state
from flowstage.api.context import ApiContext, scrubber_for
from flowstage.api.docs import install_docs
from flowstage.api.hub import EventHub
from flowstage.errors import FlowstageError, UsageError
from flowstage.settings import Project

if TYPE_CHECKING:
    from flowstage.engine.ports import Clock
    from flowstage.scheduler import Scheduler
    from flowstage.stores.base import RunStore

PREFIX = "/api/v1"
ORPHAN_POLICIES = ("resume", "fail")
#: the interrupted runs looked at on start (the newest first)
ORPHANS_BOUND = 10_000
#: seconds the scheduler's runner processes being started get when the server stops
SCHEDULER_GRACE_SECONDS = 10.0

logger = logging.getLogger(__name__)


def orphan_policy(config: dict[str, object]) -> str:
    """`server: {orphans: resume | fail}` of flowstage.yaml (default resume)."""
    server = config.get("server")
    policy = server.get("orphans", "resume") if isinstance(server, dict) else "resume"
    if policy not in ORPHAN_POLICIES:
        raise UsageError(f"server: {{orphans: {policy!r}}} in flowstage.yaml: expected one of {', '.join(ORPHAN_POLICIES)}")
    return str(policy)


def recover_orphans(project: Project, store: RunStore, policy: str) -> list[str]:
    """Resume (detached) or fail every run whose runner is gone; answer their ids. Live runs are left alone."""
    from flowstage.app.detached import detach_resume
    from flowstage.app.liveness import effective_status
    from flowstage.app.runs import fail_orphan

    done: list[str] = []
    for run in store.list_runs(statuses=["running"], limit=ORPHANS_BOUND):
        if effective_status(run) != "interrupted":
            continue
        try:
            if policy == "fail":
                fail_orphan(store, run, reason="its runner was gone when the server started")
                logger.info("run %s (%s) was interrupted: failed (server: {orphans: fail})", run.id, run.workflow)
            else:
                detach_resume(project, run.id)
                logger.info("run %s (%s) was interrupted: resumed in a runner process of its own", run.id, run.workflow)
            done.append(run.id)
        except FlowstageError as exc:
            logger.warning("run %s (%s) was interrupted and could not be dealt with: %s", run.id, run.workflow, exc)
    return done


def _start_scheduler(project: Project, policy: str, clock: Clock | None) -> tuple[Scheduler, RunStore, threading.Thread]:
    """The scheduler of the project on a thread of its own, after the orphans are dealt with."""
    from flowstage.app.stores import open_store
    from flowstage.scheduler import Scheduler

    store = open_store(project)
    scheduler = Scheduler(project, store=store, clock=clock, detached=True)

    def work() -> None:
        try:
            recover_orphans(project, store, policy)
            scheduler.serve()
        except Exception:  # the API keeps answering; what stopped is in the log
            logger.exception("the scheduler stopped")

    thread = threading.Thread(target=work, name="flowstage-scheduler", daemon=True)
    thread.start()
    return scheduler, store, thread


def _store_answers(app: FastAPI) -> bool:
    """Whether the app's run store answers its cheapest query (a failure is logged, scrubbed)."""
    ctx: ApiContext = app.state.flowstage
    try:
        ctx.store.last_event_id()
    except Exception as exc:
        logger.warning("health: the run store does not answer: %s", ctx.scrub(f"{type(exc).__name__}: {exc}"))
        return False
    return True


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowstage")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(project: Project, *, clock: Clock | None = None, with_ui: bool = True) -> FastAPI:
    """The REST API of `project` (SPEC §5.2); OpenAPI at `/api/v1/openapi.json`. `clock`: its scheduler's (tests)."""
    scrub = scrubber_for(project)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from flowstage.app.stores import open_store

        policy = orphan_policy(project.config)
        store = open_store(project)
        app.state.event_metrics = observed = metrics.EventMetrics(store)
        hub = EventHub(store, events.renderer(scrub), observe=observed.observe)
        hub.start(asyncio.get_running_loop())
        app.state.flowstage = ApiContext(project=project, store=store, scrub=scrub, auth=auth_state(project.config), hub=hub)
        app.state.started_monotonic = time.monotonic()
        scheduler, scheduler_store, thread = _start_scheduler(project, policy, clock)
        app.state.scheduler = scheduler
        app.state.scheduler_thread = thread
        # what start-up loaded (the app, its models, the libraries) lives as long as the server:
        # out of the collector's way, a full collection no longer walks it on every request burst
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            hub.stop()
            scheduler.stop()
            thread.join(SCHEDULER_GRACE_SECONDS)
            scheduler.shutdown(grace=SCHEDULER_GRACE_SECONDS)
            scheduler_store.close()
            hub.join()  # before the store closes: a SQLite connection closed under a reader crashes it
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
    @api.get(
        "/health",
        response_model=models.Health,
        responses={503: {"model": models.Health, "description": "The store is unreachable or the scheduler stopped"}},
        tags=["health"],
    )
    def health(request: Request) -> models.Health | JSONResponse:
        """Whether the server can do its work: its run store answers and its scheduler runs (503 otherwise)."""
        answer = models.Health(
            status="ok",
            version=version,
            store="ok" if _store_answers(request.app) else "unreachable",
            scheduler="ok" if request.app.state.scheduler_thread.is_alive() else "stopped",
        )
        if answer.store == "ok" and answer.scheduler == "ok":
            return answer
        return JSONResponse(answer.model_copy(update={"status": "degraded"}).model_dump(), status_code=503)

    # every other route needs a role: a missing or bad token, a role too low, too many failed logins
    for router in (
        workflows.router,
        validate.router,
        runs.router,
        backfills.router,
        events.router,
        catalog.router,
        metrics.router,
    ):
        api.include_router(router, responses=problems.problem_responses(401, 403, 429))
    app.include_router(api)
    install_docs(app, PREFIX)
    if with_ui:
        from flowstage.web.pages import install_web

        install_web(app)
    return app


__all__ = ["PREFIX", "create_app", "orphan_policy", "recover_orphans"]
