"""`flowstage run` and the commands around a run (`show`, `logs`, `runs`, `graph`, `cancel`, `resume`).

Each test writes a small project in tmp_path and drives the real CLI in a child process, as a user
types it. Slow tasks are `sleep` processes with a unique duration (`sleep 300.042917`) so that a
test can tell its own processes apart when it checks that a kill reached them.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psutil
import pytest

from tests.conftest import Project
from tests.records import processes_with, record_of, shell_wait_for, tasks_of, wait_until

RUN_KEYS = {"id", "workflow", "version", "status", "started_at", "ended_at", "variables", "tasks"}
TASK_KEYS = {"name", "stage", "status", "reason", "attempts", "started_at", "ended_at", "error", "metrics", "saved"}


# ---------------------------------------------------------------------------------------------- helpers


def show(project: Project, run_id: str) -> dict[str, Any]:
    result = project.cli("show", run_id, "--json")
    assert result.code == 0, result
    return record_of(result)


def latest_run_id(project: Project) -> str:
    result = project.cli("runs", "--json", "--limit", "1")
    assert result.code == 0, result
    return str(json.loads(result.out)[0]["id"])


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def sleep_token() -> Iterator[str]:
    """A `sleep` duration of about five minutes that no other process uses; leftovers are killed after the test."""
    token = f"300.{secrets.randbelow(10**6):06d}"
    yield token
    for proc in processes_with(token):
        try:
            proc.kill()
        except psutil.Error:
            pass


def assert_no_process_left(token: str) -> None:
    wait_until(lambda: not processes_with(token), 30, f"the `sleep {token}` processes to end", every=0.1)


# ---------------------------------------------------------------------------------------------- stages
def test_staged_workflow_runs_stages_one_after_another_and_their_tasks_in_parallel(project: Project) -> None:
    # each extract task marks itself started, then waits for the other two: they can only end
    # if they run at the same time
    together = shell_wait_for("eu.started", "us.started", "apac.started")
    project.write(
        "workflows/staged.yaml",
        f"""
        name: staged
        stages:
          - name: extract
            tasks:
              - {{name: extract_eu, shell: "touch eu.started; {together}; echo eu"}}
              - {{name: extract_us, shell: "touch us.started; {together}; echo us"}}
              - {{name: extract_apac, shell: "touch apac.started; {together}; echo apac"}}
          - name: load
            tasks:
              - {{name: load_all, shell: echo load}}
              - {{name: load_audit, shell: echo audit}}
          - name: report
            tasks:
              - {{name: report, shell: echo report}}
        """,
    )

    result = project.cli("run", "staged", "--json")

    assert result.code == 0, result
    record = record_of(result)
    assert set(record) >= RUN_KEYS
    assert record["workflow"] == "staged"
    assert record["status"] == "succeeded"
    assert isinstance(record["id"], str)
    assert when(record["started_at"]).utcoffset() is not None
    assert when(record["ended_at"]) >= when(record["started_at"])
    tasks = tasks_of(record)
    assert list(tasks) == ["extract_eu", "extract_us", "extract_apac", "load_all", "load_audit", "report"]
    for t in record["tasks"]:
        assert set(t) >= TASK_KEYS, t
        assert t["status"] == "succeeded"
        assert len(t["attempts"]) == 1
        assert t["error"] is None
    assert {n: t["stage"] for n, t in tasks.items()} == {
        "extract_eu": "extract",
        "extract_us": "extract",
        "extract_apac": "extract",
        "load_all": "load",
        "load_audit": "load",
        "report": "report",
    }
    extract = [tasks[n] for n in ("extract_eu", "extract_us", "extract_apac")]
    # parallel: every extract task started before any of them ended
    assert max(when(t["started_at"]) for t in extract) < min(when(t["ended_at"]) for t in extract)
    # one after another: a stage starts when the stage before it has ended
    for later in ("load_all", "load_audit"):
        assert when(tasks[later]["started_at"]) >= max(when(t["ended_at"]) for t in extract)
    assert when(tasks["report"]["started_at"]) >= max(when(tasks[n]["ended_at"]) for n in ("load_all", "load_audit"))


def test_failing_task_fails_the_run_with_exit_1_and_skips_the_next_stage(project: Project) -> None:
    project.write(
        "workflows/fails.yaml",
        """
        name: fails
        stages:
          - name: one
            tasks:
              - {name: ok, shell: echo fine}
              - {name: broken, shell: "echo about to fail >&2; exit 7"}
          - name: two
            tasks:
              - {name: next, shell: touch next-ran}
        """,
    )

    result = project.cli("run", "fails", "--json")

    assert result.code == 1, result
    record = record_of(result)
    assert record["status"] == "failed"
    tasks = tasks_of(record)
    assert tasks["ok"]["status"] == "succeeded"
    assert tasks["broken"]["status"] == "failed"
    assert "7" in tasks["broken"]["error"]
    assert tasks["next"]["status"] == "skipped"
    assert "broken" in tasks["next"]["reason"]
    assert not (project.root / "next-ran").exists()


def test_failure_edge_catches_a_failure_and_the_run_succeeds(project: Project) -> None:
    project.write(
        "workflows/trycatch.yaml",
        """
        name: trycatch
        tasks:
          - name: load_feed
            shell: exit 3
          - name: fallback
            after: {load_feed: failure}
            shell: echo using yesterday
          - name: mark_fresh
            after: [load_feed]
            shell: echo fresh
        """,
    )

    result = project.cli("run", "trycatch", "--json")

    assert result.code == 0, result
    record = record_of(result)
    assert record["status"] == "succeeded"
    tasks = tasks_of(record)
    assert tasks["load_feed"]["status"] == "failed"
    assert tasks["load_feed"]["error"]
    assert tasks["fallback"]["status"] == "succeeded"
    assert tasks["mark_fresh"]["status"] == "skipped"
    assert tasks["mark_fresh"]["reason"] == "needs load_feed=success; load_feed failed"


def test_completion_edge_is_a_finally_that_catches_nothing(project: Project) -> None:
    project.write(
        "workflows/finally.yaml",
        """
        name: finally
        tasks:
          - name: work
            shell: exit 3
          - name: cleanup
            after: {work: completion}
            shell: touch cleaned
        """,
    )

    result = project.cli("run", "finally", "--json")

    assert result.code == 1, result
    record = record_of(result)
    assert record["status"] == "failed"
    tasks = tasks_of(record)
    assert tasks["work"]["status"] == "failed"
    assert tasks["cleanup"]["status"] == "succeeded"
    assert (project.root / "cleaned").exists()


# ---------------------------------------------------------------------------------------------- retries, timeouts
FLAKY = """
from pathlib import Path


def flaky(counter, fail_times):
    path = Path(counter)
    seen = int(path.read_text()) if path.exists() else 0
    path.write_text(str(seen + 1))
    if seen < fail_times:
        raise RuntimeError(f"attempt {seen + 1} fails")
    return seen + 1
"""


def test_retries_run_a_failing_task_again_and_record_every_attempt(project: Project) -> None:
    project.write("tasks/flaky.py", FLAKY)
    project.write(
        "workflows/retry.yaml",
        """
        name: retry
        tasks:
          - name: flaky
            python: tasks/flaky.py:flaky
            with: {counter: counter.txt, fail_times: 2}
            retries: 2
            retry_delay: 0s
            save: tries
        """,
    )

    result = project.cli("run", "retry", "--json")

    assert result.code == 0, result
    record = record_of(result)
    assert record["status"] == "succeeded"
    flaky = tasks_of(record)["flaky"]
    assert flaky["status"] == "succeeded"
    assert [a["status"] for a in flaky["attempts"]] == ["failed", "failed", "succeeded"]
    assert [a["number"] for a in flaky["attempts"]] == [1, 2, 3]
    assert "attempt 1 fails" in flaky["attempts"][0]["error"]
    assert "attempt 2 fails" in flaky["attempts"][1]["error"]
    assert all(a["started_at"] and a["ended_at"] for a in flaky["attempts"])
    assert flaky["metrics"]["attempts"] == 3
    assert flaky["saved"] == {"tries": 3}
    assert (project.root / "counter.txt").read_text() == "3"


def test_a_task_that_fails_past_its_retries_fails_the_run(project: Project) -> None:
    project.write("tasks/flaky.py", FLAKY)
    project.write(
        "workflows/hopeless.yaml",
        """
        name: hopeless
        preferences: {retries: 1, retry_delay: 0s}
        tasks:
          - name: hopeless
            python: tasks/flaky.py:flaky
            with: {counter: counter.txt, fail_times: 5}
        """,
    )

    result = project.cli("run", "hopeless", "--json")

    assert result.code == 1, result
    hopeless = tasks_of(record_of(result))["hopeless"]
    assert hopeless["status"] == "failed"
    assert [a["status"] for a in hopeless["attempts"]] == ["failed", "failed"]
    assert "attempt 2 fails" in hopeless["error"]


def test_timed_out_task_is_killed_with_every_process_it_started(project: Project, sleep_token: str) -> None:
    project.write(
        "workflows/slow.yaml",
        f"""
        name: slow
        tasks:
          - name: slow
            shell: sh -c 'sleep {sleep_token} & sleep {sleep_token}'
            timeout: 1s
        """,
    )

    t0 = time.monotonic()
    result = project.cli("run", "slow", "--json", timeout=200)
    took = time.monotonic() - t0

    assert result.code == 1, result
    assert took < 100, f"a 1s timeout took {took:.1f}s: it waited for the task"
    record = record_of(result)
    assert record["status"] == "failed"
    slow = tasks_of(record)["slow"]
    assert slow["status"] == "timed_out"
    assert slow["attempts"][0]["status"] == "timed_out"
    assert "timed out" in slow["error"]
    assert_no_process_left(sleep_token)


def test_run_timeout_stops_the_run_as_timed_out(project: Project, sleep_token: str) -> None:
    project.write(
        "workflows/endless.yaml",
        f"""
        name: endless
        preferences: {{run_timeout: 1s}}
        stages:
          - name: work
            tasks:
              - {{name: forever, shell: "sleep {sleep_token}"}}
          - name: after
            tasks:
              - {{name: never, shell: touch never-ran}}
        """,
    )

    t0 = time.monotonic()
    result = project.cli("run", "endless", "--json", timeout=200)
    took = time.monotonic() - t0

    assert result.code == 1, result
    assert took < 100, f"a 1s run timeout took {took:.1f}s: it waited for the task"
    record = record_of(result)
    assert record["status"] == "timed_out"
    tasks = tasks_of(record)
    assert tasks["forever"]["status"] == "timed_out"
    assert tasks["never"]["status"] == "cancelled"
    assert not (project.root / "never-ran").exists()
    assert_no_process_left(sleep_token)


# ---------------------------------------------------------------------------------------------- variables
ECHO = """
def echo(**kwargs):
    return kwargs


def rows(n):
    return {"rows": n * 2, "label": "counted"}
"""


def test_var_overrides_reach_templates_with_their_yaml_types(project: Project) -> None:
    project.write("tasks/echo.py", ECHO)
    project.write(
        "workflows/vars.yaml",
        """
        name: vars
        variables: {region: EU, n: 1, unused: kept}
        tasks:
          - name: shout
            shell: echo {{ var.region }}-{{ var.n * 2 }}-{{ run.workflow }} > shout.txt
          - name: typed
            python: tasks/echo.py:echo
            with: {region: "{{ var.region }}", n: "{{ var.n }}", label: "n={{ var.n }}", flag: "{{ var.flag }}"}
            save: echoed
        """,
    )

    result = project.cli("run", "vars", "--var", "region=APAC", "--var", "n=21", "--var", "flag=true", "--json")

    assert result.code == 0, result
    record = record_of(result)
    assert record["variables"]["region"] == "APAC"
    assert record["variables"]["n"] == 21
    assert record["variables"]["unused"] == "kept"
    assert (project.root / "shout.txt").read_text().strip() == "APAC-42-vars"
    assert tasks_of(record)["typed"]["saved"] == {"echoed": {"region": "APAC", "n": 21, "label": "n=21", "flag": True}}


def test_shell_template_values_cannot_inject_commands(project: Project) -> None:
    project.write(
        "workflows/inject.yaml",
        """
        name: inject
        variables: {name: world}
        tasks:
          - name: greet
            shell: echo hello {{ var.name }} > greeting.txt
        """,
    )

    result = project.cli("run", "inject", "--var", "name=x; touch hacked", "--json")

    assert result.code == 0, result
    assert not (project.root / "hacked").exists()
    assert (project.root / "greeting.txt").read_text().strip() == "hello x; touch hacked"


SAVE_AND_IF = """
name: counting
variables: {n: 1}
stages:
  - name: count
    tasks:
      - name: count
        python: tasks/echo.py:rows
        with: {n: "{{ var.n }}"}
        save: {rows: rows, label: label}
  - name: use
    tasks:
      - name: use
        shell: echo {{ var.label }} {{ var.rows }} > used.txt
      - name: big_day
        if: var.rows > 10
        shell: touch big-day
"""


def test_saved_variables_reach_the_tasks_that_start_later(project: Project) -> None:
    project.write("tasks/echo.py", ECHO)
    project.write("workflows/counting.yaml", SAVE_AND_IF)

    result = project.cli("run", "counting", "--var", "n=21", "--json")

    assert result.code == 0, result
    record = record_of(result)
    assert tasks_of(record)["count"]["saved"] == {"rows": 42, "label": "counted"}
    assert record["variables"]["rows"] == 42
    assert (project.root / "used.txt").read_text().strip() == "counted 42"
    assert tasks_of(record)["big_day"]["status"] == "succeeded"
    assert (project.root / "big-day").exists()


def test_false_if_skips_the_task_and_show_tells_why(project: Project) -> None:
    project.write("tasks/echo.py", ECHO)
    project.write("workflows/counting.yaml", SAVE_AND_IF)

    result = project.cli("run", "counting", "--json")

    assert result.code == 0, result
    assert record_of(result)["status"] == "succeeded"
    shown = tasks_of(show(project, record_of(result)["id"]))
    assert shown["big_day"]["status"] == "skipped"
    assert shown["big_day"]["reason"] == "if: var.rows > 10 is false"
    assert shown["big_day"]["attempts"] == []
    assert shown["use"]["status"] == "succeeded"
    assert not (project.root / "big-day").exists()


# ---------------------------------------------------------------------------------------------- logs
TALKATIVE = """
name: talk
{preferences}
tasks:
  - name: talk
    shell: echo to-stdout; echo to-stderr >&2
  - name: other
    shell: echo other-stdout
"""


def test_logs_keep_stdout_as_info_and_stderr_as_warning_and_filter_by_level_and_task(project: Project) -> None:
    project.write("workflows/talk.yaml", TALKATIVE.format(preferences=""))
    assert project.cli("run", "talk", "-q").code == 0
    run_id = latest_run_id(project)

    everything = project.cli("logs", run_id, "--json")
    warnings = project.cli("logs", run_id, "--level", "warning")
    one_task = project.cli("logs", run_id, "talk")

    assert everything.code == 0, everything
    levels = {line["message"]: line["level"] for line in json.loads(everything.out)}
    assert levels["to-stdout"] == "info"
    assert levels["to-stderr"] == "warning"
    assert levels["other-stdout"] == "info"
    for line in json.loads(everything.out):
        assert when(line["at"]).utcoffset() is not None

    assert warnings.code == 0, warnings
    assert re.search(r"WARNING\s+talk#1: to-stderr$", warnings.out, re.MULTILINE), warnings.out
    assert "to-stdout" not in warnings.out
    assert "other-stdout" not in warnings.out
    assert " INFO " not in warnings.out

    assert one_task.code == 0, one_task
    assert re.search(r"INFO\s+talk#1: to-stdout$", one_task.out, re.MULTILINE), one_task.out
    assert "to-stderr" in one_task.out
    assert "other" not in one_task.out


def test_logs_of_an_unknown_task_exit_2(project: Project) -> None:
    project.write("workflows/talk.yaml", TALKATIVE.format(preferences=""))
    assert project.cli("run", "talk", "-q").code == 0

    result = project.cli("logs", latest_run_id(project), "nobody")

    assert result.code == 2, result
    assert "nobody" in result.err


def test_log_level_warning_in_preferences_drops_info_lines(project: Project) -> None:
    project.write("workflows/talk.yaml", TALKATIVE.format(preferences="preferences: {log_level: warning}"))
    assert project.cli("run", "talk", "-q").code == 0

    result = project.cli("logs", latest_run_id(project), "--json")

    assert result.code == 0, result
    lines = json.loads(result.out)
    messages = [line["message"] for line in lines]
    assert "to-stderr" in messages
    assert "to-stdout" not in messages
    assert "other-stdout" not in messages
    assert {line["level"] for line in lines} <= {"warning", "error", "critical"}


# ---------------------------------------------------------------------------------------------- the record read back
def test_runs_lists_the_history_newest_first_with_filters(project: Project) -> None:
    project.write("workflows/good.yaml", "name: good\ntasks:\n  - {name: a, shell: echo a}\n")
    project.write("workflows/bad.yaml", "name: bad\ntasks:\n  - {name: a, shell: exit 1}\n")
    ids = []
    for name, code in (("good", 0), ("bad", 1), ("good", 0)):
        result = project.cli("run", name, "--json")
        assert result.code == code, result
        ids.append(record_of(result)["id"])

    everything = project.cli("runs", "--json")
    only_good = project.cli("runs", "good", "--json")
    only_failed = project.cli("runs", "--status", "failed", "--json")
    latest = project.cli("runs", "--limit", "1", "--json")
    table = project.cli("runs")

    assert everything.code == 0, everything
    listed = json.loads(everything.out)
    assert [r["id"] for r in listed] == ids[::-1]
    assert [r["status"] for r in listed] == ["succeeded", "failed", "succeeded"]
    assert all({"id", "workflow", "status", "started_at", "ended_at"} <= set(r) for r in listed)
    assert [r["id"] for r in json.loads(only_good.out)] == [ids[2], ids[0]]
    assert [r["id"] for r in json.loads(only_failed.out)] == [ids[1]]
    assert [r["id"] for r in json.loads(latest.out)] == [ids[2]]
    assert table.code == 0, table
    assert all(run_id in table.out for run_id in ids)
    assert "failed" in table.out


def test_show_prints_each_task_with_status_attempts_reason_and_error(project: Project) -> None:
    project.write(
        "workflows/mixed.yaml",
        """
        name: mixed
        stages:
          - name: load
            tasks:
              - {name: feed, shell: exit 4}
          - name: recover
            tasks:
              - {name: fallback, after: {feed: failure}, shell: echo ok}
              - {name: publish, after: [feed], shell: echo never}
        """,
    )
    run = project.cli("run", "mixed", "--json")
    assert run.code == 0, run
    run_id = record_of(run)["id"]

    result = project.cli("show", run_id)

    assert result.code == 0, result
    assert run_id in result.out
    assert "mixed" in result.out
    assert "succeeded" in result.out.splitlines()[0]
    lines = result.out.splitlines()
    feed = next(ln for ln in lines if re.match(r"^load\s+feed\s", ln))
    assert "failed" in feed
    assert "attempts 1" in feed
    assert any("error: command exited with code 4" in ln for ln in lines), result.out
    assert any(re.match(r"^recover\s+fallback\s+succeeded", ln) for ln in lines), result.out
    assert any(re.match(r"^recover\s+publish\s+skipped", ln) for ln in lines), result.out
    assert any("reason: needs feed=success; feed failed" in ln for ln in lines), result.out


GRAPHED = """
name: graphed
stages:
  - name: extract
    tasks:
      - {name: pull, shell: echo pull}
      - {name: fetch, shell: exit 1}
  - name: finish
    tasks:
      - {name: on_error, after: {fetch: failure}, shell: echo handled}
      - {name: tidy, after: {pull: completion}, shell: echo tidy}
"""


def test_graph_prints_the_static_view_as_text_mermaid_and_dot(project: Project) -> None:
    project.write("workflows/graphed.yaml", GRAPHED)

    text = project.cli("graph", "graphed")
    mermaid = project.cli("graph", "graphed", "--format", "mermaid")
    dot = project.cli("graph", "workflows/graphed.yaml", "--format", "dot")

    assert text.code == 0, text
    lines = text.out.splitlines()
    assert len(lines) == 4
    assert re.match(r"^extract\s+pull\b", lines[0])
    assert re.match(r"^extract\s+fetch\b", lines[1])
    assert re.match(r"^finish\s+on_error\s+after fetch=failure$", lines[2])
    assert re.match(r"^finish\s+tidy\s+after pull=completion$", lines[3])

    assert mermaid.code == 0, mermaid
    assert mermaid.out.startswith("---\ntitle: graphed\n---\nflowchart LR")
    assert "fetch -- failure --> n_on_error" in mermaid.out
    assert "pull -- completion --> n_tidy" in mermaid.out
    assert 'subgraph s0["extract"]' in mermaid.out

    assert dot.code == 0, dot
    assert dot.out.startswith('digraph "graphed"')
    assert '"fetch" -> "on_error"' in dot.out
    assert 'label="failure"' in dot.out
    assert dot.out.rstrip().endswith("}")


def test_graph_with_a_run_shows_each_task_status(project: Project) -> None:
    project.write("workflows/graphed.yaml", GRAPHED)
    run = project.cli("run", "graphed", "--json")
    assert run.code == 0, run

    result = project.cli("graph", "--run", record_of(run)["id"])

    assert result.code == 0, result
    statuses = {ln.split()[1]: ln.split()[2] for ln in result.out.splitlines()}
    assert statuses == {"pull": "succeeded", "fetch": "failed", "on_error": "succeeded", "tidy": "succeeded"}
    fetch = next(ln for ln in result.out.splitlines() if ln.split()[1] == "fetch")
    assert "failed (caught)" in fetch, "on_error caught it"


STAGED = """
name: staged
stages:
""" + "".join(
    f"  - name: s{si}\n    tasks:\n" + "".join(f"      - {{name: t{si}_{i}, shell: 'true'}}\n" for i in range(8))
    for si in range(3)
)


def test_a_stage_default_dependency_is_one_edge_from_stage_to_stage_not_every_to_every(project: Project) -> None:
    project.write("workflows/staged.yaml", STAGED)
    mermaid = project.cli("graph", "staged", "--format", "mermaid").out
    dot = project.cli("graph", "staged", "--format", "dot").out
    assert mermaid.count("-->") == 0
    assert "  s0 ==> s1\n  s1 ==> s2\n" in mermaid
    assert dot.count(" -> ") == 2, dot
    assert "lhead=cluster_1" in dot
    assert "lhead=cluster_2" in dot


def test_the_run_graph_has_a_title_a_legend_readable_text_and_skip_reasons(project: Project) -> None:
    project.write(
        "workflows/skips.yaml",
        """
        name: skips
        tasks:
          - {name: a, shell: exit 1}
          - {name: b, shell: 'true', after: [a]}
        """,
    )
    run_id = record_of(project.cli("run", "skips", "--json"))["id"]
    text = project.cli("graph", "--run", run_id).out
    b = next(ln for ln in text.splitlines() if ln.split()[1] == "b")
    assert "skipped" in b
    assert "needs a=success; a failed" in b
    mermaid = project.cli("graph", "--run", run_id, "--format", "mermaid").out
    assert "title: skips (run)" in mermaid
    assert 'subgraph legend["legend"]' in mermaid
    assert "style n_a fill:#c62828,color:#ffffff" in mermaid, "white text on red"
    dot = project.cli("graph", "--run", run_id, "--format", "dot").out
    assert 'label="skips (run)"' in dot
    assert 'fillcolor="#c62828", fontcolor="#ffffff"' in dot
    assert "cluster_legend" in dot


# ---------------------------------------------------------------------------------------------- cancel, resume
def first_line_run_id(proc: subprocess.Popen[str]) -> str:
    """The run id from the first line a piped `run` prints: ``run <id> started``."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.match(r"^run (\S+) started$", line.strip())
    assert m, f"unexpected first line {line!r}"
    return m.group(1)


def test_cancel_kills_running_tasks_and_cancels_pending_ones(project: Project, sleep_token: str) -> None:
    project.write(
        "workflows/long.yaml",
        f"""
        name: long
        preferences: {{max_parallel: 1}}
        stages:
          - name: first
            tasks:
              - {{name: quick, shell: echo quick}}
          - name: second
            tasks:
              - {{name: slow, shell: "sh -c 'sleep {sleep_token} & sleep {sleep_token}'"}}
              - {{name: queued, shell: touch queued-ran}}
          - name: third
            tasks:
              - {{name: later, shell: touch later-ran}}
        """,
    )
    with project.popen("run", "long") as proc:
        try:
            run_id = first_line_run_id(proc)
            wait_until(
                lambda: tasks_of(show(project, run_id))["slow"]["status"] == "running" and processes_with(sleep_token),
                60,
                "the slow task to run",
            )
            listed = json.loads(project.cli("runs", "--json").out)
            assert [(r["id"], r["status"]) for r in listed] == [(run_id, "running")]

            t0 = time.monotonic()
            result = project.cli("cancel", run_id)
            took = time.monotonic() - t0

            assert result.code == 0, result
            assert result.out.strip() == f"run {run_id} cancelled"
            assert took < 60  # not the task's five minutes
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.stdout is not None
        out = proc.stdout.read()
    assert proc.returncode == 1
    assert re.search(r"^\d\d:\d\d:\d\d run cancelled$", out, re.MULTILINE), out
    record = show(project, run_id)
    assert record["status"] == "cancelled"
    assert record["ended_at"] is not None
    tasks = tasks_of(record)
    assert tasks["quick"]["status"] == "succeeded"
    assert tasks["slow"]["status"] == "cancelled"
    assert tasks["slow"]["attempts"][-1]["status"] == "cancelled"
    assert tasks["queued"]["status"] == "cancelled"
    assert tasks["later"]["status"] == "cancelled"
    assert not (project.root / "queued-ran").exists()
    assert not (project.root / "later-ran").exists()
    assert_no_process_left(sleep_token)

    again = project.cli("cancel", run_id)
    assert again.code != 0
    assert "Traceback" not in again.err


def test_resume_reruns_what_failed_and_never_what_succeeded(project: Project) -> None:
    project.write(
        "workflows/marker.yaml",
        """
        name: marker
        stages:
          - name: prepare
            tasks:
              - {name: prep_a, shell: echo prep_a >> ran.log}
              - {name: prep_b, shell: echo prep_b >> ran.log}
          - name: check
            tasks:
              - {name: check, shell: echo check >> ran.log && test -f marker}
          - name: publish
            tasks:
              - {name: publish, shell: echo publish >> ran.log}
        """,
    )
    first = project.cli("run", "marker", "--json")
    assert first.code == 1, first
    failed = record_of(first)
    run_id = failed["id"]
    assert failed["status"] == "failed"
    assert tasks_of(failed)["check"]["status"] == "failed"
    assert tasks_of(failed)["publish"]["status"] == "skipped"
    (project.root / "marker").touch()

    result = project.cli("resume", run_id, "--json")

    assert result.code == 0, result
    record = record_of(result)
    assert record["id"] == run_id
    assert record["status"] == "succeeded"
    tasks = tasks_of(record)
    assert all(t["status"] == "succeeded" for t in tasks.values())
    assert [a["status"] for a in tasks["check"]["attempts"]] == ["failed", "succeeded"]
    assert len(tasks["prep_a"]["attempts"]) == 1
    assert tasks["prep_a"]["attempts"] == tasks_of(failed)["prep_a"]["attempts"]
    ran = (project.root / "ran.log").read_text().split()
    assert sorted(ran) == ["check", "check", "prep_a", "prep_b", "publish"]
    assert len(record["resumes"]) == 1
    assert record["resumes"][0]["by"]
    assert when(record["resumes"][0]["at"]) >= when(failed["ended_at"])
    assert show(project, run_id)["resumes"] == record["resumes"]

    again = project.cli("resume", run_id)
    assert again.code != 0
    assert "Traceback" not in again.err
    assert (project.root / "ran.log").read_text().split() == ran


def test_resume_keeps_saved_variables_of_succeeded_tasks(project: Project) -> None:
    project.write("tasks/echo.py", ECHO)
    project.write(
        "workflows/keep.yaml",
        """
        name: keep
        stages:
          - name: count
            tasks:
              - {name: count, python: tasks/echo.py:rows, with: {n: 5}, save: {rows: rows}}
          - name: use
            tasks:
              - {name: use, shell: "test -f marker && echo {{ var.rows }} > rows.txt"}
        """,
    )
    first = project.cli("run", "keep", "--json")
    assert first.code == 1, first
    (project.root / "marker").touch()

    result = project.cli("resume", record_of(first)["id"], "--json")

    assert result.code == 0, result
    assert (project.root / "rows.txt").read_text().strip() == "10"
    assert tasks_of(record_of(result))["count"]["saved"] == {"rows": 10}


# ---------------------------------------------------------------------------------------------- piped progress
def test_piped_run_prints_one_line_per_state_change(project: Project) -> None:
    project.write("tasks/flaky.py", FLAKY)
    project.write(
        "workflows/progress.yaml",
        """
        name: progress
        stages:
          - name: one
            tasks:
              - name: flaky
                python: tasks/flaky.py:flaky
                with: {counter: counter.txt, fail_times: 1}
                retries: 1
                retry_delay: 0s
              - {name: broken, shell: exit 2}
          - name: two
            tasks:
              - {name: handler, after: {broken: failure}, shell: echo handled}
              - {name: skipped_one, after: [broken], shell: echo never}
        """,
    )

    result = project.cli("run", "progress")

    assert result.code == 0, result
    lines = result.out.splitlines()
    assert re.match(r"^run \S+ started$", lines[0]), lines
    assert re.match(r"^run \S+ \(progress\) succeeded in [\d.]+s: ", lines[-1]), lines
    changes = [re.sub(r"^\d\d:\d\d:\d\d ", "", ln) for ln in lines[1:-1]]
    assert changes[-1] == "run succeeded"
    expected = [
        "[one] flaky running (attempt 1)",
        "[one] flaky retrying (RuntimeError: attempt 1 fails; retry in 0s)",
        "[one] flaky running (attempt 2)",
        "[one] flaky succeeded",
        "[one] broken running (attempt 1)",
        "[one] broken failed (command exited with code 2)",
        "[two] handler running (attempt 1)",
        "[two] handler succeeded",
        "[two] skipped_one skipped (needs broken=success; broken failed)",
    ]
    assert sorted(changes[:-1]) == sorted(expected), changes
    for task in ("flaky", "broken", "handler"):
        mine = [c for c in changes if c.split()[1] == task]
        assert mine == [c for c in expected if c.split()[1] == task], mine
    assert changes.index("[one] flaky succeeded") < changes.index("[two] handler running (attempt 1)")
    assert changes.index("[one] broken failed (command exited with code 2)") < changes.index("[two] handler running (attempt 1)")
