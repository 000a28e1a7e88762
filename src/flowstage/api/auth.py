"""Access control of the API: the one seam where a route asks for a role.

Every route declares the role it needs with ``dependencies=[Depends(require("viewer"))]``
(viewer: read; operator: run, resume, cancel; admin: deploy, rollback). Today every request is
allowed: API tokens do not exist yet, which is why `flowstage server` only listens on loopback.
The token check (``Authorization: Bearer TOKEN``, 401 without a valid token, 403 for a role too
low) goes in `require`, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

Role = Literal["viewer", "operator", "admin"]

ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")  # each role may do what the ones before it do


def require(role: Role) -> Callable[[], None]:
    """A FastAPI dependency that lets a request through when its caller holds `role` (today: always)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def check() -> None:
        return None

    check.__name__ = f"require_{role}"
    return check


__all__ = ["ROLES", "Role", "require"]
