"""API tokens (`TokenStore`, stores/tokens.py) in a SQL run store's database.

The table of migration 0004, `api_tokens`: one row per token with its salt and the digest of its
secret, never the secret. `verify` reads the row by primary key; when `last_used_at` is stale it
writes it in a second, short transaction (a conditional UPDATE, so concurrent requests write once).
"""

from __future__ import annotations

import builtins
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flowstage.stores.tokens import TOUCH_EVERY, Role, Token, matches, new_secret, token_id_of

if TYPE_CHECKING:  # the run store opens these lazily: a type, not an import
    from flowstage.stores.sql.store import SqlRunStore

_COLUMNS = "id, name, role, created_at, expires_at, revoked_at, last_used_at"


class SqlTokenStore:
    """API tokens kept in a SQL run store's database."""

    def __init__(self, store: SqlRunStore) -> None:
        self.store = store

    def create(self, *, role: Role, name: str | None = None, expires_at: float | None = None, at: float) -> tuple[Token, str]:
        drawn = new_secret()
        token = Token(drawn.id, name, Role(role), at, expires_at, None, None)
        with self.store.write_transaction() as tx:
            tx.execute(
                "INSERT INTO api_tokens (id, name, role, salt, secret_hash, created_at, expires_at) "
                "VALUES (:id, :name, :role, :salt, :hash, :at, :exp)",
                {
                    "id": token.id,
                    "name": name,
                    "role": token.role.value,
                    "salt": drawn.salt,
                    "hash": drawn.digest,
                    "at": at,
                    "exp": expires_at,
                },
            )
        return token, drawn.secret

    def list(self) -> builtins.list[Token]:
        with self.store.read_transaction() as tx:
            rows = tx.query(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at DESC, id")
        return [_token(r) for r in rows]

    def revoke(self, token_id: str, *, at: float) -> bool:
        with self.store.write_transaction() as tx:
            count = tx.execute(
                "UPDATE api_tokens SET revoked_at = :at WHERE id = :id AND revoked_at IS NULL", {"at": at, "id": token_id}
            )
        return bool(count == 1)

    def verify(self, secret: str, *, now: float) -> Token | None:
        token_id = token_id_of(secret)
        if token_id is None:
            return None
        with self.store.read_one() as tx:
            rows = tx.query(f"SELECT {_COLUMNS}, salt, secret_hash FROM api_tokens WHERE id = :id", {"id": token_id})
        if not rows or not matches(secret, rows[0]["salt"], rows[0]["secret_hash"]):
            return None
        token = _token(rows[0])
        if not token.is_active(now):
            return None
        if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
            with self.store.write_transaction() as tx:
                tx.execute(
                    "UPDATE api_tokens SET last_used_at = :now WHERE id = :id "
                    "AND (last_used_at IS NULL OR last_used_at <= :stale)",
                    {"now": now, "id": token_id, "stale": now - TOUCH_EVERY},
                )
            token = replace(token, last_used_at=now)
        return token

    def any_active(self, *, now: float) -> bool:
        with self.store.read_transaction() as tx:
            rows = tx.query(
                "SELECT 1 AS one FROM api_tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now) LIMIT 1",
                {"now": now},
            )
        return bool(rows)


def _token(r: Any) -> Token:
    return Token(
        id=r["id"],
        name=r["name"],
        role=Role(r["role"]),
        created_at=float(r["created_at"]),
        expires_at=None if r["expires_at"] is None else float(r["expires_at"]),
        revoked_at=None if r["revoked_at"] is None else float(r["revoked_at"]),
        last_used_at=None if r["last_used_at"] is None else float(r["last_used_at"]),
    )


__all__ = ["SqlTokenStore"]
