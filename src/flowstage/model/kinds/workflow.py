"""The `workflow:` kind: another workflow, run as a sub-run."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from flowstage.model.kinds import KindSpec


class WorkflowSpec(KindSpec):
    """``workflow: name_or_file``: another workflow as a sub-run; the task's `variables:` are its overrides."""

    kind: ClassVar[str] = "workflow"
    workflow: str = Field(description="a workflow name (deployed or in workflows/) or a file")
