"""What every notifier shares: the notification, the protocol, masking and `deliver` with retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from flowstage.errors import ExitCode, FlowstageError
from flowstage.redact import mask_url, secrets_of

log = logging.getLogger(__name__)

#: the waits between tries: 0.5 s, then 1.5 s (each three times the one before)
FIRST_WAIT = 0.5
WAIT_FACTOR = 3.0


class NotifierError(FlowstageError):
    """A notifier could not deliver a notification; its message is masked of the notifier's secrets."""

    exit_code = ExitCode.INFRASTRUCTURE


@dataclass(frozen=True)
class Notification:
    """One notification of a fired alert.

    `body` is exactly what a webhook receives (SPEC §6): ``{"workflow", "run_id", "status", "task",
    "alert": {...the rule as written...}, "value": observed}``, plus ``"repeats": N`` when N
    repeats within the alert's `every:` period were folded into this one.
    """

    body: dict[str, Any]
    #: (task name, first line of its error) of each failed task of the run
    failed_tasks: tuple[tuple[str, str], ...] = ()
    #: the run's page in the web UI, when the server's address is known
    run_url: str | None = None


@runtime_checkable
class Notifier(Protocol):
    """Delivers notifications to one destination; `send` raises NotifierError (masked) on failure."""

    name: str
    kind: str

    def send(self, notification: Notification) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """How delivering one notification through one notifier ended."""

    notifier: str
    status: Literal["delivered", "failed"]
    tries: int
    #: the last try's error (masked), None when delivered
    error: str | None = None


@dataclass(frozen=True)
class Masker:
    """Replaces a notifier's secrets by ``***`` in a message, and masks any URL's password in it."""

    secrets: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, *, urls: Iterable[str] = (), secrets: Iterable[str | None] = ()) -> Masker:
        """The masker of `urls` (each whole, its path and query, its password) and of literal `secrets`."""
        found: set[str] = set()
        for url in urls:
            found.add(url)
            found.update(secrets_of([url]))
            parts = urlsplit(url)
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            for piece in (tail, parts.path, parts.query, parts.password or ""):
                if len(piece) > 1:
                    found.update({piece, unquote(piece)})
        for secret in secrets:
            if secret:
                found.update({secret, unquote(secret)})
        found.discard("")
        # longest first: a secret that starts another must not leave its tail
        return cls(tuple(sorted(found, key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return mask_url(text)


def shown_url(url: str) -> str:
    """`url` as messages show it: scheme, host and port only (a path or query may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    rest = "/..." if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def deliver(
    notifier: Notifier,
    notification: Notification,
    *,
    tries: int = 3,
    within: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_try: Callable[[int, str | None], None] | None = None,
) -> Delivery:
    """Send `notification` through `notifier`: at most `tries` tries within `within` seconds; never raises.

    The waits between tries grow (0.5 s, 1.5 s, ...) and are cut short at the deadline; a try is
    not started once the deadline has passed (a try itself is bounded by its notifier's timeout).
    Each failure is logged at warning, masked. `on_try(n, error)` hears each try's outcome
    (error None: delivered).
    """
    name = getattr(notifier, "name", "?")
    mask = getattr(notifier, "mask", None) or mask_url
    start = clock()
    wait = FIRST_WAIT
    error: str | None = None
    done = 0
    for n in range(1, max(tries, 1) + 1):
        if n > 1:
            left = within - (clock() - start)
            if left <= 0:
                break
            sleep(min(wait, left))
            wait *= WAIT_FACTOR
            if clock() - start >= within:
                break
        done = n
        try:
            notifier.send(notification)
        except Exception as exc:
            error = str(exc) if isinstance(exc, NotifierError) else mask(_describe(exc))
            log.warning("notifier %s: try %d of %d failed: %s", name, n, tries, error)
            if on_try is not None:
                on_try(n, error)
            continue
        if on_try is not None:
            on_try(n, None)
        return Delivery(name, "delivered", n, None)
    return Delivery(name, "failed", done, error)


class ConfigProblem(ValueError):
    """A notifier's settings are wrong: `key` is the path below the kind's key (``("to",)``)."""

    def __init__(self, message: str, key: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.key = key


__all__ = ["ConfigProblem", "Delivery", "Masker", "Notification", "Notifier", "NotifierError", "deliver", "shown_url"]
