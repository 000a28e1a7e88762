"""The `shell:` kind: a command, and the `env:` values it may take from the run's secrets."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flowstage.model.kinds import KindSpec


class EnvSource(BaseModel):
    """A value of a shell task's `env:` taken from the run's secrets: exactly one key.

    ``{connection: shop}`` the connection's URL (as settings resolve it, `FLOWSTAGE_CONN_SHOP`
    included), ``{env: SHOP_PASSWORD}`` the runner's environment variable of that name,
    ``{store: true}`` the run store's URL. A task's process gets none of these otherwise.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    connection: str | None = Field(default=None, description="a connection's URL")
    env: str | None = Field(default=None, description="the runner's environment variable of this name")
    store: bool = Field(default=False, description="the run store's URL")

    @model_validator(mode="after")
    def _one(self) -> EnvSource:
        given = [key for key, value in (("connection", self.connection), ("env", self.env), ("store", self.store)) if value]
        if len(given) != 1:
            raise ValueError("an env value from the run is exactly one of {connection: name}, {env: NAME}, {store: true}")
        return self


class ShellSpec(KindSpec):
    """``shell: command``; template values are shell-quoted.

    `env:` adds variables: a plain value is set as written (templates rendered, not quoted);
    ``{connection: name}``, ``{env: NAME}`` or ``{store: true}`` (an `EnvSource`) hand the task
    one of the secrets its process does not inherit (SPEC §1).
    """

    kind: ClassVar[str] = "shell"
    isolated: ClassVar[bool] = True
    template_fields: ClassVar[tuple[str, ...]] = ("shell", "env")
    shell: str = Field(description="a command run by /bin/sh; non-zero exit is failure")
    env: dict[str, str | EnvSource] = Field(
        default_factory=dict,
        description="environment variables added: a plain value, or {connection: name}, {env: NAME}, {store: true}",
    )

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: _env_value(x) for k, x in v.items()}
        return v


def _env_value(value: Any) -> Any:
    """Scalars become the text a shell would see (`true`, not `True`; null is empty); mappings stay."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | EnvSource):
        return value
    return str(value)
