"""Errors as RFC 9457 problem documents (`application/problem+json`), and the handlers that write them.

A route raises `ApiProblem` (or lets a `FlowstageError` through: an unknown thing is 404, an
invalid definition 422); FastAPI's own request validation errors become 422 problems naming the
field; anything unexpected is a 500 whose detail names no traceback and no secret (the
traceback goes to the server's log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowstage.errors import DefinitionError, FlowstageError, NotFoundError, UsageError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
}


class ApiProblem(Exception):
    """An error answer: `status`, a `detail` naming the field or the thing, and extra members."""

    def __init__(self, status: int, detail: str, *, title: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or TITLES.get(status, "Error")
        self.extra = extra


def problem_response(status: int, detail: str, *, title: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def from_flowstage(exc: FlowstageError, *, conflict: bool = False) -> ApiProblem:
    """The problem for a flowstage error: 404 unknown, 422 invalid, 409 (when `conflict`) or 422 usage."""
    if isinstance(exc, NotFoundError):
        return ApiProblem(404, str(exc))
    if isinstance(exc, DefinitionError):
        return ApiProblem(422, "the workflow is invalid", problems=[str(p) for p in exc.problems])
    if isinstance(exc, UsageError):
        return ApiProblem(409 if conflict else 422, str(exc))
    return ApiProblem(409 if conflict else 500, str(exc))


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")] or [str(p) for p in loc]
    where = next((str(p) for p in loc if p in ("body", "query", "path", "header")), None)
    name = ".".join(parts)
    return f"{where} {name}" if where and name else name or "request"


class InternalErrors:
    """An unexpected error of a route → a 500 problem; its traceback, scrubbed, to the server's log.

    A middleware, not an `Exception` handler: Starlette re-raises what reaches that handler, and the
    server would log the unscrubbed traceback. A plain ASGI one: it adds nothing to a request's path.
    """

    def __init__(self, app: ASGIApp, *, scrub: Callable[[str], str]) -> None:
        self.app = app
        self.scrub = scrub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            import traceback

            # the traceback goes to the server's log, scrubbed like every other line (SPEC §1)
            path = scope.get("path", "?")
            log.error("%s %s failed:\n%s", scope.get("method", "?"), path, self.scrub("".join(traceback.format_exception(exc))))
            if not started:  # else the answer is under way: the client sees it cut short
                answer = problem_response(500, f"internal error ({type(exc).__name__}); the server's log has the details")
                await answer(scope, receive, send)


def install(app: FastAPI, scrub: Callable[[str], str]) -> None:
    """Register the handlers that turn every error into a problem document (details scrubbed of secrets)."""

    async def on_problem(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        extra = dict(exc.extra)
        if "problems" in extra and extra["problems"] is not None:
            extra["problems"] = [scrub(p) for p in extra["problems"]]
        return problem_response(exc.status, scrub(exc.detail), title=exc.title, **extra)

    async def on_flowstage(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FlowstageError)
        return await on_problem(request, from_flowstage(exc))

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {_request.url.path}"
        answer = problem_response(exc.status_code, scrub(detail))
        for name, value in (exc.headers or {}).items():  # WWW-Authenticate of a 401, Retry-After of a 429
            answer.headers[name] = value
        return answer

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        lines = [f"{_field(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
        return problem_response(422, scrub("; ".join(lines) or "invalid request"), title="Invalid request")

    app.add_middleware(InternalErrors, scrub=scrub)
    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(FlowstageError, on_flowstage)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for routes that may answer these problem statuses, as `application/problem+json`.

    The schema is written out, not given as `model`: FastAPI files a model's schema under the route's
    own media type (`application/json`), which is not the one a problem is sent as.
    """
    from flowstage.api.models import Problem

    schema = Problem.model_json_schema(mode="serialization")
    return {code: {"description": TITLES[code], "content": {MEDIA_TYPE: {"schema": schema}}} for code in codes}


__all__ = ["MEDIA_TYPE", "ApiProblem", "from_flowstage", "install", "problem_response", "problem_responses"]
