"""`webhook`: the notification's body as a JSON POST, signed with HMAC-SHA256 when a secret is set.

    ops: {webhook: "https://example.com/hook"}
    ops: {webhook: {url: "https://example.com/hook", secret: "${HOOK_SECRET}", headers: {X-Team: data}}}

With a secret, ``X-Flowstage-Signature: sha256=<hex HMAC-SHA256(secret, body)>`` signs exactly
the bytes sent. Any answer but 2xx is a failure (redirects are not followed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowstage.notifiers.base import ConfigProblem, Masker, Notification, NotifierError, shown_url

TIMEOUT = 5.0
SIGNATURE_HEADER = "X-Flowstage-Signature"


def encode(body: dict[str, Any]) -> bytes:
    """The bytes a webhook sends (and signs): compact UTF-8 JSON."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def signature(secret: str, data: bytes) -> str:
    """The ``X-Flowstage-Signature`` value of `data`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


def post(what: str, url: str, data: bytes, headers: dict[str, str], mask: Masker, timeout: float = TIMEOUT) -> None:
    """POST `data` to `url`; NotifierError (masked) unless the answer is 2xx."""
    import httpx

    where = f"{what}: POST {shown_url(url)}"
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            answer = client.post(url, content=data, headers={"Content-Type": "application/json", **headers})
    except httpx.HTTPError as exc:
        raise NotifierError(mask(f"{where}: {type(exc).__name__}: {exc}")) from None
    if not 200 <= answer.status_code < 300:
        said = answer.text.strip().splitlines()[0][:200] if answer.text.strip() else answer.reason_phrase
        raise NotifierError(mask(f"{where}: HTTP {answer.status_code}: {said}"))


def http_url(value: Any, key: tuple[str | int, ...]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigProblem("expected an http(s) URL", key)
    if not value.startswith(("http://", "https://")):
        raise ConfigProblem(f"expected an http(s) URL, not {shown_url(value)!r}", key)
    return value


@dataclass(frozen=True)
class WebhookNotifier:
    name: str
    url: str
    secret: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = TIMEOUT
    kind: str = "webhook"

    @property
    def mask(self) -> Masker:
        return Masker.of(urls=[self.url], secrets=[self.secret, *self.headers.values()])

    def send(self, notification: Notification) -> None:
        data = encode(notification.body)
        headers = dict(self.headers)
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, data)
        post(f"webhook {self.name}", self.url, data, headers, self.mask, self.timeout)


def webhook_notifier(name: str, spec: Any, *, root: Path | None = None) -> WebhookNotifier:
    """A webhook notifier from its settings: a URL, or ``{url, secret, headers}``."""
    if isinstance(spec, str):
        return WebhookNotifier(name, http_url(spec, ()))
    if not isinstance(spec, dict):
        raise ConfigProblem("expected a URL or a mapping with `url:` (and `secret:`, `headers:`)")
    unknown = sorted(set(spec) - {"url", "secret", "headers"})
    if unknown:
        raise ConfigProblem(f"unknown key '{unknown[0]}' (a webhook has url, secret, headers)", (unknown[0],))
    if "url" not in spec:
        raise ConfigProblem("`url:` is required", ("url",))
    secret = spec.get("secret")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise ConfigProblem("expected a non-empty string", ("secret",))
    headers = spec.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str | int) for k, v in headers.items()):
        raise ConfigProblem("expected a mapping of header names to strings", ("headers",))
    return WebhookNotifier(name, http_url(spec["url"], ("url",)), secret, {k: str(v) for k, v in headers.items()})


__all__ = ["SIGNATURE_HEADER", "WebhookNotifier", "encode", "signature", "webhook_notifier"]
