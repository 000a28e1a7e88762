"""The `sql:` / `sql_file:` kind: statements on a connection, parameters bound."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from flowstage.model.kinds import KindSpec


class SqlSpec(KindSpec):
    """``sql: statement`` or ``sql_file: path.sql`` on `connection:`; `params:` are bound, never pasted."""

    kind: ClassVar[str] = "sql"
    keys: ClassVar[tuple[str, ...]] = ("sql", "sql_file")
    template_fields: ClassVar[tuple[str, ...]] = ("params",)
    sql: str | None = Field(default=None, description="one or several statements; :name binds params")
    sql_file: str | None = Field(default=None, description="a .sql file (relative to the project root)")
    connection: str = Field(default="warehouse", description="a connection named in flowstage.yaml")
    params: dict[str, Any] = Field(default_factory=dict, description="values bound to :name parameters")
    save_rows: str | None = Field(default=None, description="a variable that receives every row (at most 10,000)")

    @field_validator("sql", "sql_file")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("save_rows")
    @classmethod
    def _var_name(cls, v: str | None) -> str | None:
        if v is not None and not v.isidentifier():
            raise ValueError(f"not a variable name: {v!r}")
        return v
