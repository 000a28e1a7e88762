"""`slack`: one readable line posted to a Slack incoming webhook.

    team: {slack: "https://hooks.slack.com/services/T000/B000/XXXX"}
    team: {slack: {url: "${SLACK_WEBHOOK}"}}

The whole URL is a secret (its path is the token): messages show only its host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstage.notifiers.base import ConfigProblem, Masker, Notification
from flowstage.notifiers.text import slack_text
from flowstage.notifiers.webhook import TIMEOUT, http_url, post


@dataclass(frozen=True)
class SlackNotifier:
    name: str
    url: str
    timeout: float = TIMEOUT
    kind: str = "slack"

    @property
    def mask(self) -> Masker:
        return Masker.of(urls=[self.url])

    def payload(self, notification: Notification) -> dict[str, Any]:
        return {"text": slack_text(notification)}

    def send(self, notification: Notification) -> None:
        data = json.dumps(self.payload(notification), ensure_ascii=False).encode("utf-8")
        post(f"slack {self.name}", self.url, data, {}, self.mask, self.timeout)


def slack_notifier(name: str, spec: Any, *, root: Path | None = None) -> SlackNotifier:
    """A Slack notifier from its settings: the incoming-webhook URL, or ``{url: URL}``."""
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"url"})
        if unknown:
            raise ConfigProblem(f"unknown key '{unknown[0]}' (slack has url)", (unknown[0],))
        if "url" not in spec:
            raise ConfigProblem("`url:` is required", ("url",))
        return SlackNotifier(name, http_url(spec["url"], ("url",)))
    return SlackNotifier(name, http_url(spec, ()))


__all__ = ["SlackNotifier", "slack_notifier"]
