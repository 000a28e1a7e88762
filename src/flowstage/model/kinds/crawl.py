"""The `crawl:` kind: a crawler that infers schemas into the catalog."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flowstage.model.kinds import KindSpec


class CrawlTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    path: str | None = Field(default=None, description="a glob of files (csv, parquet, json); hive partitions are found")
    format: str | None = Field(default=None, pattern=r"^(csv|parquet|json)$")
    options: dict[str, Any] = Field(default_factory=dict)
    connection: str | None = Field(default=None, description="crawl tables of this connection instead of files")
    tables: list[str] = Field(default_factory=lambda: ["*"], description="table patterns, e.g. public.*")
    table: str | None = Field(default=None, description="the catalog name (files), or the name prefix (tables)")
    sample_size: int = Field(default=20_000, ge=1)

    @model_validator(mode="after")
    def _shape(self) -> CrawlTarget:
        if (self.path is None) == (self.connection is None):
            raise ValueError("a crawler reads `path:` (files) or `connection:` (tables), not both")
        if self.path is not None and not self.table:
            raise ValueError("a file crawler needs `table:` (the catalog name)")
        return self


class CrawlSpec(KindSpec):
    """``crawl: {path, table}`` or ``{connection, tables}``: infer schemas into the catalog."""

    kind: ClassVar[str] = "crawl"
    crawl: CrawlTarget
