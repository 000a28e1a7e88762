"""Access control of the API: the one place where a route's role is checked (SPEC §5.2).

Every route but `/health` declares the role it needs with ``dependencies=[Depends(require(...))]``
(viewer: read; operator: run, resume, cancel; admin: deploy, rollback). Auth is on as soon as a
token was ever created (`flowstage token create`) or `server: {auth: true}` is in flowstage.yaml —
revoking every token does not open the API again. Then a request needs
``Authorization: Bearer TOKEN``: none, a forged, an expired or a revoked token → 401; a role too
low → 403. Failed attempts are logged at warning without the token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fastapi import HTTPException, Request

from flowstage.stores.tokens import Role

logger = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("viewer", "operator", "admin")  # each role may do what the ones before it do
_AUTH_CACHE_SECONDS = 2.0


class AuthState:
    """Whether auth is on: the setting, or any token ever created (looked up at most every 2 s)."""

    def __init__(self, forced: bool) -> None:
        self.forced = forced
        self._known = forced
        self._checked = 0.0
        self._lock = threading.Lock()

    def on(self, store: object) -> bool:
        if self._known:
            return True  # once on, on: a token that exists never goes away
        now = time.monotonic()
        with self._lock:
            if now - self._checked >= _AUTH_CACHE_SECONDS:
                self._checked = now
                self._known = bool(store.tokens.list())  # type: ignore[attr-defined]
            return self._known


def auth_forced(config: dict[str, object]) -> bool:
    server = config.get("server")
    return isinstance(server, dict) and server.get("auth") is True


def require(role: str) -> Callable[[Request], None]:
    """A FastAPI dependency that lets a request through when its caller holds `role` (or auth is off)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    needed = Role(role)

    def check(request: Request) -> None:
        ctx = request.app.state.flowstage
        if not ctx.auth.on(ctx.store):
            return
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        client = request.client.host if request.client else "?"
        if scheme.lower() != "bearer" or not secret.strip():
            logger.warning("refused %s %s from %s: no bearer token", request.method, request.url.path, client)
            raise HTTPException(401, "this server needs a token: Authorization: Bearer TOKEN", {"WWW-Authenticate": "Bearer"})
        token = ctx.store.tokens.verify(secret.strip(), now=time.time())
        if token is None:
            logger.warning("refused %s %s from %s: unknown, expired or revoked token", request.method, request.url.path, client)
            raise HTTPException(401, "the token is unknown, expired or revoked", {"WWW-Authenticate": "Bearer"})
        if not token.role.allows(needed):
            raise HTTPException(403, f"this needs the {role} role; the token's role is {token.role.value}")

    check.__name__ = f"require_{role}"
    return check


__all__ = ["ROLES", "AuthState", "auth_forced", "require"]
