"""Keep secrets out of messages: connection URLs and passwords become ``***``."""

from __future__ import annotations

import re
from collections.abc import Iterable

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@")


def mask_url(url: str) -> str:
    """`url` with its password replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def password_of(url: str) -> str | None:
    m = _USERINFO.search(url)
    if m and m["password"]:
        from urllib.parse import unquote

        return unquote(m["password"])
    return None


def scrub(text: str, urls: Iterable[str] = ()) -> str:
    """`text` with every URL's password (raw and URL-decoded) and every URL userinfo masked."""
    for url in urls:
        password = password_of(url)
        if password:
            m = _USERINFO.search(url)
            raw = m["password"] if m else password
            for secret in {password, raw}:
                if len(secret) >= 1:
                    text = text.replace(secret, "***")
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
