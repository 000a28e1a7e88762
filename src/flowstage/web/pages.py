"""The pages of the web UI and their fragments; `install_web(app)` adds them to the server's app.

Each page reads what the API's routes answer (their functions, called with the same context),
checks the caller's role the way the API does (a signed-in cookie or a bearer token; no one
needed when auth is off), and renders a template. Buttons that act (start, resume, cancel,
rollback, save) call the API from the page itself; a viewer gets none of them.
"""

from __future__ import annotations

import difflib
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from flowstage.api.auth import COOKIE, authenticate, caller_role, same_origin
from flowstage.api.context import ApiContext
from flowstage.api.problems import ApiProblem
from flowstage.stores.tokens import Role
from flowstage.views.records import iso

HERE = files("flowstage.web")
templates = Jinja2Templates(directory=str(HERE / "templates"))


class PageRoute(APIRoute):
    """A page's route: a problem (an unknown run, a workflow never deployed) answers an HTML page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiProblem as problem:
                role = caller_role(request)
                shown = {"title": problem.title, "detail": _ctx(request).scrub(problem.detail)}
                data = {"problem": shown, "role": role.value if role else None, "auth_on": True}
                return templates.TemplateResponse(request, "error.html", data, status_code=problem.status)

        return answer


router = APIRouter(include_in_schema=False, route_class=PageRoute)

STATUSES = ("running", "succeeded", "failed", "cancelled", "timed_out", "interrupted")
DOTS = 10
HISTORY = 50
#: a collapsed graph's task table is the full view: it is paged past this many rows
TASK_ROWS = 2000


class SignIn(Exception):
    """The page needs a signed-in user: answered by a redirect to /login."""


def _ctx(request: Request) -> ApiContext:
    found: ApiContext = request.app.state.flowstage
    return found


def _role(request: Request) -> Role:
    role = caller_role(request)
    if role is None:
        raise SignIn
    return role


def _page(request: Request, template: str, role: Role, **data: Any) -> HTMLResponse:
    ctx = _ctx(request)
    data.update(
        role=role.value,
        can_operate=role.allows(Role.OPERATOR),
        can_admin=role.allows(Role.ADMIN),
        auth_on=ctx.auth.on(ctx.store),
        now=time.time(),
    )
    return templates.TemplateResponse(request, template, data)


def _duration(started: float | None, ended: float | None) -> float | None:
    if started is None:
        return None
    return max(0.0, (ended if ended is not None else time.time()) - started)


def _next_run(definition: dict[str, Any]) -> str | None:
    trigger = definition.get("trigger") or {}
    if not trigger.get("schedule"):
        return None
    from flowstage.engine.scheduling import CronSchedule

    times = CronSchedule(trigger["schedule"], trigger.get("timezone", "UTC")).next_times(time.time(), 1)
    return times[0].isoformat() if times else None


# --------------------------------------------------------------------------- workflows


@router.get("/", response_class=HTMLResponse)
def workflows_page(
    request: Request,
    q: Annotated[str, Query(max_length=200)] = "",
    tag: Annotated[str, Query(max_length=200)] = "",
    status: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    role = _role(request)
    ctx = _ctx(request)
    from flowstage.app.liveness import effective_status

    rows: list[dict[str, Any]] = []
    tags: set[str] = set()
    for w in ctx.store.deployments.workflows():
        definition = w.definition
        their_tags = [str(t) for t in definition.get("tags") or []]
        tags.update(their_tags)
        runs = ctx.store.list_runs(workflow=w.name, limit=DOTS)
        dots = [{"id": r.id, "status": effective_status(r), "at": iso(r.started_at)} for r in runs]
        row: dict[str, Any] = {
            "name": w.name,
            "description": definition.get("description") or "",
            "tags": their_tags,
            "version": w.current_version,
            "last": dots[0] if dots else None,
            "dots": list(reversed(dots)),
            "next_run": _next_run(definition),
            "trigger": _trigger_text(definition.get("trigger")),
        }
        needle = q.strip().lower()
        if needle and needle not in w.name.lower() and needle not in row["description"].lower():
            continue
        if tag and tag not in their_tags:
            continue
        if status and (row["last"] or {}).get("status") != status:
            continue
        rows.append(row)
    template = "fragments/workflow_rows.html" if request.headers.get("hx-request") else "workflows.html"
    return _page(request, template, role, rows=rows, tags=sorted(tags), q=q, tag=tag, status=status, statuses=STATUSES)


def _trigger_text(trigger: Any) -> str:
    if not trigger:
        return "on demand"
    if trigger.get("schedule"):
        return f"{trigger['schedule']} ({trigger.get('timezone', 'UTC')})"
    after = trigger.get("after") or {}
    return f"after {', '.join(after.get('workflows', []))} {after.get('status', 'succeeded')} ({after.get('when', 'all')})"


@router.get("/workflows/{name}", response_class=HTMLResponse)
def workflow_page(request: Request, name: str) -> HTMLResponse:
    role = _role(request)
    ctx = _ctx(request)
    from flowstage.api.workflows import get_workflow, list_versions
    from flowstage.app.liveness import effective_status
    from flowstage.engine.plan import compile_plan
    from flowstage.model.workflow import Workflow
    from flowstage.views.layout import elements

    workflow = get_workflow(name, ctx)
    versions = list_versions(name, ctx)
    plan = compile_plan(Workflow.model_validate(workflow["definition"]))
    runs = ctx.store.list_runs(workflow=name, limit=HISTORY)
    history: list[dict[str, Any]] = [
        {
            "id": r.id,
            "status": effective_status(r),
            "started_at": iso(r.started_at),
            "seconds": _duration(r.started_at, r.ended_at) or 0.0,
            "version": r.version,
        }
        for r in reversed(runs)
    ]
    variables = {k: _json(v) for k, v in (workflow["definition"].get("variables") or {}).items()}
    return _page(
        request,
        "workflow.html",
        role,
        workflow=workflow,
        versions=versions,
        graph=elements(plan),
        history=history,
        longest=max((h["seconds"] for h in history), default=0.0) or 1.0,
        variables=variables,
        next_run=_next_run(workflow["definition"]),
        trigger=_trigger_text(workflow["definition"].get("trigger")),
    )


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


@router.get("/workflows/{name}/diff", response_class=HTMLResponse)
def diff_page(request: Request, name: str, a: Annotated[int, Query(ge=1)], b: Annotated[int, Query(ge=1)]) -> HTMLResponse:
    role = _role(request)
    ctx = _ctx(request)
    from flowstage.api.workflows import get_workflow

    workflow = get_workflow(name, ctx)
    old, new = ctx.store.deployments.version(name, a), ctx.store.deployments.version(name, b)
    if old is None or new is None:
        raise ApiProblem(404, f"workflow {name!r} has no version {a if old is None else b}")
    rows = _side_by_side(ctx.scrub(old.text), ctx.scrub(new.text))
    return _page(request, "diff.html", role, workflow=workflow, a=a, b=b, rows=rows, current=workflow["version"])


def _side_by_side(old: str, new: str) -> list[dict[str, Any]]:
    """Rows of a side-by-side diff: each `{"kind": same|changed|added|removed, "old", "new", "old_no", "new_no"}`."""
    left, right = old.splitlines(), new.splitlines()
    rows: list[dict[str, Any]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=left, b=right, autojunk=False).get_opcodes():
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            i, j = i1 + k, j1 + k
            kind = {"equal": "same", "replace": "changed", "delete": "removed", "insert": "added"}[op]
            rows.append(
                {
                    "kind": kind,
                    "old": left[i] if i < i2 else None,
                    "new": right[j] if j < j2 else None,
                    "old_no": i + 1 if i < i2 else None,
                    "new_no": j + 1 if j < j2 else None,
                }
            )
    return rows


# --------------------------------------------------------------------------- runs


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> HTMLResponse:
    role = _role(request)
    ctx = _ctx(request)
    record, graph = _run_view(ctx, run_id)
    return _page(request, "run.html", role, run=record, graph=graph, alerts=_alerts(request, run_id), **_tasks_view(record))


@router.get("/runs/{run_id}/tasks", response_class=HTMLResponse)
def run_tasks_fragment(request: Request, run_id: str) -> HTMLResponse:
    """The run's status line, task table and timeline (what the live page refreshes)."""
    role = _role(request)
    record, _ = _run_view(_ctx(request), run_id)
    return _page(request, "fragments/run_tasks.html", role, run=record, alerts=_alerts(request, run_id), **_tasks_view(record))


@router.get("/runs/{run_id}/tasks/{task}", response_class=HTMLResponse)
def task_fragment(request: Request, run_id: str, task: str) -> HTMLResponse:
    """One task of a run: attempts, error, skip reason, saved values, metrics, variables, whether caught."""
    role = _role(request)
    record, _ = _run_view(_ctx(request), run_id)
    found = next((t for t in record["tasks"] if t["name"] == task), None)
    if found is None:
        raise ApiProblem(404, f"run {run_id} has no task {task!r}")
    caught_by = [
        t["name"]
        for t in record["tasks"]
        if t["status"] == "succeeded" and {"from": task, "to": t["name"], "condition": "failure"} in record["graph"]["edges"]
    ]
    return _page(request, "fragments/task.html", role, run=record, task=found, caught_by=caught_by)


def _alerts(request: Request, run_id: str) -> list[Any]:
    from flowstage.api.runs import run_alerts

    return run_alerts(run_id, _ctx(request))


def _run_view(ctx: ApiContext, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from flowstage.api.runs import get_run
    from flowstage.engine.plan import compile_plan
    from flowstage.model.workflow import Workflow
    from flowstage.views.layout import elements

    record = get_run(run_id, ctx)
    run = ctx.store.get_run(run_id, with_tasks=False)
    assert run is not None  # get_run answered
    plan = compile_plan(Workflow.model_validate(run.definition))
    graph = elements(plan, {t["name"]: t["status"] for t in record["tasks"]}, copies=_copies(record), notes=_notes(record))
    return record, graph


def _notes(record: dict[str, Any]) -> dict[str, str]:
    """What each task's node says under its name: its attempts and how long it took."""
    notes: dict[str, str] = {}
    for task in record["tasks"]:
        attempts = len(task.get("attempts") or [])
        if not attempts:
            continue
        seconds = (task.get("metrics") or {}).get("runtime_seconds")
        started, ended = _epoch(task.get("started_at")), _epoch(task.get("ended_at"))
        if not isinstance(seconds, int | float):
            seconds = _duration(started, ended) if started is not None else None
        note = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        notes[task["name"]] = note + (f" · {seconds:.1f} s" if isinstance(seconds, int | float) else "")
    return notes


def _copies(record: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Each fanned-out task's copies by the status of their latest attempt."""
    found: dict[str, dict[str, int]] = {}
    for task in record["tasks"]:
        latest: dict[Any, str] = {}
        for attempt in task.get("attempts") or []:
            if attempt.get("instance") is not None:
                latest[attempt["instance"]] = str(attempt.get("status"))
        if latest:
            found[task["name"]] = dict(Counter(latest.values()))
    return found


def _epoch(text: str | None) -> float | None:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp() if text else None


def _tasks_view(record: dict[str, Any]) -> dict[str, Any]:
    """The task rows and the timeline's bars (each attempt, placed on the run's span)."""
    begin = _epoch(record.get("started_at")) or time.time()
    end = _epoch(record.get("ended_at")) or time.time()
    bars: list[dict[str, Any]] = []
    for row, task in enumerate(record["tasks"][:TASK_ROWS]):
        for attempt in task.get("attempts") or []:
            start = attempt.get("started_at")
            start_at = _epoch(start) if isinstance(start, str) else start
            if start_at is None:
                continue
            stop = attempt.get("ended_at")
            stop_at = (_epoch(stop) if isinstance(stop, str) else stop) or end
            end = max(end, stop_at)
            bars.append(
                {
                    "row": row,
                    "task": task["name"],
                    "status": attempt.get("status") or task["status"],
                    "start": start_at,
                    "stop": stop_at,
                    "number": attempt.get("number"),
                }
            )
    span = max(end - begin, 0.001)
    for bar in bars:
        bar["left"] = round(100 * (bar["start"] - begin) / span, 3)
        bar["width"] = round(max(0.3, 100 * (bar["stop"] - bar["start"]) / span), 3)
        bar["seconds"] = round(bar["stop"] - bar["start"], 3)
    return {
        "notes": _notes(record),
        "tasks": record["tasks"][:TASK_ROWS],
        "more_tasks": max(0, len(record["tasks"]) - TASK_ROWS),
        "bars": bars,
        "span": round(span, 3),
        "counts": record["metrics"]["tasks"],
        "duration": _duration(_epoch(record.get("started_at")), _epoch(record.get("ended_at"))),
    }


@router.get("/runs/{run_id}/logs.txt", response_class=PlainTextResponse)
def raw_logs(
    request: Request,
    run_id: str,
    task: Annotated[str | None, Query(max_length=200)] = None,
    level: Annotated[str, Query(max_length=20)] = "debug",
) -> PlainTextResponse:
    """Every log line of a run (of one task, from a level), as text to download."""
    _role(request)
    ctx = _ctx(request)
    from flowstage.logging import LEVELS, level_name

    if ctx.store.get_run(run_id, with_tasks=False) is None:
        raise ApiProblem(404, f"no run {run_id!r}")
    if level not in LEVELS:
        raise ApiProblem(422, f"query level: one of {', '.join(LEVELS)}")
    lines: list[str] = []
    after = 0
    while True:
        page = ctx.store.logs(run_id, task=task, min_level=LEVELS[level], after=after, limit=5000)
        for s in page:
            where = f"{s.line.task}#{s.line.attempt}" if s.line.task else "run"
            lines.append(f"{iso(s.line.at)} {level_name(s.line.level).upper():8} {where}: {ctx.scrub(s.line.message)}")
        if len(page) < 5000:
            break
        after = page[-1].id
    headers = {"Content-Disposition": f'attachment; filename="{quote(run_id)}.log"'}
    return PlainTextResponse("\n".join(lines) + ("\n" if lines else ""), headers=headers)


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, workflow: Annotated[str | None, Query(max_length=200)] = None) -> HTMLResponse:
    """Every alert that fired, newest first: rule, value seen, notifier and delivery."""
    role = _role(request)
    from flowstage.api.runs import list_alerts

    return _page(request, "alerts.html", role, alerts=list_alerts(_ctx(request), workflow=workflow, limit=500), workflow=workflow)


# --------------------------------------------------------------------------- catalog


@router.get("/catalog", response_class=HTMLResponse)
def catalog_page(request: Request) -> HTMLResponse:
    role = _role(request)
    from flowstage.api.catalog import list_tables

    return _page(request, "catalog.html", role, tables=list_tables(_ctx(request)))


@router.get("/catalog/{name}", response_class=HTMLResponse)
def table_page(request: Request, name: str) -> HTMLResponse:
    role = _role(request)
    from flowstage.api.catalog import get_table

    return _page(request, "table.html", role, table=get_table(name, _ctx(request)))


# --------------------------------------------------------------------------- editor


@router.get("/editor", response_class=HTMLResponse)
def new_workflow_page(request: Request) -> HTMLResponse:
    role = _role(request)
    text = "name: my_workflow\ndescription: what it does\nstages:\n  - name: first\n    tasks:\n      - {name: hello, shell: echo hello}\n"
    return _page(request, "editor.html", role, name=None, text=text, version=None)


@router.get("/workflows/{name}/edit", response_class=HTMLResponse)
def edit_workflow_page(request: Request, name: str) -> HTMLResponse:
    role = _role(request)
    from flowstage.api.workflows import get_workflow

    workflow = get_workflow(name, _ctx(request))
    return _page(request, "editor.html", role, name=name, text=workflow.get("text") or "", version=workflow["version"])


# --------------------------------------------------------------------------- sign-in


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str, Query(max_length=500)] = "/", failed: bool = False) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "login.html", {"next": _local(next), "failed": failed, "role": None, "auth_on": True}
    )


@router.post("/login")
def login(
    request: Request, token: Annotated[str, Form(max_length=500)], next: Annotated[str, Form(max_length=500)] = "/"
) -> Response:
    """Check the token and keep it in an HttpOnly, SameSite=Strict cookie; failures count as the API's do."""
    ctx = _ctx(request)
    if not same_origin(request):
        raise ApiProblem(403, "sign in from this server's own page")
    try:
        authenticate(request, ctx.auth, ctx.store, token.strip() or None)
    except HTTPException as refused:
        if refused.status_code == 401:
            return RedirectResponse(f"/login?failed=1&next={quote(_local(next))}", status_code=303)
        raise ApiProblem(refused.status_code, str(refused.detail)) from None
    answer = RedirectResponse(_local(next), status_code=303)
    answer.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    return answer


@router.post("/logout")
def logout(request: Request) -> Response:
    if not same_origin(request):
        raise ApiProblem(403, "sign out from this server's own page")
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/")
    return answer


def _local(target: str) -> str:
    """A redirect target on this server only (never another host)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def install_web(app: FastAPI) -> None:
    """Add the UI's pages and its static assets (under `/static`) to `app`."""
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(router)

    @app.exception_handler(SignIn)
    async def sign_in(request: Request, _exc: Exception) -> Response:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


__all__ = ["install_web"]
