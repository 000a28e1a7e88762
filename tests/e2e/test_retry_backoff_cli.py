"""`retry_backoff` and `retry_delay_max` through the CLI: the attempts a user reads back are spaced as computed.

Each bound below is a lower one (a retry never starts before its wait is over) or comes from the
recorded wait itself, so a slow machine cannot make the test fail.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

from tests.conftest import Project
from tests.records import record_of, tasks_of

# fails twice, then succeeds (a counter file in the project folder)
FLAKY = 'n=$(cat count.txt 2>/dev/null || echo 0); n=$((n + 1)); echo $n > count.txt; [ "$n" -ge 3 ]'


def test_retries_back_off_with_jitter_and_the_attempts_show_the_spacing(project: Project) -> None:
    project.write(
        "workflows/backoff.yaml",
        f"""
        name: backoff
        preferences: {{retry_delay: 100ms, retry_backoff: 4, retry_delay_max: 10m}}
        tasks:
          - name: flaky
            shell: '{FLAKY}'
            retries: 2
        """,
    )

    result = project.cli("run", "backoff", "--json")

    assert result.code == 0, result
    record = record_of(result)
    show = project.cli("show", record["id"], "--json")
    assert show.code == 0, show
    flaky = tasks_of(record_of(show))["flaky"]
    assert [a["status"] for a in flaky["attempts"]] == ["failed", "failed", "succeeded"]
    starts = [datetime.fromisoformat(a["started_at"]) for a in flaky["attempts"]]
    ends = [datetime.fromisoformat(a["ended_at"]) for a in flaky["attempts"]]
    # retry n waits min(100ms * 4 ** (n - 1), 10m), jittered to 50-100 % of it, after attempt n ended
    assert (starts[1] - ends[0]).total_seconds() >= 0.05
    assert (starts[2] - ends[1]).total_seconds() >= 0.2

    logs = project.cli("logs", record["id"], "--json")
    assert logs.code == 0, logs
    waits = [
        float(m.group(1))
        for line in json.loads(logs.out)
        for m in [re.search(r"retrying in ([0-9.e+-]+)s", line["message"])]
        if m
    ]
    assert len(waits) == 2
    assert 0.05 <= waits[0] <= 0.1
    assert 0.2 <= waits[1] <= 0.4
    assert (starts[2] - ends[1]).total_seconds() >= waits[1] - 0.001


def test_a_backoff_below_one_is_refused_by_validate_at_its_line(project: Project) -> None:
    project.write(
        "workflows/bad.yaml",
        """
        name: bad
        tasks:
          - name: a
            shell: "true"
            retry_backoff: 0.5
        """,
    )

    result = project.cli("validate", "workflows/bad.yaml")

    assert result.code == 2, result
    assert "bad.yaml:5:5" in result.err + result.out
    assert "retry_backoff" in result.err + result.out
    assert "Traceback" not in result.err
