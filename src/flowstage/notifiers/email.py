"""`email`: a multipart/alternative message (text and HTML) sent over SMTP.

    team:
      email:
        to: [data@example.com]
        smtp: "smtp://mail.example.com:587"     # smtps:// for implicit TLS (default port 465)
        from: flowstage@example.com
        starttls: true
        user: flowstage
        password: ${SMTP_PASSWORD}

`user` and `password` may also be the URL's (``smtp://user:password@host``).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from flowstage.notifiers.base import ConfigProblem, Masker, Notification, NotifierError
from flowstage.notifiers.text import html_text, plain_text, subject

TIMEOUT = 5.0
_KEYS = ("to", "smtp", "from", "starttls", "user", "password")


@dataclass(frozen=True)
class EmailNotifier:
    name: str
    to: tuple[str, ...]
    host: str
    port: int
    sender: str = "flowstage@localhost"
    implicit_tls: bool = False
    starttls: bool = False
    user: str | None = None
    password: str | None = None
    url: str = ""
    timeout: float = TIMEOUT
    kind: str = "email"

    @property
    def mask(self) -> Masker:
        return Masker.of(urls=[self.url] if self.url else [], secrets=[self.password])

    def message(self, notification: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = subject(notification)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain="flowstage")
        msg.set_content(plain_text(notification))
        msg.add_alternative(html_text(notification), subtype="html")
        return msg

    def send(self, notification: Notification) -> None:
        import smtplib
        import ssl

        msg = self.message(notification)
        where = f"email {self.name}: SMTP {self.host}:{self.port}"
        try:
            context = ssl.create_default_context()
            smtp: smtplib.SMTP
            if self.implicit_tls:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.starttls:
                    smtp.starttls(context=context)
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(msg, from_addr=self.sender, to_addrs=list(self.to))
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            raise NotifierError(self.mask(f"{where}: {type(exc).__name__}: {exc}")) from None


def _text(spec: dict[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigProblem("expected a non-empty string", (key,))
    return value


def email_notifier(name: str, spec: Any, *, root: Path | None = None) -> EmailNotifier:
    """An e-mail notifier from its settings (``to`` and ``smtp`` required)."""
    if not isinstance(spec, dict):
        raise ConfigProblem("expected a mapping with `to:` and `smtp:` (and `from:`, `starttls:`, `user:`, `password:`)")
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        from flowstage.model.workflow import did_you_mean

        raise ConfigProblem(f"unknown key '{unknown[0]}'{did_you_mean(unknown[0], _KEYS)}", (unknown[0],))
    to = spec.get("to")
    if to is None:
        raise ConfigProblem("`to:` is required: the addresses to write to", ("to",))
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
        raise ConfigProblem("expected a list of e-mail addresses", ("to",))
    url = spec.get("smtp")
    if url is None:
        raise ConfigProblem('`smtp:` is required, e.g. "smtp://127.0.0.1:25"', ("smtp",))
    if not isinstance(url, str):
        raise ConfigProblem('expected an SMTP URL, e.g. "smtp://127.0.0.1:25"', ("smtp",))
    try:
        parts = urlsplit(url)
        port_given = parts.port
    except ValueError:
        raise ConfigProblem("expected an SMTP URL with a numeric port", ("smtp",)) from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigProblem('expected smtp://host[:port] or smtps://host[:port], e.g. "smtp://127.0.0.1:25"', ("smtp",))
    implicit = parts.scheme == "smtps"
    starttls = spec.get("starttls", False)
    if not isinstance(starttls, bool):
        raise ConfigProblem("expected true or false", ("starttls",))
    if implicit and starttls:
        raise ConfigProblem("smtps:// is TLS from the start: leave `starttls:` out", ("starttls",))
    user = _text(spec, "user") or (unquote(parts.username) if parts.username else None)
    password = _text(spec, "password") or (unquote(parts.password) if parts.password else None)
    if password and not user:
        raise ConfigProblem("a `password:` needs a `user:`", ("user",))
    return EmailNotifier(
        name,
        tuple(to),
        parts.hostname,
        port_given or (465 if implicit else 25),
        sender=_text(spec, "from") or "flowstage@localhost",
        implicit_tls=implicit,
        starttls=starttls,
        user=user,
        password=password,
        url=url,
    )


__all__ = ["EmailNotifier", "email_notifier"]
