"""API tokens: who may call the REST API, and with which role.

A token is created with a role (viewer < operator < admin, SPEC §5.2) and an optional name and
expiry. Its *secret* — ``fs_<id>_<random>``, the random part 32 bytes from
`secrets.token_urlsafe` — is returned once, by `TokenStore.create`, and never stored: a store
keeps a per-token random salt and ``HMAC-SHA256(salt, secret)``. A fast keyed hash is enough
here because the secret carries 256 bits of randomness: there is no password to guess, so a slow
KDF (scrypt, PBKDF2) would only slow every API request down. Digests are compared with
`hmac.compare_digest`. The id inside the secret makes `verify` one lookup by primary key.

`verify` answers None for anything but a live token: unknown id, wrong random part (forged),
expired or revoked. It records `last_used_at`, at most once a minute per token, so a busy API
does not turn every request into a write.

`TokenStore` is the port. `MemoryTokenStore` (stores/memory_tokens.py) is its reference
implementation and `SqlTokenStore` (stores/sql/tokens.py) keeps tokens in a SQL run store's
database (table `api_tokens`); a run store hands out its own as `store.tokens`.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

SECRET_PREFIX = "fs_"
TOUCH_EVERY = 60.0  # seconds: how stale last_used_at may get before verify writes it again


class Role(str, Enum):
    """What a token may do; each role allows everything the ones before it do."""

    VIEWER = "viewer"  # read
    OPERATOR = "operator"  # + run, resume, cancel
    ADMIN = "admin"  # + deploy, rollback, tokens

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """Whether a token of this role may do what needs `needed`."""
        return self.rank >= Role(needed).rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Token:
    """A token as a store shows it: never its secret."""

    id: str
    name: str | None
    role: Role
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None = None

    def status(self, now: float) -> str:
        """`revoked`, `expired` or `active` at `now`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def is_active(self, now: float) -> bool:
        return self.status(now) == "active"


@dataclass(frozen=True)
class NewSecret:
    """A freshly drawn secret and what a store keeps of it."""

    id: str
    secret: str
    salt: str
    digest: str


def new_secret() -> NewSecret:
    """Draw a token id and secret; the caller stores `id`, `salt` and `digest`, and shows `secret` once."""
    token_id = secrets.token_hex(8)
    secret = f"{SECRET_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_hex(16)
    return NewSecret(token_id, secret, salt, digest(secret, salt))


def digest(secret: str, salt: str) -> str:
    """HMAC-SHA256 of the secret, keyed by the token's salt (hex)."""
    return hmac.new(bytes.fromhex(salt), secret.encode("utf-8"), hashlib.sha256).hexdigest()


def token_id_of(secret: str) -> str | None:
    """The token id a secret names, or None when it is not shaped like one of ours."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        return None
    parts = secret[len(SECRET_PREFIX) :].split("_", 1)
    if len(parts) != 2 or not parts[0] or not parts[1] or len(parts[0]) > 32:
        return None
    return parts[0]


def matches(secret: str, salt: str, stored_digest: str) -> bool:
    """Whether `secret` hashes to the stored digest (constant-time comparison)."""
    return hmac.compare_digest(digest(secret, salt), stored_digest)


def parse_role(value: str | Role) -> Role:
    """A role from its name (any case); raises ValueError naming the roles."""
    try:
        return Role(str(value).strip().lower())
    except ValueError:
        raise ValueError(f"unknown role {value!r} (roles: {', '.join(r.value for r in Role)})") from None


class TokenStore(Protocol):
    def create(self, *, role: Role, name: str | None = None, expires_at: float | None = None, at: float) -> tuple[Token, str]:
        """Create a token; returns it and its secret, which nothing can show again."""
        ...

    def list(self) -> builtins.list[Token]:
        """Every token, revoked and expired ones too, the newest first (never a secret)."""
        ...

    def revoke(self, token_id: str, *, at: float) -> bool:
        """Revoke a token; False when there is no such token or it was revoked already."""
        ...

    def verify(self, secret: str, *, now: float) -> Token | None:
        """The live token whose secret this is; None for an unknown, forged, expired or revoked one."""
        ...

    def any_active(self, *, now: float) -> bool:
        """Whether some token is neither revoked nor expired at `now`."""
        ...


class HasTokens(Protocol):
    """A run store that keeps API tokens beside its runs."""

    @property
    def tokens(self) -> TokenStore: ...


__all__ = [
    "SECRET_PREFIX",
    "HasTokens",
    "NewSecret",
    "Role",
    "Token",
    "TokenStore",
    "digest",
    "matches",
    "new_secret",
    "parse_role",
    "token_id_of",
]
