"""Access control of the API: the one place where a route's role is checked (SPEC §5.2).

Every route but `/health` declares the role it needs with ``dependencies=[Depends(require(...))]``
(viewer: read; operator: run, resume, cancel; admin: deploy, rollback). Auth is on as soon as a
token was ever created (`flowstage token create`) or `server: {auth: true}` is in flowstage.yaml —
revoking every token does not open the API again (a revoked token is refused within a second:
a verified token is looked up again after `VERIFIED_SECONDS`). Then a request needs
``Authorization: Bearer TOKEN``: none, a forged, an expired or a revoked token → 401; a role too
low → 403. Failed attempts are logged at warning without the token.

The web UI signs in with the same tokens: `/login` keeps the token in the `flowstage_token`
cookie (HttpOnly, SameSite=Strict), which every route accepts as it accepts the header. A
request that changes something (POST, PUT, PATCH, DELETE) and authenticates by the cookie must
come from the server's own pages: its `Origin` (or, without one, `Sec-Fetch-Site`) must say so,
else it answers 403 — a cross-site form can never act with a signed-in user's cookie.

Failed logins are limited per client address: after `MAX_FAILED_LOGINS` failed token checks (no
token, or an unknown, expired or revoked one; `server: {max_failed_logins: N}` in flowstage.yaml
sets another number) within `FAILED_LOGINS_WINDOW` seconds, *every* request of that client to a
protected route answers 429 with `Retry-After`, a good token included, and no token is checked,
until its oldest failure leaves the window (a sliding window). Letting a good token through while
limited would tell a guesser which guess was right; like fail2ban, the address waits. Successful
requests and 403s never count. The failures are kept in memory, per server process, for at most
`FAILED_LOGINS_CLIENTS` addresses (the one that failed least recently is forgotten first). The
address is the one uvicorn gives: behind a proxy on loopback, its `X-Forwarded-For`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from fastapi import HTTPException, Request

from flowstage.errors import UsageError
from flowstage.stores.tokens import Role, Token

logger = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("viewer", "operator", "admin")  # each role may do what the ones before it do
_AUTH_CACHE_SECONDS = 2.0
#: seconds a verified token is taken as verified (a revoked token is refused within them)
VERIFIED_SECONDS = 1.0
#: verified tokens kept at most
VERIFIED_KEPT = 1000
#: failed token checks from one client address within `FAILED_LOGINS_WINDOW` before it is refused
MAX_FAILED_LOGINS = 10
#: seconds a failed token check counts against its client address
FAILED_LOGINS_WINDOW = 60.0
#: client addresses whose failures are kept at most
FAILED_LOGINS_CLIENTS = 10_000
#: the highest `server: {max_failed_logins: N}` (each address keeps one time per failure counted)
MAX_FAILED_LOGINS_SETTING = 10_000


class FailedLogins:
    """Failed token checks per client address in a sliding window: thread-safe, bounded memory."""

    def __init__(
        self,
        *,
        limit: int = MAX_FAILED_LOGINS,
        window: float = FAILED_LOGINS_WINDOW,
        clients: int = FAILED_LOGINS_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clients = clients
        self._clock = clock
        # per address, the times of its newest failures (at most `limit`), least recently failed first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try again; None when it is not limited."""
        with self._lock:
            times = self._failures.get(client)
            if times is None or len(times) < self.limit:
                return None
            wait = times[0] + self.window - self._clock()
            return wait if wait > 0 else None

    def record(self, client: str) -> bool:
        """Count a failure of `client`; True when this one makes it limited (once per time it becomes so)."""
        now = self._clock()
        with self._lock:
            times = self._failures.pop(client, None)
            if times is None:
                times = deque(maxlen=self.limit)
            while times and times[0] <= now - self.window:
                times.popleft()
            before = len(times)
            times.append(now)
            self._failures[client] = times
            while len(self._failures) > self.clients:
                self._failures.popitem(last=False)
            # requests in flight when the limit is reached may still be checked: they count, but only
            # the failure that reached it tells
            return before < self.limit <= len(times)


class AuthState:
    """Whether auth is on: the setting, or any token ever created (looked up at most every 2 s).

    Also holds the failed logins of the server's clients.
    """

    def __init__(self, forced: bool, *, max_failed_logins: int = MAX_FAILED_LOGINS) -> None:
        self.forced = forced
        self.failures = FailedLogins(limit=max_failed_logins)
        self._known = forced
        self._checked = 0.0
        self._lock = threading.Lock()
        self._verified: OrderedDict[bytes, tuple[Token, float]] = OrderedDict()

    def verify(self, store: object, secret: str, now: float) -> Token | None:
        """The live token of `secret`: looked up in the store at most once a second per token, so a
        client polling hard costs one read, not two; a revoked token is refused within a second."""
        key = hashlib.sha256(secret.encode("utf-8")).digest()
        mono = time.monotonic()
        with self._lock:
            found = self._verified.get(key)
        if found is not None and mono - found[1] < VERIFIED_SECONDS and found[0].is_active(now):
            return found[0]
        token: Token | None = store.tokens.verify(secret, now=now)  # type: ignore[attr-defined]
        with self._lock:
            if token is None:
                self._verified.pop(key, None)
            else:
                self._verified[key] = (token, mono)
                while len(self._verified) > VERIFIED_KEPT:
                    self._verified.popitem(last=False)
        return token

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


def max_failed_logins(config: dict[str, object]) -> int:
    """`server: {max_failed_logins: N}` of flowstage.yaml (default `MAX_FAILED_LOGINS`)."""
    server = config.get("server")
    value = server.get("max_failed_logins", MAX_FAILED_LOGINS) if isinstance(server, dict) else MAX_FAILED_LOGINS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FAILED_LOGINS_SETTING:
        raise UsageError(
            f"server: {{max_failed_logins: {value!r}}} in flowstage.yaml: expected a whole number from 1 to "
            f"{MAX_FAILED_LOGINS_SETTING}"
        )
    return value


def auth_state(config: dict[str, object]) -> AuthState:
    """The auth of a server of a project with this flowstage.yaml."""
    return AuthState(auth_forced(config), max_failed_logins=max_failed_logins(config))


def _refused(request: Request, auth: AuthState, client: str, why: str, detail: str) -> HTTPException:
    logger.warning("refused %s %s from %s: %s", request.method, request.url.path, client, why)
    if auth.failures.record(client):
        failures = auth.failures
        logger.warning(
            "client %s limited: %d failed token checks within %gs; its requests answer 429 until they age out",
            client,
            failures.limit,
            failures.window,
        )
    return HTTPException(401, detail, {"WWW-Authenticate": "Bearer"})


#: the cookie the web UI keeps its token in
COOKIE = "flowstage_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def credentials(request: Request) -> tuple[str | None, bool]:
    """The token a request carries, and whether it came by the cookie (the header wins)."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip(), False
    cookie = request.cookies.get(COOKIE, "").strip()
    return (cookie or None), bool(cookie)


def same_origin(request: Request) -> bool:
    """Whether a request comes from the server's own pages (by its Origin, else Sec-Fetch-Site)."""
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}")
    return request.headers.get("sec-fetch-site") in ("same-origin", "none")


def caller_role(request: Request) -> Role | None:
    """The role of whoever sends `request` (admin when auth is off); None when not signed in."""
    ctx = request.app.state.flowstage
    if not ctx.auth.on(ctx.store):
        return Role.ADMIN
    secret, _ = credentials(request)
    if secret is None:
        return None
    token = ctx.auth.verify(ctx.store, secret, time.time())
    return token.role if token is not None else None


def authenticate(request: Request, auth: AuthState, store: object, secret: str | None) -> Token:
    """The live token of `secret`, for the API's routes and the UI's sign-in alike: a limited client
    gets 429 before any token is looked at; no token or a bad one 401, counted against its client."""
    client = request.client.host if request.client else "?"
    wait = auth.failures.retry_after(client)
    if wait is not None:  # the token is not even looked at
        seconds = max(1, math.ceil(wait))
        raise HTTPException(
            429, f"too many failed logins from this address: try again in {seconds}s", {"Retry-After": str(seconds)}
        )
    if secret is None:
        raise _refused(request, auth, client, "no bearer token", "this server needs a token: Authorization: Bearer TOKEN")
    token = auth.verify(store, secret, time.time())
    if token is None:
        raise _refused(request, auth, client, "unknown, expired or revoked token", "the token is unknown, expired or revoked")
    return token


def require(role: str) -> Callable[[Request], None]:
    """A FastAPI dependency that lets a request through when its caller holds `role` (or auth is off)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    needed = Role(role)

    def check(request: Request) -> None:
        ctx = request.app.state.flowstage
        auth: AuthState = ctx.auth
        if not auth.on(ctx.store):
            return
        secret, by_cookie = credentials(request)
        token = authenticate(request, auth, ctx.store, secret)
        client = request.client.host if request.client else "?"
        if by_cookie and request.method in UNSAFE_METHODS and not same_origin(request):
            logger.warning(
                "refused %s %s from %s: a cross-site request with the sign-in cookie", request.method, request.url.path, client
            )
            raise HTTPException(403, "a request that changes something must come from this server's own pages")
        if not token.role.allows(needed):
            raise HTTPException(403, f"this needs the {role} role; the token's role is {token.role.value}")

    check.__name__ = f"require_{role}"
    return check


__all__ = [
    "COOKIE",
    "FAILED_LOGINS_WINDOW",
    "MAX_FAILED_LOGINS",
    "ROLES",
    "AuthState",
    "FailedLogins",
    "auth_forced",
    "auth_state",
    "authenticate",
    "caller_role",
    "credentials",
    "max_failed_logins",
    "require",
    "same_origin",
]
