"""The CLI and the runner processes end as the interpreter would (threads, exit functions, flushed
output, exit code) but without tearing every module down: nothing a command left to the end is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import atexit, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flowstage.exiting import exit_now

out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
pool = ThreadPoolExecutor(max_workers=1)
pool.submit(lambda: (time.sleep(0.3), (out / "pool").write_text("finished")))
sys.stdout.write("buffered, never flushed by the probe")
code = sys.argv[2]
exit_now(None if code == "none" else int(code) if code.lstrip("-").isdigit() else code)
"""


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [("none", 0, ""), ("0", 0, ""), ("1", 1, ""), ("3", 3, ""), ("130", 130, ""), ("a message", 1, "a message\n")],
)
def test_the_exit_waits_for_threads_runs_exit_functions_flushes_and_keeps_the_code(
    tmp_path: Path, code: str, status: int, stderr: str
) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), code], capture_output=True, text=True, timeout=60, check=False
    )
    assert ended.returncode == status, ended.stderr
    assert ended.stderr == stderr
    assert ended.stdout == "buffered, never flushed by the probe"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "pool").read_text() == "finished"  # a pool's pending work is done, as at a normal exit
