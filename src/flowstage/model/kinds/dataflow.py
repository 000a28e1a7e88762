"""The `dataflow:` kind: a package file or an inline package."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from flowstage.model.dataflow import Package
from flowstage.model.kinds import KindSpec


class DataflowSpec(KindSpec):
    """``dataflow: packages/x.yaml`` or an inline package; the task's `variables:` override the package's."""

    kind: ClassVar[str] = "dataflow"
    dataflow: str | Package = Field(description="a package file (relative to the project root) or an inline package")
