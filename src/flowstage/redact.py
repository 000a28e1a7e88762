"""Keep secrets out of messages: connection URLs and passwords become ``***``.

A password is masked in every form a message may carry it: as written in its URL, decoded, and
percent-encoded again by whatever handled it (a driver that re-encodes some characters and not
others writes ``p%40ss word`` for ``p%40ss%20word``): one pattern per password matches each of its
characters plain or percent-encoded (hex in either case), and a space also as ``+``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^/\s]*)@")
_SECRET_KEYS = "password|passwd|pwd|secret|token|api_key"
_QUERY_SECRET = re.compile(rf"(?P<key>[?&](?:{_SECRET_KEYS})=)(?P<value>[^&\s]*)", re.IGNORECASE)
#: a password as `mask_url` leaves it: ``scheme://user:***@`` or ``?token=***``
_MASKED = re.compile(rf"://[^/\s@]*:\*\*\*@|[?&](?:{_SECRET_KEYS})=\*\*\*", re.IGNORECASE)


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


def _hex_any_case(byte: int) -> str:
    return "%" + "".join(f"[{d.lower()}{d}]" if d.isalpha() else d for d in f"{byte:02X}")


def _any_encoding(secret: str) -> str:
    """A pattern of `secret` with each character plain or percent-encoded (a space also as ``+``)."""
    parts = []
    for ch in secret:
        encoded = "".join(_hex_any_case(b) for b in ch.encode("utf-8", "surrogatepass"))
        parts.append(f"(?:{re.escape(ch)}|{encoded}{'|[+]' if ch == ' ' else ''})")
    return "".join(parts)


class Scrubber:
    """`scrub` against a fixed set of URLs, their secrets found once (for every log line of a run)."""

    def __init__(self, urls: Iterable[str] = ()) -> None:
        self._secrets = secrets_of(urls)
        # longest first: a password that starts another must not leave its tail
        # the raw and the decoded password are both in the list: together they cover every mix of encodings
        self._pattern = re.compile("|".join(map(_any_encoding, self._secrets))) if self._secrets else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            if "%" in text or "+" in text:
                text = self._pattern.sub("***", text)
            else:  # only plain forms can be there: plain search is many times faster than the pattern
                for secret in self._secrets:
                    if secret in text:
                        text = text.replace(secret, "***")
        if "://" not in text and "=" not in text:
            return text  # nothing mask_url could change
        return mask_url(text)


def scrub(text: str, urls: Iterable[str] = ()) -> str:
    """`text` with every URL's password (raw and URL-decoded) and every URL userinfo masked."""
    return Scrubber(urls)(text)


def mask_strings(value: Any) -> Any:
    """JSON data `value` with every string masked as `mask_url` masks a URL (for a stored definition)."""
    if isinstance(value, str):
        return mask_url(value) if ("://" in value or "=" in value) else value
    if isinstance(value, list):
        return [mask_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: mask_strings(v) for k, v in value.items()}
    return value


def masked_paths(value: Any, path: str = "") -> list[str]:
    """Where JSON data `value` holds a password `mask_url` masked (``tasks[0].http.url``)."""
    if isinstance(value, str):
        return [path or "value"] if "***" in value and _MASKED.search(value) else []
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in masked_paths(v, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in masked_paths(v, f"{path}.{k}" if path else str(k))]
    return []


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def restore_masked(value: Any, original: Callable[[], Any]) -> Any:
    """`value` (data masked by `mask_strings`) with each masked string put back from `original()`.

    `original()` gives the same data before masking (the workflow's file or deployed version, as a
    resume finds it), asked only when `value` holds a masked string; a string is put back where
    masking one of its strings gives it. A masked string it does not explain stays masked.
    """
    if not any("***" in s for s in _strings(value)):
        return value
    known = {masked: s for s in _strings(original()) if (masked := mask_strings(s)) != s}
    if not known:
        return value

    def put_back(v: Any) -> Any:
        if isinstance(v, str):
            return known.get(v, v)
        if isinstance(v, list):
            return [put_back(x) for x in v]
        if isinstance(v, dict):
            return {k: put_back(x) for k, x in v.items()}
        return v

    return put_back(value)
