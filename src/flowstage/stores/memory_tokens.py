"""The in-memory token store: the reference implementation of `TokenStore` (stores/tokens.py).

What a `MemoryRunStore` hands out as `store.tokens`. It keeps, like the SQL store, each token's
salt and digest and never its secret; every operation runs under one lock.
"""

from __future__ import annotations

import builtins
import threading
from dataclasses import dataclass, replace

from flowstage.stores.tokens import TOUCH_EVERY, Role, Token, matches, new_secret, token_id_of


@dataclass(frozen=True)
class _Row:
    token: Token
    salt: str
    digest: str


class MemoryTokenStore:
    """API tokens kept in this process's memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {}

    def create(self, *, role: Role, name: str | None = None, expires_at: float | None = None, at: float) -> tuple[Token, str]:
        drawn = new_secret()
        token = Token(drawn.id, name, Role(role), at, expires_at, None, None)
        with self._lock:
            self._rows[drawn.id] = _Row(token, drawn.salt, drawn.digest)
        return token, drawn.secret

    def list(self) -> builtins.list[Token]:
        with self._lock:
            tokens = [r.token for r in self._rows.values()]
        return sorted(tokens, key=lambda t: (-t.created_at, t.id))

    def revoke(self, token_id: str, *, at: float) -> bool:
        with self._lock:
            row = self._rows.get(token_id)
            if row is None or row.token.revoked_at is not None:
                return False
            self._rows[token_id] = replace(row, token=replace(row.token, revoked_at=at))
        return True

    def verify(self, secret: str, *, now: float) -> Token | None:
        token_id = token_id_of(secret)
        if token_id is None:
            return None
        with self._lock:
            row = self._rows.get(token_id)
            if row is None or not matches(secret, row.salt, row.digest) or not row.token.is_active(now):
                return None
            last = row.token.last_used_at
            if last is None or now - last >= TOUCH_EVERY:
                row = replace(row, token=replace(row.token, last_used_at=now))
                self._rows[token_id] = row
        return row.token

    def any_active(self, *, now: float) -> bool:
        with self._lock:
            return any(r.token.is_active(now) for r in self._rows.values())


__all__ = ["MemoryTokenStore"]
