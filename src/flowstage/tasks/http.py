"""``http:`` tasks: one request with httpx; an unexpected status is failure.

`save:` keeps the JSON answer (or its text when it is not JSON). A kill closes the client, which
aborts the request in flight.

The URL comes rendered with its template values percent-encoded (`templates.render_url`): a value
cannot add a path segment or a query parameter. `base_url:` is taken as written (it may be a whole
URL from a variable); `url:` is then a path joined to it.
"""

from __future__ import annotations

from typing import Any

from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import RunError
from flowstage.logging import INFO
from flowstage.model.kinds.http import HttpRequest, HttpSpec
from flowstage.model.statuses import TaskStatus
from flowstage.redact import mask_url, scrub
from flowstage.tasks import TaskContext


def target(req: HttpRequest) -> str:
    """The URL called: `url`, or `url` (a path) joined to `base_url` with one slash between them."""
    if req.base_url is None:
        return req.url
    if not req.url or req.url.startswith(("?", "#")):
        return req.base_url + req.url
    return req.base_url.rstrip("/") + "/" + req.url.lstrip("/")


def run(job: AttemptSpec, ctx: TaskContext) -> Outcome:
    import httpx

    spec = job.spec
    assert isinstance(spec, HttpSpec)
    req = spec.http
    expected = [req.expect] if isinstance(req.expect, int) else list(req.expect)
    timeout = job.timeout or 300.0
    url = target(req)
    where = mask_url(url)  # a URL may carry a password: messages show it masked
    kwargs: dict[str, Any] = {"headers": req.headers, "params": req.params or None}
    if req.json_body is not None:
        kwargs["json"] = req.json_body
    elif req.body is not None:
        kwargs["content"] = req.body
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        ctx.handle.on_kill(client.close)
        try:
            response = client.request(req.method.upper(), url, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as exc:
            raise RunError(scrub(f"{req.method.upper()} {where}: {type(exc).__name__}: {exc}", [url])) from None
    ctx.log(INFO, f"{req.method.upper()} {where} -> {response.status_code} ({len(response.content)} bytes)")
    metrics = {"status_code": response.status_code, "bytes_read": len(response.content)}
    try:
        value: Any = response.json()
    except ValueError:
        value = response.text
    if response.status_code not in expected:
        snippet = response.text[:200].replace("\n", " ")
        return Outcome(
            TaskStatus.FAILED,
            error=f"{req.method.upper()} {where} answered {response.status_code}, expected {', '.join(map(str, expected))}: {snippet}",
            metrics=metrics,
        )
    return Outcome(TaskStatus.SUCCEEDED, value=value, metrics=metrics)
