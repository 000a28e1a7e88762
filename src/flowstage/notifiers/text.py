"""The words of a notification: one readable line, an e-mail's subject, text and HTML.

Slack's text escapes ``& < >`` (its markup uses them) and links the run as ``<url|run ID>``;
e-mail's HTML escapes everything it shows.
"""

from __future__ import annotations

import html
from typing import Any

from flowstage.notifiers.base import Notification


def _number(value: Any) -> str:
    """A value as people read it: 742.0 → 742, 0.25 stays 0.25."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def metric_clause(notification: Notification) -> str | None:
    """``runtime_seconds of task load was 742 (alert: > 600)`` for a metric alert, else None."""
    body = notification.body
    alert = body.get("alert") or {}
    metric = alert.get("metric")
    if not metric:
        return None
    task = alert.get("task") or body.get("task")
    of = f" of task {task}" if task else " of the run"
    return f"{metric}{of} was {_number(body.get('value'))} (alert: {alert.get('op', '?')} {_number(alert.get('value'))})"


def _repeats(notification: Notification) -> str:
    repeats = notification.body.get("repeats")
    return f" (repeated {repeats} times)" if repeats else ""


def subject(notification: Notification) -> str:
    """``[flowstage] campaign_launch 4f2a failed`` (with the metric for a metric alert)."""
    body = notification.body
    text = f"[flowstage] {body.get('workflow', '?')} {body.get('run_id', '?')} {body.get('status', '?')}"
    metric = metric_clause(notification)
    return f"{text}: {metric}" if metric else text


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(notification: Notification) -> str:
    """One line for a Slack channel: workflow, run (a link when the URL is known), status, metric, failed tasks."""
    body = notification.body
    run_id = _slack_escape(str(body.get("run_id", "?")))
    run = f"<{notification.run_url}|run {run_id}>" if notification.run_url else f"run {run_id}"
    parts = [
        f"flowstage: workflow *{_slack_escape(str(body.get('workflow', '?')))}* {run} {_slack_escape(str(body.get('status', '?')))}"
    ]
    metric = metric_clause(notification)
    if metric:
        parts.append(_slack_escape(metric))
    if notification.failed_tasks:
        failed = "; ".join(
            f"`{_slack_escape(t)}`: {_slack_escape(e)}" if e else f"`{_slack_escape(t)}`" for t, e in notification.failed_tasks
        )
        parts.append(f"failed: {failed}")
    return " — ".join(parts) + _repeats(notification)


def plain_text(notification: Notification) -> str:
    """An e-mail's text part."""
    body = notification.body
    lines = [
        f"Workflow {body.get('workflow', '?')}, run {body.get('run_id', '?')}: {body.get('status', '?')}{_repeats(notification)}"
    ]
    metric = metric_clause(notification)
    if metric:
        lines.append(metric[0].upper() + metric[1:])
    if notification.failed_tasks:
        lines += ["", "Failed tasks:"]
        lines += [f"  {t}: {e}" if e else f"  {t}" for t, e in notification.failed_tasks]
    if notification.run_url:
        lines += ["", f"Run: {notification.run_url}"]
    return "\n".join(lines) + "\n"


def html_text(notification: Notification) -> str:
    """An e-mail's HTML part: the same as the text, every value escaped."""
    body = notification.body
    e = html.escape
    run = e(str(body.get("run_id", "?")))
    if notification.run_url:
        run = f'<a href="{e(notification.run_url)}">{run}</a>'
    out = [
        f"<p>Workflow <b>{e(str(body.get('workflow', '?')))}</b>, run {run}: "
        f"<b>{e(str(body.get('status', '?')))}</b>{e(_repeats(notification))}</p>"
    ]
    metric = metric_clause(notification)
    if metric:
        out.append(f"<p>{e(metric[0].upper() + metric[1:])}</p>")
    if notification.failed_tasks:
        items = "".join(
            f"<li><code>{e(t)}</code>: {e(err)}</li>" if err else f"<li><code>{e(t)}</code></li>"
            for t, err in notification.failed_tasks
        )
        out.append(f"<p>Failed tasks:</p><ul>{items}</ul>")
    return "<html><body>" + "".join(out) + "</body></html>\n"


__all__ = ["html_text", "metric_clause", "plain_text", "slack_text", "subject"]
