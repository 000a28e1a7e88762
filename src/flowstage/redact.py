"""Keep secrets out of messages: connection URLs and passwords become ``***``."""

from __future__ import annotations

import re
from collections.abc import Iterable

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^/\s]*)@")
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|secret|token|api_key)=)(?P<value>[^&\s]*)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """`url` with its password (and password-like query values) replaced by ``***``."""
    url = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", url)


def password_of(url: str) -> str | None:
    from urllib.parse import unquote

    m = _USERINFO.search(url)
    if m and m["password"]:
        return unquote(m["password"])
    q = _QUERY_SECRET.search(url)
    if q and q["value"]:
        return unquote(q["value"])
    return None


def secrets_of(urls: Iterable[str]) -> list[str]:
    """The passwords (raw and URL-decoded) of `urls`, longest first."""
    from urllib.parse import unquote

    secrets: set[str] = set()
    for url in urls:
        for m in (_USERINFO.search(url), _QUERY_SECRET.search(url)):
            if m is not None:
                raw = m["password"] if "password" in m.groupdict() else m["value"]
                if raw:
                    secrets.update({raw, unquote(raw)})
    # longest first, across every URL: a password that starts another must not leave its tail
    return sorted(secrets, key=len, reverse=True)


class Scrubber:
    """`scrub` against a fixed set of URLs, their secrets found once (for every log line of a run)."""

    def __init__(self, urls: Iterable[str] = ()) -> None:
        self._secrets = secrets_of(urls)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        if "://" not in text and "=" not in text:
            return text  # nothing mask_url could change
        return mask_url(text)


def scrub(text: str, urls: Iterable[str] = ()) -> str:
    """`text` with every URL's password (raw and URL-decoded) and every URL userinfo masked."""
    return Scrubber(urls)(text)
