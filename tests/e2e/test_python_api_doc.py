"""docs/python-api.md, run as written: its Python blocks in order in one namespace, in a new project.

A block whose first line is a comment naming a ``.py`` file is that file's content (written, not
run); the YAML block after "The file now reads:" is the edited file, word for word; the `sh`
blocks' commands run through the CLI and exit 0.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from tests.conftest import FLOWSTAGE, Project

DOC = (Path(__file__).resolve().parents[2] / "docs" / "python-api.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(python|yaml|sh)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_the_python_api_doc_runs_as_written(project: Project) -> None:
    os.chdir(project.root)  # `run` and the relative paths of the doc use the current folder (put back after)
    namespace: dict[str, object] = {"__name__": "python_api_doc"}
    blocks = [(m.group(1), m.group(2), DOC[: m.start()]) for m in BLOCK.finditer(DOC)]
    assert [kind for kind, _, _ in blocks].count("python") >= 5
    ran = 0
    for kind, code, before in blocks:
        first = code.splitlines()[0]
        if kind == "python" and re.fullmatch(r"# [\w/.-]+\.py", first):
            project.write(first[2:], code)
        elif kind == "python":
            exec(compile(code, "docs/python-api.md", "exec"), namespace)
            ran += 1
        elif kind == "yaml" and before.rstrip().endswith("The file now reads:"):
            assert (project.root / "workflows" / "nightly.yaml").read_text() == code
        elif kind == "sh":
            for line in code.splitlines():
                words = shlex.split(line)
                assert words[0] == "flowstage"
                proc = subprocess.run(
                    [*FLOWSTAGE, *words[1:]], cwd=project.root, capture_output=True, text=True, env=project.env()
                )
                assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
                if "--json" in words:
                    record = json.loads(proc.stdout)
                    assert (record["workflow"], record["status"]) == ("regions_report", "succeeded")
                    assert [t["name"] for t in record["tasks"]] == ["report_EU", "report_US", "report_APAC"]
    assert ran >= 4
    assert (project.root / "workflows" / "orders_report.yaml").is_file()
