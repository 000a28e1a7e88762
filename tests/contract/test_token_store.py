"""One conformance suite for the token store: memory (the reference), SQLite and PostgreSQL.

`TokenStoreContract` states what every backend does with API tokens: a secret verifies to its
token until it expires or is revoked; a forged secret (a real id, another random part) never
does; nothing a store keeps or lists holds a secret.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstage.stores.base import RunStore
from flowstage.stores.memory import MemoryRunStore
from flowstage.stores.memory_tokens import MemoryTokenStore
from flowstage.stores.sql.store import SqlRunStore
from flowstage.stores.sql.tokens import SqlTokenStore
from flowstage.stores.tokens import TOUCH_EVERY, Role, Token, TokenStore, token_id_of

T0 = 1_800_000_000.0


def random_part(secret: str) -> str:
    return secret.split("_", 2)[2]


class TokenStoreContract:
    """What every token store does. A backend's class provides `store`; the tests are shared."""

    @pytest.fixture
    def store(self) -> Iterator[RunStore]:
        raise NotImplementedError("each backend's test class opens its store")

    @pytest.fixture
    def tokens(self, store: RunStore) -> TokenStore:
        found: TokenStore = store.tokens
        return found

    def test_a_run_store_hands_out_one_token_store(self, store: RunStore) -> None:
        assert store.tokens is store.tokens

    def test_a_created_secret_verifies_to_its_token(self, tokens: TokenStore) -> None:
        token, secret = tokens.create(role=Role.OPERATOR, name="ci", at=T0)
        assert secret.startswith(f"fs_{token.id}_")
        assert len(random_part(secret)) >= 43  # 32 random bytes, url-safe base64
        assert token_id_of(secret) == token.id
        assert (token.role, token.name, token.created_at, token.expires_at, token.revoked_at) == (
            Role.OPERATOR,
            "ci",
            T0,
            None,
            None,
        )
        found = tokens.verify(secret, now=T0 + 5)
        assert found is not None
        assert (found.id, found.role, found.name) == (token.id, Role.OPERATOR, "ci")
        assert found.role is Role.OPERATOR

    def test_two_tokens_have_different_ids_and_secrets(self, tokens: TokenStore) -> None:
        a, sa = tokens.create(role=Role.VIEWER, at=T0)
        b, sb = tokens.create(role=Role.VIEWER, at=T0)
        assert a.id != b.id
        assert random_part(sa) != random_part(sb)
        assert tokens.verify(sa, now=T0) == dataclasses.replace(a, last_used_at=T0)
        assert tokens.verify(sb, now=T0) == dataclasses.replace(b, last_used_at=T0)

    def test_a_forged_secret_with_a_real_id_does_not_verify(self, tokens: TokenStore) -> None:
        token, secret = tokens.create(role=Role.ADMIN, at=T0)
        _, other = tokens.create(role=Role.ADMIN, at=T0)
        forged_random = "A" * len(random_part(secret))
        assert tokens.verify(f"fs_{token.id}_{forged_random}", now=T0) is None
        assert tokens.verify(f"fs_{token.id}_{random_part(other)}", now=T0) is None  # another token's random part
        assert tokens.verify(secret[:-1] + ("B" if secret[-1] != "B" else "C"), now=T0) is None
        assert tokens.verify(secret + "x", now=T0) is None
        assert tokens.verify(secret, now=T0) is not None

    @pytest.mark.parametrize(
        "secret",
        ["", "fs_", "fs__", "fs_nosuchid_" + "a" * 43, "Bearer x", "fs_" + "a" * 100 + "_b", "xx_abc_def", "fs_abc"],
    )
    def test_a_malformed_or_unknown_secret_does_not_verify(self, tokens: TokenStore, secret: str) -> None:
        tokens.create(role=Role.ADMIN, at=T0)
        assert tokens.verify(secret, now=T0) is None

    def test_an_expired_token_does_not_verify(self, tokens: TokenStore) -> None:
        _, secret = tokens.create(role=Role.VIEWER, expires_at=T0 + 60, at=T0)
        assert tokens.verify(secret, now=T0 + 59) is not None
        assert tokens.verify(secret, now=T0 + 60) is None
        assert tokens.verify(secret, now=T0 + 3600) is None

    def test_a_revoked_token_does_not_verify_and_revoking_twice_says_so(self, tokens: TokenStore) -> None:
        token, secret = tokens.create(role=Role.ADMIN, at=T0)
        _, kept = tokens.create(role=Role.ADMIN, at=T0)
        assert tokens.revoke(token.id, at=T0 + 10) is True
        assert tokens.verify(secret, now=T0 + 11) is None
        assert tokens.verify(kept, now=T0 + 11) is not None
        assert tokens.revoke(token.id, at=T0 + 20) is False
        assert tokens.revoke("nosuchid", at=T0 + 20) is False
        (listed,) = [t for t in tokens.list() if t.id == token.id]
        assert listed.revoked_at == T0 + 10

    def test_list_is_newest_first_with_every_token_and_no_secret(self, tokens: TokenStore) -> None:
        made = [tokens.create(role=role, name=f"n{i}", at=T0 + i) for i, role in enumerate(Role)]
        tokens.revoke(made[0][0].id, at=T0 + 10)
        listed = tokens.list()
        assert [t.id for t in listed] == [t.id for t, _ in reversed(made)]
        assert all(isinstance(t, Token) for t in listed)
        assert {f.name for f in dataclasses.fields(Token)} == {
            "id",
            "name",
            "role",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        }
        text = repr(listed)
        for _, secret in made:
            assert random_part(secret) not in text

    def test_verify_records_when_a_token_was_last_used_at_most_once_a_minute(self, tokens: TokenStore) -> None:
        token, secret = tokens.create(role=Role.VIEWER, at=T0)
        assert tokens.list()[0].last_used_at is None
        assert tokens.verify(secret, now=T0 + 1) is not None
        assert tokens.list()[0].last_used_at == T0 + 1
        tokens.verify(secret, now=T0 + 2)
        assert tokens.list()[0].last_used_at == T0 + 1
        tokens.verify(secret, now=T0 + 1 + TOUCH_EVERY)
        assert tokens.list()[0].last_used_at == T0 + 1 + TOUCH_EVERY
        tokens.verify(f"fs_{token.id}_forged", now=T0 + 1000)
        assert tokens.list()[0].last_used_at == T0 + 1 + TOUCH_EVERY

    def test_any_active_says_whether_a_live_token_exists(self, tokens: TokenStore) -> None:
        assert tokens.any_active(now=T0) is False
        short, _ = tokens.create(role=Role.VIEWER, expires_at=T0 + 60, at=T0)
        assert tokens.any_active(now=T0) is True
        assert tokens.any_active(now=T0 + 60) is False  # expired
        lasting, _ = tokens.create(role=Role.ADMIN, at=T0 + 61)
        assert tokens.any_active(now=T0 + 61) is True
        tokens.revoke(lasting.id, at=T0 + 62)
        assert tokens.any_active(now=T0 + 62) is False
        assert tokens.revoke(short.id, at=T0 + 63) is True  # an expired token can still be revoked


class TestMemoryTokenStore(TokenStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[RunStore]:
        store = MemoryRunStore()
        yield store
        store.close()

    def test_the_memory_store_hands_out_its_reference_token_store(self, store: RunStore) -> None:
        assert isinstance(store.tokens, MemoryTokenStore)

    def test_the_memory_store_keeps_no_secret(self, store: RunStore) -> None:
        _, secret = store.tokens.create(role=Role.ADMIN, at=T0)
        kept = repr(vars(store.tokens))
        assert random_part(secret) not in kept
        assert secret not in kept


class SqlTokenStoreContract(TokenStoreContract):
    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError("each SQL backend's test class gives its URL")

    @pytest.fixture
    def store(self, url: str) -> Iterator[RunStore]:
        store = SqlRunStore(url)
        yield store
        store.close()

    def rows(self, store: SqlRunStore) -> list[dict[str, Any]]:
        with store.read_transaction() as tx:
            return [dict(r) for r in tx.query("SELECT * FROM api_tokens")]

    def test_the_sql_store_hands_out_its_token_store(self, store: SqlRunStore) -> None:
        assert isinstance(store.tokens, SqlTokenStore)

    def test_the_stored_row_holds_a_salted_digest_never_the_secret(self, store: SqlRunStore) -> None:
        made = [store.tokens.create(role=Role.ADMIN, at=T0) for _ in range(2)]
        rows = self.rows(store)
        assert len(rows) == 2
        for _, secret in made:
            for row in rows:
                for value in row.values():
                    assert random_part(secret) not in str(value)
        assert rows[0]["salt"] != rows[1]["salt"]
        assert all(len(r["secret_hash"]) == 64 for r in rows)

    def test_tokens_created_through_one_store_verify_through_another(self, store: SqlRunStore, url: str) -> None:
        token, secret = store.tokens.create(role=Role.OPERATOR, at=T0)
        other = SqlRunStore(url)
        try:
            found = other.tokens.verify(secret, now=T0)
            assert found is not None
            assert found.id == token.id
            assert other.tokens.any_active(now=T0)
        finally:
            other.close()


class TestSqliteTokenStore(SqlTokenStoreContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'store.db'}"

    def test_the_database_file_never_holds_the_secret(self, url: str, tmp_path: Path) -> None:
        store = SqlRunStore(url)
        try:
            secrets = [store.tokens.create(role=Role.ADMIN, name="raw", at=T0)[1] for _ in range(3)]
            assert all(store.tokens.verify(s, now=T0) is not None for s in secrets)
        finally:
            store.close()
        files = sorted(tmp_path.glob("store.db*"))
        raw = b"".join(p.read_bytes() for p in files)
        assert b"raw" in raw  # the bytes read are the table's: the name is there
        for secret in secrets:
            assert random_part(secret).encode() not in raw
            assert secret.encode() not in raw


@pytest.mark.postgres
class TestPostgresTokenStore(SqlTokenStoreContract):
    @pytest.fixture
    def url(self, pg_schema_url: str) -> str:
        return pg_schema_url
