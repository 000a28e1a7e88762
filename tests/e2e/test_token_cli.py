"""`flowstage token create | list | revoke` as a user types them, on a project in tmp_path."""

from __future__ import annotations

import json
import re

import pytest

from flowstage.stores.sql.store import SqlRunStore
from flowstage.stores.tokens import Role, Token
from tests.conftest import Project

SECRET = re.compile(r"^fs_([0-9a-f]+)_[A-Za-z0-9_-]{43,}$")


def verify(project: Project, secret: str) -> Token | None:
    """What the project's store answers for `secret` now (the server's own check)."""
    import time

    store = SqlRunStore(f"sqlite:///{project.root / '.flowstage' / 'flowstage.db'}")
    try:
        return store.tokens.verify(secret, now=time.time())
    finally:
        store.close()


def test_create_prints_the_secret_on_its_last_line_and_it_verifies(project: Project) -> None:
    result = project.cli("token", "create", "--role", "operator", "--name", "ci")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    secret = lines[-1]
    match = SECRET.match(secret)
    assert match, result.out
    assert match.group(1) in lines[0]
    token = verify(project, secret)
    assert token is not None
    assert token.role is Role.OPERATOR
    assert token.name == "ci"


def test_create_json_gives_the_token_and_its_secret(project: Project) -> None:
    result = project.cli("token", "create", "--role", "ADMIN", "--expires", "30d", "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["role"] == "admin"
    assert doc["status"] == "active"
    assert doc["expires_at"] is not None
    assert SECRET.match(doc["secret"])
    assert doc["secret"].startswith(f"fs_{doc['id']}_")


def test_list_json_is_newest_first_and_holds_no_secret(project: Project) -> None:
    secrets = []
    for role in ("viewer", "admin"):
        made = project.cli("token", "create", "--role", role, "--name", f"for-{role}")
        assert made.code == 0, made.err
        secrets.append(made.out.strip().splitlines()[-1])
    result = project.cli("token", "list", "--json")
    assert result.code == 0, result.err
    listed = json.loads(result.out)
    assert [t["name"] for t in listed] == ["for-admin", "for-viewer"]
    assert all(
        set(t) == {"id", "name", "role", "status", "created_at", "expires_at", "revoked_at", "last_used_at"} for t in listed
    )
    table = project.cli("token", "list")
    assert table.code == 0
    for secret in secrets:
        random = secret.split("_", 2)[2]
        assert random not in result.out
        assert random not in table.out
    assert "for-viewer" in table.out


def test_revoke_refuses_the_secret_from_then_on(project: Project) -> None:
    made = project.cli("token", "create", "--role", "viewer", "--json")
    doc = json.loads(made.out)
    assert verify(project, doc["secret"]) is not None
    result = project.cli("token", "revoke", doc["id"])
    assert result.code == 0, result.err
    assert doc["id"] in result.out
    assert verify(project, doc["secret"]) is None
    (listed,) = json.loads(project.cli("token", "list", "--json").out)
    assert listed["status"] == "revoked"
    assert listed["revoked_at"] is not None
    again = project.cli("token", "revoke", doc["id"])
    assert again.code == 0
    assert "already" in again.out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["token", "create", "--role", "root"], "root"),
        (["token", "create"], "--role"),
        (["token", "create", "--role", "admin", "--expires", "soon"], "--expires"),
        (["token", "create", "--role", "admin", "--expires", "0s"], "--expires"),
        (["token", "revoke", "nosuchtoken"], "nosuchtoken"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_code_2(project: Project, args: list[str], says: str) -> None:
    result = project.cli(*args)
    assert result.code == 2, (result.out, result.err)
    assert says in result.err
    assert "Traceback" not in result.err
    assert "fs_" not in result.out  # no token was made
    assert json.loads(project.cli("token", "list", "--json").out) == []
