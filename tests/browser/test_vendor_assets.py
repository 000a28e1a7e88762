"""The vendored front-end files: all in place, and working in a real browser, off the network.

The page under test loads htmx with its SSE extension, cytoscape and the CodeMirror bundle
(editor.js) from a local test server, as the web UI's pages do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import AXE, ROOT, TEST_VENDOR, VENDOR, PageLog, serve_folder, site_with_vendor

VENDORED = [
    VENDOR / "htmx.min.js",
    VENDOR / "htmx-ext-sse.js",
    VENDOR / "cytoscape.min.js",
    VENDOR / "editor.js",
    VENDOR / "editor.src.js",
    VENDOR / "package.json",
    VENDOR / "BUILD.md",
    VENDOR / "build.sh",
    VENDOR / "LICENSES" / "htmx.org.txt",
    VENDOR / "LICENSES" / "htmx-ext-sse.txt",
    VENDOR / "LICENSES" / "cytoscape.txt",
    VENDOR / "LICENSES" / "codemirror.txt",
    AXE,
    TEST_VENDOR / "axe-core.LICENSE.txt",
    TEST_VENDOR / "axe-core.LICENSE-3RD-PARTY.txt",
]
PINNED: dict[str, str] = json.loads((VENDOR / "package.json").read_text(encoding="utf-8"))["devDependencies"]

DOC = "name: demo\nstages:\n  - extract\n  - load"
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Vendored assets</title>
  <script src="htmx.min.js"></script>
  <script src="htmx-ext-sse.js"></script>
  <script src="cytoscape.min.js"></script>
</head>
<body hx-ext="sse">
  <main>
    <h1>Vendored assets</h1>
    <div id="editor"></div>
    <div id="graph" role="img" aria-label="Workflow graph" style="width: 320px; height: 160px"></div>
    <div id="live" sse-connect="/events" sse-swap="greeting">waiting</div>
  </main>
  <script type="module">
    import { createEditor } from "./editor.js";
    window.changes = [];
    window.cy = cytoscape({
      container: document.getElementById("graph"),
      layout: { name: "preset" },
      elements: [
        { data: { id: "extract" }, position: { x: 60, y: 80 } },
        { data: { id: "load" }, position: { x: 260, y: 80 } },
        { data: { id: "extract-load", source: "extract", target: "load" } },
      ],
    });
    window.editor = createEditor(document.getElementById("editor"), {
      doc: DOC_JSON,
      language: "yaml",
      label: "Workflow definition",
      onChange: (text) => window.changes.push(text),
    });
  </script>
</body>
</html>
""".replace("DOC_JSON", json.dumps(DOC))
PUSHED = '<b id="pushed">hello from the stream</b>'


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test page and copies of the assets on a local server, with an event stream at /events
    that sends one `greeting` event and stays open until the module's tests are done."""
    folder = site_with_vendor(tmp_path_factory.mktemp("site"), {"index.html": PAGE})
    done = threading.Event()

    def events(handler: SimpleHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Cache-Control", "no-store")
            handler.end_headers()
            handler.wfile.write(f"event: greeting\ndata: {PUSHED}\n\n".encode())
            handler.wfile.flush()
            done.wait(60)

    try:
        with serve_folder(folder, {"/events": events}) as url:
            yield url
    finally:
        done.set()


@pytest.fixture
def loaded(page: tuple[Any, PageLog], site: str) -> tuple[Any, PageLog]:
    opened, log = page
    opened.goto(f"{site}/index.html")
    opened.wait_for_function("window.editor !== undefined && window.cy !== undefined")
    return opened, log


def lint_text(page: Any, selector: str) -> str:
    """The text under the marks that match `selector` (a mark may be split around syntax spans)."""
    text: str = page.eval_on_selector_all(selector, "els => els.map(e => e.textContent).join('')")
    return text


@pytest.mark.parametrize("path", VENDORED, ids=lambda p: p.name)
def test_every_vendored_file_is_in_place_and_not_empty(path: Path) -> None:
    assert path.is_file(), f"{path} is missing: rebuild with {VENDOR / 'build.sh'}"
    assert path.stat().st_size > 0


def test_the_files_are_the_ones_build_md_lists_so_editor_js_was_rebuilt_from_its_source() -> None:
    sums = re.findall(r"^([0-9a-f]{64})  (\S+)$", (VENDOR / "BUILD.md").read_text(encoding="utf-8"), re.M)
    listed = {path: digest for digest, path in sums}
    built = [p for p in VENDORED if p.name not in ("BUILD.md", "build.sh", "package.json")]
    assert sorted(listed) == sorted(str(p.relative_to(ROOT)) for p in built)
    for path in built:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert listed[str(path.relative_to(ROOT))] == digest, f"{path} is not the file BUILD.md lists: run build.sh"


def test_the_editor_underlines_a_problem_marks_its_line_and_shows_its_message_on_hover(loaded: tuple[Any, PageLog]) -> None:
    page, log = loaded
    assert page.locator(".cm-editor .cm-lineNumbers").is_visible()
    assert page.locator(".cm-lintRange").count() == 0

    page.evaluate("editor.setProblems([{line: 2, col: 3, message: 'boom'}])")

    assert lint_text(page, ".cm-lintRange-error") == "ages:"  # from column 3 of "stages:" to the word's end
    assert page.locator(".cm-gutter-lint .cm-lint-marker-error").count() == 1
    page.locator(".cm-lintRange-error").first.hover()
    assert page.locator(".cm-tooltip-lint").inner_text() == "boom"
    log.assert_clean()


def test_a_problem_without_a_column_marks_its_whole_line_and_one_past_the_end_is_clamped(loaded: tuple[Any, PageLog]) -> None:
    page, log = loaded
    page.evaluate(
        "editor.setProblems([{line: 3, message: 'whole line', severity: 'warning'},"
        " {line: 99, col: 99, message: 'past the end'}])"
    )
    assert lint_text(page, ".cm-lintRange-warning") == "  - extract"
    assert lint_text(page, ".cm-lintRange-error") == "d"  # the last character of the last line
    assert page.locator(".cm-lint-marker-warning").count() == 1
    assert page.locator(".cm-lint-marker-error").count() == 1

    page.evaluate("editor.setProblems([])")
    assert page.locator(".cm-lintRange").count() == 0
    assert page.locator(".cm-lint-marker").count() == 0
    log.assert_clean()


def test_the_editor_reports_typed_edits_not_set_text_and_switches_language(loaded: tuple[Any, PageLog]) -> None:
    page, log = loaded
    assert page.locator(".cm-content").get_attribute("data-language") == "yaml"

    page.evaluate("editor.focus()")
    assert page.evaluate("document.activeElement.classList.contains('cm-content')")
    page.keyboard.press("Control+End")
    page.keyboard.type("\n- report")
    typed = page.evaluate("editor.getText()")
    assert typed.startswith(DOC)
    assert "report" in typed
    assert page.evaluate("changes.at(-1)") == typed

    seen = page.evaluate("changes.length")
    page.evaluate("editor.setText('{\"name\": \"demo\"}'); editor.setLanguage('json')")
    assert page.evaluate("editor.getText()") == '{"name": "demo"}'
    assert page.evaluate("changes.length") == seen
    assert page.locator(".cm-content").get_attribute("data-language") == "json"

    error = page.evaluate("() => { try { editor.setLanguage('toml'); return null } catch (e) { return e.message } }")
    assert error is not None
    assert "toml" in error
    log.assert_clean()


def test_htmx_with_its_sse_extension_swaps_in_a_pushed_event(loaded: tuple[Any, PageLog]) -> None:
    page, log = loaded
    assert page.evaluate("htmx.version") == PINNED["htmx.org"]
    page.locator("#live #pushed").wait_for()
    assert page.locator("#live").inner_text() == "hello from the stream"
    log.assert_clean()


def test_cytoscape_draws_the_graph_at_its_preset_positions(loaded: tuple[Any, PageLog]) -> None:
    page, log = loaded
    assert page.evaluate("cytoscape.version") == PINNED["cytoscape"]
    assert page.evaluate("[cy.nodes().length, cy.edges().length]") == [2, 1]
    assert page.evaluate("cy.$id('load').position()") == {"x": 260, "y": 80}
    assert page.locator("#graph canvas").count() > 0
    log.assert_clean()


def test_axe_finds_no_accessibility_violations_on_the_page(loaded: tuple[Any, PageLog]) -> None:
    page, log = loaded
    page.add_script_tag(url="axe.min.js")
    assert page.evaluate("axe.version") == PINNED["axe-core"]
    violations = page.evaluate("axe.run(document).then(r => r.violations.map(v => [v.id, v.nodes.map(n => n.target)]))")
    assert violations == []
    log.assert_clean()
