"""The words of a notification: Slack's one line, an e-mail's subject (table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from flowstage.notifiers import Notification
from flowstage.notifiers.text import html_text, plain_text, slack_text, subject

RUN = {"workflow": "campaign_launch", "run_id": "r-42", "task": None, "value": None}
ON_FAILED = {"on": "failed", "notify": ["ops"]}
RUNTIME = {"metric": "runtime_seconds", "task": "load_orders", "op": ">", "value": 600, "notify": ["ops"]}


def n(body: dict[str, Any], failed: tuple[tuple[str, str], ...] = (), url: str | None = None) -> Notification:
    return Notification(body={**RUN, **body}, failed_tasks=failed, run_url=url)


@pytest.mark.parametrize(
    ("notification", "line"),
    [
        pytest.param(
            n({"status": "failed", "alert": ON_FAILED}, (("extract", "boom"),)),
            "flowstage: workflow *campaign_launch* run r-42 failed — failed: `extract`: boom",
            id="failed run, no url",
        ),
        pytest.param(
            n({"status": "failed", "alert": ON_FAILED}, (("extract", "boom"), ("load", "")), "http://h:8080/runs/r-42"),
            "flowstage: workflow *campaign_launch* <http://h:8080/runs/r-42|run r-42> failed — failed: `extract`: boom; `load`",
            id="link to the run, a task without error",
        ),
        pytest.param(
            n({"status": "succeeded", "alert": {"on": "succeeded", "notify": ["ops"]}}),
            "flowstage: workflow *campaign_launch* run r-42 succeeded",
            id="succeeded run",
        ),
        pytest.param(
            n({"status": "succeeded", "task": "load_orders", "alert": RUNTIME, "value": 742.0}),
            "flowstage: workflow *campaign_launch* run r-42 succeeded — runtime_seconds of task load_orders was 742 (alert: &gt; 600)",
            id="task metric alert (Slack shows &gt; as >)",
        ),
        pytest.param(
            n(
                {
                    "status": "failed",
                    "alert": {"metric": "runtime_seconds", "op": ">=", "value": 1.5, "notify": ["o"]},
                    "value": 2.25,
                }
            ),
            "flowstage: workflow *campaign_launch* run r-42 failed — runtime_seconds of the run was 2.25 (alert: &gt;= 1.5)",
            id="run metric alert",
        ),
        pytest.param(
            n({"status": "failed", "alert": ON_FAILED}, (("t<1>", "a & b <c>"),)),
            "flowstage: workflow *campaign_launch* run r-42 failed — failed: `t&lt;1&gt;`: a &amp; b &lt;c&gt;",
            id="slack markup escaped",
        ),
        pytest.param(
            n({"status": "failed", "alert": ON_FAILED, "repeats": 3}),
            "flowstage: workflow *campaign_launch* run r-42 failed (repeated 3 times)",
            id="folded repeats",
        ),
    ],
)
def test_slack_line(notification: Notification, line: str) -> None:
    assert slack_text(notification) == line


@pytest.mark.parametrize(
    ("notification", "expected"),
    [
        (n({"status": "failed", "alert": ON_FAILED}), "[flowstage] campaign_launch r-42 failed"),
        (
            n({"status": "succeeded", "alert": RUNTIME, "value": 742}),
            "[flowstage] campaign_launch r-42 succeeded: runtime_seconds of task load_orders was 742 (alert: > 600)",
        ),
    ],
)
def test_email_subject(notification: Notification, expected: str) -> None:
    assert subject(notification) == expected


def test_email_text_lists_failed_tasks_and_html_escapes_them() -> None:
    notification = n({"status": "failed", "alert": ON_FAILED}, (("load", "<script>x</script>"),), "http://h/runs/r-42?a=1&b=2")
    assert plain_text(notification) == (
        "Workflow campaign_launch, run r-42: failed\n\nFailed tasks:\n  load: <script>x</script>\n\nRun: http://h/runs/r-42?a=1&b=2\n"
    )
    html = html_text(notification)
    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert '<a href="http://h/runs/r-42?a=1&amp;b=2">r-42</a>' in html
