"""The interactive API docs at `/api/v1/docs` over real HTTP: a page whose every asset this server serves.

The server runs with auth on (`server: {auth: true}`) and the requests carry no token: the page and
its assets carry no data and need none. The OpenAPI document it shows is checked against the
OpenAPI 3.1 specification, and the assets are checked to be in what the package ships.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from flowstage.api.docs import ASSETS, ASSETS_FOLDER
from tests.conftest import Project
from tests.integration.test_api import Server, serve

ROOT = Path(__file__).resolve().parents[2]
MEDIA_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",), ".png": ("image/png",)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("docs") / "proj"
    root.mkdir()
    (root / "flowstage.yaml").write_text("server: {auth: true}\n")
    with serve(Project(root), root.parent / "server.log") as running:
        yield running


class _Links(HTMLParser):
    """Every URL a page makes a browser load: `src` and `href` attributes, and the page's script's `url:`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value is not None]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.scripts.append(data)


def _links(page: str) -> _Links:
    parser = _Links()
    parser.feed(page)
    return parser


def _same_origin(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and url.startswith("/")


def test_the_docs_page_needs_no_token_and_loads_only_same_origin_urls(server: Server) -> None:
    assert server.client.get("/workflows").status_code == 401  # auth is on
    answer = server.client.get("/docs")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    page = _links(answer.text)
    assert len(page.urls) == 3, page.urls  # the script, the style sheet, the icon
    assert all(_same_origin(url) for url in page.urls), page.urls
    assert all(url.startswith("/api/v1/docs/assets/") for url in page.urls), page.urls
    assert "url: '/api/v1/openapi.json'" in "".join(page.scripts)
    for elsewhere in ("http:", "https:", "//cdn"):
        assert elsewhere not in answer.text
    assert '"validatorUrl": null' in answer.text  # Swagger UI's badge would come from validator.swagger.io
    policy = answer.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self' 'sha256-", "connect-src 'self'"):
        assert directive in policy


def test_every_asset_the_page_names_answers_200_with_its_content_type_and_a_long_cache(server: Server) -> None:
    page = _links(server.client.get("/docs").text)
    for url in page.urls:
        path = urlsplit(url).path
        name = path.rsplit("/", 1)[-1]
        answer = server.client.get(server.client.base_url.join(url))
        assert answer.status_code == 200, (url, answer.text)
        assert answer.headers["content-type"].split(";")[0] in MEDIA_TYPES[Path(name).suffix], url
        assert answer.content == (files("flowstage.api") / ASSETS_FOLDER / name).read_bytes(), url
        assert "max-age=31536000" in answer.headers["cache-control"], url
        again = server.client.get(server.client.base_url.join(url), headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304, url
    assert server.client.get("/docs/assets/LICENSE").text.startswith("\n                                 Apache License")


def test_only_the_listed_assets_are_served(server: Server) -> None:
    for name in ("docs.py", "__init__.py", "swagger-ui.css.map", "..%2Fdocs.py"):
        answer = server.client.get(f"/docs/assets/{name}")
        assert answer.status_code == 404, name
        assert answer.headers["content-type"].startswith("application/problem+json"), name


def test_the_served_openapi_document_is_valid_openapi_3_1(server: Server) -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator, validate

    answer = server.client.get("/openapi.json")
    assert answer.status_code == 200  # no token: as before the docs page
    spec: dict[str, Any] = answer.json()
    assert spec["openapi"].startswith("3.1."), spec["openapi"]
    validate(spec, cls=OpenAPIV31SpecValidator)
    assert not [path for path in spec["paths"] if path.startswith("/api/v1/docs")]


def test_the_package_data_ships_every_served_asset() -> None:
    folder = files("flowstage.api") / ASSETS_FOLDER
    assert (files("flowstage.api") / "static/swagger/swagger-ui-bundle.js").is_file()
    present = {entry.name for entry in folder.iterdir() if entry.is_file()}
    assert present == set(ASSETS), "each vendored file is served, and each served one is vendored"
    package = ROOT / "src" / "flowstage"
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["flowstage"]
    shipped = {path.relative_to(package).as_posix() for pattern in globs for path in package.glob(pattern)}
    missing = sorted(f"api/{ASSETS_FOLDER}/{name}" for name in ASSETS if f"api/{ASSETS_FOLDER}/{name}" not in shipped)
    assert not missing, f"not in [tool.setuptools.package-data] of pyproject.toml: {missing}"
