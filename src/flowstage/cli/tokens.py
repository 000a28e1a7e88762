"""`token`: create, list and revoke the API tokens of the REST server (SPEC §5.2).

`token create` prints the new secret on its last line, once: the store keeps only a digest of it.
`token list` never shows a secret (the store has none to show).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from flowstage.cli.common import emit_json, project_for, store_for
from flowstage.errors import NotFoundError, UsageError
from flowstage.views.records import iso

if TYPE_CHECKING:
    from flowstage.stores.tokens import Token, TokenStore

_ROLES = ("viewer", "operator", "admin")


def _tokens() -> TokenStore:
    return store_for(project_for()).tokens


def _entry(t: Token, now: float) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "role": t.role.value,
        "status": t.status(now),
        "created_at": iso(t.created_at),
        "expires_at": iso(t.expires_at),
        "revoked_at": iso(t.revoked_at),
        "last_used_at": iso(t.last_used_at),
    }


def _short(ts: float | None) -> str | None:
    """A time for the table: UTC, to the minute."""
    if ts is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _expiry(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    from flowstage.model.durations import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"--expires: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"--expires: a token must live for some time, not {value!r} (write e.g. 30d, 12h)")
    return now + seconds


@click.group("token")
def token_group() -> None:
    """API tokens for the REST server: create, list, revoke."""


@token_group.command("create")
@click.option("--role", required=True, type=click.Choice(_ROLES, case_sensitive=False), help="viewer < operator < admin.")
@click.option("--name", default=None, help="What the token is for (shown by `token list`).")
@click.option("--expires", default=None, metavar="DURATION", help="Lifetime, e.g. 30d, 12h (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Print the token, with its secret, as JSON.")
def create_cmd(role: str, name: str | None, expires: str | None, as_json: bool) -> None:
    """A new token; its secret is printed on the last line, once."""
    from flowstage.stores.tokens import parse_role

    now = time.time()
    expires_at = _expiry(expires, now)
    try:
        parsed = parse_role(role)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    token, secret = _tokens().create(role=parsed, name=name, expires_at=expires_at, at=now)
    if as_json:
        emit_json({**_entry(token, now), "secret": secret})
        return
    until = f", expires {_short(expires_at)}" if expires_at is not None else ""
    named = f" {name!r}" if name else ""
    click.echo(f"created {token.role.value} token {token.id}{named}{until}")
    click.echo("the secret below is shown only now; send it as `Authorization: Bearer <secret>`:")
    click.echo(secret)


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the tokens as a JSON array (never their secrets).")
def list_cmd(as_json: bool) -> None:
    """Every token, newest first: id, name, role, status, times (never a secret)."""
    now = time.time()
    tokens = _tokens().list()
    if as_json:
        emit_json([_entry(t, now) for t in tokens])
        return
    if not tokens:
        click.echo("no tokens: the API needs none until one exists (`flowstage token create --role admin`)")
        return
    click.echo(f"{'ID':<16}  {'ROLE':<8}  {'STATUS':<7}  {'CREATED':<20}  {'EXPIRES':<20}  {'LAST USED':<20}  NAME")
    for t in tokens:
        click.echo(
            f"{t.id:<16}  {t.role.value:<8}  {t.status(now):<7}  {_short(t.created_at) or '':<20}  "
            f"{_short(t.expires_at) or 'never':<20}  {_short(t.last_used_at) or '-':<20}  {t.name or ''}"
        )


@token_group.command("revoke")
@click.argument("token_id", metavar="ID")
def revoke_cmd(token_id: str) -> None:
    """Revoke a token: its secret is refused from now on."""
    tokens = _tokens()
    if tokens.revoke(token_id, at=time.time()):
        click.echo(f"revoked token {token_id}")
        return
    if any(t.id == token_id for t in tokens.list()):
        click.echo(f"token {token_id} was revoked already")
        return
    raise NotFoundError(f"no token {token_id!r} (see `flowstage token list`)")


COMMANDS = [token_group]
