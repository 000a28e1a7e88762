"""The README's Dask commands, taken from the README itself: a scheduler and workers started as
written (on a free port instead of 8786), then `flowstage run --executor dask://…` against them,
and everything listening on loopback only."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import CI, Project
from tests.records import wait_until

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent


def _dask_block() -> list[str]:
    section = README.split("### The Dask executor", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(180)
def test_the_readmes_dask_commands_start_a_cluster_that_runs_a_workflow(project: Project) -> None:
    if not (BIN / "dask").exists():
        if CI:
            pytest.fail("the dask command is not installed, and CI=true")
        pytest.skip("distributed is not installed (pip install 'flowstage[dask]')")
    lines = _dask_block()
    assert lines[0] == "pip install 'flowstage[dask]'"
    scheduler, worker, run = lines[1], lines[2], lines[3]
    assert scheduler.startswith("dask scheduler ")
    assert scheduler.endswith("&")
    assert worker.startswith("dask worker ")
    assert worker.endswith("&")
    assert run.startswith("flowstage run ")
    assert "--executor dask://127.0.0.1:8786" in run
    port, http = _free_port(), _free_port()

    def command(line: str) -> list[str]:
        line = line.rstrip("&").strip().replace("8786", str(port)).replace("127.0.0.1:8787", f"127.0.0.1:{http}")
        words = shlex.split(line)
        return [str(BIN / words[0]), *words[1:]]

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen(command(scheduler), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    try:
        wait_until(lambda: _listening(port), 60, "the scheduler to listen")
        procs.append(subprocess.Popen(command(worker), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        project.write(
            "workflows/orders_pipeline.yaml",
            "name: orders_pipeline\ntasks: [{name: hello, shell: 'echo hi from $FLOWSTAGE_DASK_WORKER'}]\n",
        )
        result = project.cli(*command(run)[1:])
        assert result.code == 0, result.err
        listening = [
            conn.laddr
            for proc in procs
            for member in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            for conn in member.net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN
        ]
        assert listening, "the cluster listens nowhere"
        assert all(addr.ip == "127.0.0.1" for addr in listening), f"the cluster listens beyond loopback: {listening}"
        logs = project.cli("logs", re.search(r"run (\S+) ", result.out).group(1)).out  # type: ignore[union-attr]
        assert "hi from tcp://127.0.0.1:" in logs
    finally:
        for proc in reversed(procs):
            for member in psutil.Process(proc.pid).children(recursive=True):
                member.kill()
            proc.kill()
            proc.wait(timeout=30)
