"""Browser tests: headless Chromium from the system (/usr/bin/chromium, Debian's package) driven by
Playwright, on pages served from 127.0.0.1. Playwright's own browser downloads are never used.

Without Chromium these tests skip with the reason; with CI=true a missing Chromium is a failure.
Every page is kept off the network: a request to anything but the local test server is aborted
and recorded, and the console errors and uncaught exceptions of the page are recorded too, so a
test can assert that a page loaded cleanly and by itself.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import CI

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "src" / "flowstage" / "web" / "static" / "vendor"
TEST_VENDOR = Path(__file__).resolve().parent / "vendor"
AXE = TEST_VENDOR / "axe.min.js"


def _no_browser(reason: str) -> None:
    if CI:
        pytest.fail(f"{reason}, and CI=true: the browser tests must run in CI (apt-get install -y chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium per test process."""
    if not CHROMIUM.exists():
        _no_browser(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


# a route writes the whole answer to a GET of its path (status, headers, body) on the handler it is given
Route = Callable[[SimpleHTTPRequestHandler], None]


class _Handler(SimpleHTTPRequestHandler):
    routes: dict[str, Route]

    def do_GET(self) -> None:
        route = self.routes.get(urlsplit(self.path).path)
        if route is not None:
            route(self)
        else:
            super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reports what matters
        pass


@contextlib.contextmanager
def serve_folder(folder: Path, routes: dict[str, Route] | None = None) -> Iterator[str]:
    """Serve `folder` (and `routes`, by path) on a free port of 127.0.0.1; yields the base URL."""
    handler = type("Handler", (_Handler,), {"routes": routes or {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def site_with_vendor(folder: Path, pages: dict[str, str]) -> Path:
    """`folder` with copies of the vendored front-end files (and axe) beside the given pages."""
    folder.mkdir(parents=True, exist_ok=True)
    for asset in [*VENDOR.glob("*.js"), AXE]:
        shutil.copy(asset, folder / asset.name)
    for name, text in pages.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@dataclass
class PageLog:
    """What a page said or tried that a test should see: console errors, uncaught exceptions,
    and requests to anywhere but 127.0.0.1 (aborted)."""

    errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.errors == [], f"the page reported errors: {self.errors}"
        assert self.outside_requests == [], f"the page reached outside 127.0.0.1: {self.outside_requests}"


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, PageLog]]:
    """A fresh page (its own context) kept to 127.0.0.1, with its log."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    log = PageLog()

    def keep_local(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:
            log.outside_requests.append(url)
            route.abort()

    context.route("**/*", keep_local)
    opened = context.new_page()
    opened.on("console", lambda msg: log.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    opened.on("pageerror", lambda exc: log.errors.append(f"uncaught: {exc}"))
    try:
        yield opened, log
    finally:
        context.close()
