"""The interactive API docs (Swagger UI) at `{prefix}/docs`, every asset served from this package.

The page and its assets come from `static/swagger/` (the files of the `swagger-ui-dist` npm
package, its licence beside them): a browser showing the docs asks no other host for anything, and
the page works where the server has no way out. Swagger UI's online validator, the one thing it
would fetch from elsewhere, is turned off, and the page's Content-Security-Policy lets a browser
load nothing from any other host.

Neither the page nor the assets need a token: they carry no data. What the page shows comes from
`openapi.json`, and what "Try it out" sends goes to the routes, each asking for its role as ever.
An asset's URL carries a digest of its content, so it is cached for a year and a new version of
flowstage is never shown with the assets of an old one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from flowstage.api.problems import ApiProblem

#: the package folder of the assets, relative to `flowstage.api`
ASSETS_FOLDER = "static/swagger"
#: what is served from it, with its media type: nothing else of the package can be asked for
ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",
}
ASSET_CACHE = "public, max-age=31536000, immutable"
#: what a browser may load for the page: itself, its assets, the API (and Swagger UI's inline styles
#: and data: or blob: images); the page's inline script is allowed by its hash
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self' {scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
#: Swagger UI's online validator is off: its badge would be fetched from validator.swagger.io
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


@dataclass(frozen=True)
class Asset:
    content: bytes
    media_type: str
    digest: str

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


@functools.cache
def asset(name: str) -> Asset:
    """The content of the asset `name` (read once); KeyError when `name` is not one."""
    media_type = ASSETS[name]
    content = (files("flowstage.api") / ASSETS_FOLDER / name).read_bytes()
    return Asset(content, media_type, hashlib.sha256(content).hexdigest()[:20])


def _policy(html: str) -> str:
    """The page's Content-Security-Policy, its inline scripts allowed by their sha256."""
    hashes = [base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() for code in _INLINE_SCRIPT.findall(html)]
    return CONTENT_SECURITY_POLICY.format(scripts=" ".join(f"'sha256-{h}'" for h in hashes))


def install_docs(app: FastAPI, prefix: str) -> None:
    """Serve the docs page at `{prefix}/docs` and its assets under `{prefix}/docs/assets/`.

    Neither appears in the OpenAPI document. `app.openapi_url` must be set: the page reads it.
    """
    if app.openapi_url is None:
        raise ValueError("the docs page needs the app's OpenAPI document (openapi_url is None)")
    openapi_url = app.openapi_url
    base = f"{prefix}/docs/assets"

    def url(name: str) -> str:
        return f"{base}/{name}?v={asset(name).digest}"

    @app.get(f"{prefix}/docs", include_in_schema=False)
    def docs_page() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} {app.version} — API",
            swagger_js_url=url("swagger-ui-bundle.js"),
            swagger_css_url=url("swagger-ui.css"),
            swagger_favicon_url=url("favicon-32x32.png"),
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
        # the page names the assets' current digests: always asked for again, never kept stale
        page.headers["Cache-Control"] = "no-cache"
        page.headers["Content-Security-Policy"] = _policy(bytes(page.body).decode())
        page.headers["X-Content-Type-Options"] = "nosniff"
        return page

    @app.api_route(f"{base}/{{name}}", methods=["GET", "HEAD"], include_in_schema=False)
    def docs_asset(name: str, request: Request) -> Response:
        if name not in ASSETS:
            raise ApiProblem(404, f"no docs asset {name!r}")
        found = asset(name)
        headers = {"Cache-Control": ASSET_CACHE, "ETag": found.etag, "X-Content-Type-Options": "nosniff"}
        if found.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(found.content, media_type=found.media_type, headers=headers)


__all__ = ["ASSETS", "install_docs"]
