"""The README's server tour, run as it is written: bash, curl and `flowstage` on a project that
`flowstage init` made (only the port is changed, to a free one)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.integration.test_api import _free_port

README = Path(__file__).resolve().parents[2] / "README.md"


def tour() -> str:
    section = README.read_text(encoding="utf-8").split("## Run the server\n", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "the README's server section has no ```sh block"
    return found.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_server_tour_runs_as_written(project: Project, tmp_path: Path) -> None:
    script = tour()
    assert script.startswith("cd my-project\n")
    port = str(_free_port())
    work = tmp_path / "tour"
    work.mkdir()
    env = {**project.env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(["flowstage", "init", "my-project"], cwd=work, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script.replace("8080", port)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the server it starts in the background goes with it on a failure
    )
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None or proc.returncode != 0:
            os.killpg(proc.pid, signal.SIGKILL)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert '"status":"ok"' in text.replace(" ", "")
    assert '"name":"daily_sales","version":1' in text.replace(" ", "")
    assert "event: snapshot" in text
    assert "event: run_finished" in text
    assert '"status":"succeeded"' in text.replace(" ", "")
    assert "flowstage_runs{" in text
    assert text.count('"status":401') == 1
    assert text.count('"status":409') == 2
    assert "Application shutdown complete" in text
