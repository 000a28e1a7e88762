"""What the CLI prints: every log line, only JSON on `--json` stdout, valid JSON in valid UTF-8, sizes capped.

- `logs RUN` (and `--json`) page through every line of a run, however many (a page is 5,000).
- An in-process python task's `print` goes to its logs (stdout as info, stderr as warning), as a
  child process's output does, never to the runner's stdout; tasks on other threads at the same
  time keep their own lines.
- `--json` output is valid JSON (NaN and infinity are null) in valid UTF-8 (a lone surrogate, from
  an argument that is not UTF-8, is U+FFFD).
- A log line keeps 64 KiB (the rest cut, with a marker saying how much); a saved value larger than
  1 MiB as JSON fails its task with a clear error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import FLOWSTAGE, Project
from tests.records import record_of, tasks_of


def strict_json(data: bytes) -> Any:
    """`data` parsed as JSON in UTF-8, refusing NaN and infinity (which Python's parser accepts)."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


def cli_bytes(project: Project, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*FLOWSTAGE, *args], cwd=project.root, capture_output=True, env=project.env(), check=False, timeout=300)


def log_lines(project: Project, run_id: str, *args: str) -> list[dict[str, Any]]:
    result = cli_bytes(project, "logs", run_id, *args, "--json")
    assert result.returncode == 0, result.stderr
    lines: list[dict[str, Any]] = strict_json(result.stdout)
    return lines


# ---------------------------------------------------------------------------------------------- logs


def test_logs_pages_through_every_line_of_a_run(project: Project) -> None:
    project.write(
        "workflows/chatty.yaml",
        """
        name: chatty
        tasks:
          - name: talk
            shell: seq 1 23456
        """,
    )
    run = project.cli("run", "chatty", "--json")
    assert run.code == 0, run
    run_id = record_of(run)["id"]

    text = project.cli("logs", run_id, "talk")
    assert text.code == 0, text
    said = [line.rsplit(": ", 1)[1] for line in text.out.splitlines() if line.split()[3] == "INFO"]  # date time zone LEVEL
    numbers = [s for s in said if s.isdigit()]
    assert numbers == [str(n) for n in range(1, 23457)]

    lines = log_lines(project, run_id, "talk")
    assert [ln["message"] for ln in lines if ln["message"].isdigit()] == [str(n) for n in range(1, 23457)]
    ids = [ln["id"] for ln in lines]
    assert ids == sorted(set(ids))
    assert len(log_lines(project, run_id)) > len(lines)  # the run's own lines too


def test_logs_json_of_a_run_without_lines_of_a_task_is_an_empty_array(project: Project) -> None:
    project.write("workflows/quiet.yaml", "name: quiet\ntasks:\n  - {name: hush, shell: 'true'}\n")
    run_id = record_of(project.cli("run", "quiet", "--json"))["id"]

    assert log_lines(project, run_id, "hush", "--level", "error") == []


# ---------------------------------------------------------------------------------------------- in-process output

TASKS = """
import sys
import threading
import time

both_running = threading.Barrier(2, timeout=30)


def chatter(who, lines):
    both_running.wait()  # the two tasks print at the same time, on two threads of the runner
    for i in range(lines):
        print(f"{who} says {i}")
        if i % 50 == 0:
            print(f"{who} warns {i}", file=sys.stderr)
            time.sleep(0.001)
    sys.stdout.write(f"{who} done without a newline")
    return who
"""


def test_in_process_print_goes_to_the_task_logs_and_never_to_json_stdout(project: Project) -> None:
    project.write("tasks/chat.py", TASKS)
    project.write(
        "workflows/chat.yaml",
        """
        name: chat
        tasks:
          - {name: alpha, python: "tasks/chat.py:chatter", in_process: true, with: {who: alpha, lines: 300}, save: a}
          - {name: beta, python: "tasks/chat.py:chatter", in_process: true, with: {who: beta, lines: 300}, save: b}
        """,
    )
    result = cli_bytes(project, "run", "chat", "--json")

    assert result.returncode == 0, result.stderr
    record = strict_json(result.stdout)  # stdout carries only the document
    assert b"says" not in result.stdout
    assert b"says" not in result.stderr
    assert {record["variables"]["a"], record["variables"]["b"]} == {"alpha", "beta"}
    for who in ("alpha", "beta"):
        lines = log_lines(project, record["id"], who)
        said = [ln["message"] for ln in lines if " says " in ln["message"] or " done " in ln["message"]]
        assert said == [f"{who} says {i}" for i in range(300)] + [f"{who} done without a newline"]
        assert all(ln["level"] == "info" for ln in lines if " says " in ln["message"])
        warned = [ln for ln in lines if " warns " in ln["message"]]
        assert [ln["message"] for ln in warned] == [f"{who} warns {i}" for i in range(0, 300, 50)]
        assert {ln["level"] for ln in warned} == {"warning"}


# ---------------------------------------------------------------------------------------------- valid JSON, valid UTF-8


def test_json_output_stays_valid_with_nan_infinity_and_bytes_that_are_not_utf8(project: Project) -> None:
    project.write(
        "tasks/odd.py",
        """
        def odd(text):
            return {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "list": [1.5, float("nan")], "text": text}
        """,
    )
    project.write(
        "workflows/odd.yaml",
        """
        name: odd
        variables: {x: ""}
        tasks:
          - name: odd
            python: tasks/odd.py:odd
            with: {text: "<{{ var.x }}>"}
            save: odd
          - name: sql_nan
            sql: SELECT 'NaN'::DOUBLE AS v
            save: v
        """,
    )
    run = cli_bytes(project, "run", "odd", "--var", "x=a\udcffb", "--json")  # the argument's bytes: a, 0xff, b
    assert run.returncode == 0, run.stderr
    record = strict_json(run.stdout)
    expected = {"nan": None, "inf": None, "ninf": None, "list": [1.5, None], "text": "<a\ufffdb>"}
    assert record["variables"]["odd"] == expected
    assert record["variables"]["v"] is None
    assert record["variables"]["x"] == "a\ufffdb"

    shown = cli_bytes(project, "show", record["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert tasks_of(strict_json(shown.stdout))["odd"]["saved"]["odd"] == expected
    for args in (("runs", "--json"), ("logs", record["id"], "--json")):
        result = cli_bytes(project, *args)
        assert result.returncode == 0, result.stderr
        strict_json(result.stdout)


# ---------------------------------------------------------------------------------------------- sizes


def test_a_huge_log_line_is_cut_at_64_kib_with_a_marker_and_the_runner_stays_small(project: Project) -> None:
    project.write(
        "workflows/flood.yaml",
        """
        name: flood
        tasks:
          - name: flood
            # 100 MB on one line, then a short line on each stream
            shell: head -c 100000000 /dev/zero | tr '\\0' x; echo; echo after; echo oops >&2
        """,
    )
    # a parent of its own, so that the children's peak it reports is the runner's (and its helpers')
    measure = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True);"
        " print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run(
        [sys.executable, "-c", measure, *FLOWSTAGE, "run", "flood"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=project.env(),
        check=True,
        timeout=300,
    )
    code, peak_kb = map(int, result.stdout.split())
    assert code == 0, result

    run_id = record_of(project.cli("runs", "flood", "--json"))[0]["id"]
    lines = [ln for ln in log_lines(project, run_id, "flood") if "task flood" not in ln["message"]]
    assert [ln["message"] for ln in lines[1:]] == ["after", "oops"]
    big = lines[0]["message"]
    assert big == "x" * 65536 + f" … [{100_000_000 - 65536:,} bytes cut]"
    assert peak_kb / 1024 < 200, f"the runner grew to {peak_kb / 1024:.0f} MB"


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "worker"])
def test_a_saved_value_over_1_mib_fails_its_task_with_a_clear_error(project: Project, in_process: bool) -> None:
    project.write(
        "tasks/big.py",
        """
        def big(size):
            return "x" * size
        """,
    )
    flag = "true" if in_process else "false"
    project.write(
        "workflows/big.yaml",
        f"""
        name: big
        tasks:
          - {{name: fits, python: "tasks/big.py:big", in_process: {flag}, with: {{size: 1000000}}, save: fits}}
          - {{name: too_big, python: "tasks/big.py:big", in_process: {flag}, with: {{size: 1100000}}, save: too_big}}
        """,
    )
    run = project.cli("run", "big", "--json")

    assert run.code == 1, run
    record = record_of(run)
    tasks = tasks_of(record)
    assert tasks["fits"]["status"] == "succeeded"
    assert len(record["variables"]["fits"]) == 1_000_000
    assert tasks["too_big"]["status"] == "failed"
    assert "1,100,000 bytes as JSON, more than a saved value may hold (1,048,576 bytes)" in tasks["too_big"]["error"]
    assert "too_big" not in record["variables"]


def test_save_rows_over_1_mib_fails_the_task(project: Project) -> None:
    project.write(
        "workflows/rows.yaml",
        """
        name: rows
        tasks:
          - name: wide
            sql: SELECT range AS n, repeat('y', 200) AS pad FROM range(9000)
            save_rows: wide
        """,
    )
    run = project.cli("run", "rows", "--json")

    assert run.code == 1, run
    error = tasks_of(record_of(run))["wide"]["error"]
    assert "save_rows: the result is" in error
    assert "more than a saved value may hold" in error
