"""Notifiers: the adapters that deliver an alert's notification (SPEC §6).

Four kinds are built in — `webhook` (a JSON POST, optionally signed), `slack` (an incoming
webhook), `email` (SMTP) and `command` (a program reading the body on stdin) — and plug-ins add
more through the ``flowstage.notifiers`` entry-point group. `notifiers_from_config` builds them
from flowstage.yaml's ``notifiers:`` mapping; `deliver` sends one notification with retries and
never raises. No secret of a notifier (a URL's token or password, a signing secret, an SMTP
password, a header value) appears in an error or a log line.
"""

from __future__ import annotations

from flowstage.notifiers.base import Delivery, Notification, Notifier, NotifierError, deliver
from flowstage.notifiers.config import BUILTIN_NOTIFIERS, notifiers_from_config

__all__ = ["BUILTIN_NOTIFIERS", "Delivery", "Notification", "Notifier", "NotifierError", "deliver", "notifiers_from_config"]
