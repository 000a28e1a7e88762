"""The README's short tour, taken from the README itself and run word for word on a new project, so
the two cannot drift: each command exits as its comment says (`exit N`, else 0), on a copy made by
`flowstage init`; RUN_ID is the latest run (for `resume`, the latest failed one)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import Project

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def tour_commands() -> list[tuple[list[str], int]]:
    section = README.split("### A short tour", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "the tour has a sh block"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        said = re.search(r"exit (\d)", line.split("#", 1)[1]) if "#" in line else None
        if words:
            commands.append((words, int(said.group(1)) if said else 0))
    return commands


def test_the_readme_tour_runs_as_written(project: Project, tmp_path: Path) -> None:
    commands = tour_commands()
    assert commands[0][0] == ["cd", "examples/demo"]
    demo = tmp_path / "demo"
    made = subprocess.run([sys.executable, "-m", "flowstage", "init", str(demo)], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    latest = failed = ""
    for words, code in commands[1:]:
        assert words[0] == "../../.venv/bin/flowstage", words
        run_id = failed if words[1] == "resume" else latest
        args = [run_id if w == "RUN_ID" else w for w in words[1:]]
        proc = subprocess.run(
            [sys.executable, "-m", "flowstage", *args], cwd=demo, capture_output=True, text=True, timeout=300, env=project.env()
        )
        assert "Traceback" not in proc.stderr, (words, proc.stderr)
        assert proc.returncode == code, (words, proc.stdout, proc.stderr)
        if args[0] == "run":
            listed = subprocess.run(
                [sys.executable, "-m", "flowstage", "runs", "--json"], cwd=demo, capture_output=True, text=True, check=True
            )
            runs = json.loads(listed.stdout)
            latest = runs[0]["id"]
            failed = next((r["id"] for r in runs if r["status"] == "failed"), failed)
    assert failed, "the tour has a failed run to resume"
