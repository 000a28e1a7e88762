"""The `wait_for:` kind: a sensor on a file glob or a query."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flowstage.model.durations import Duration
from flowstage.model.kinds import KindSpec


class WaitTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    file: str | None = Field(default=None, description="a glob (relative to the project root)")
    sql: str | None = Field(default=None, description="a query whose first value is true-ish")
    connection: str = "warehouse"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one(self) -> WaitTarget:
        if (self.file is None) == (self.sql is None):
            raise ValueError("wait_for needs exactly one of `file:` or `sql:`")
        return self


class WaitForSpec(KindSpec):
    """``wait_for: {file: glob}`` or ``{sql: query, connection}``, checked every `poke` until `timeout`."""

    kind: ClassVar[str] = "wait_for"
    template_fields: ClassVar[tuple[str, ...]] = ("wait_for",)
    wait_for: WaitTarget
    poke: Duration = Field(default=10.0, description="how often to check (a duration)")
