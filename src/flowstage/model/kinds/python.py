"""The `python:` kind: a callable, in a warm worker, a fresh process or the runner's own."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from flowstage.model.kinds import KindSpec

_CALLABLE = re.compile(r"^(?:[A-Za-z_][\w.]*|[^:]+\.py):[A-Za-z_]\w*$")


class PythonSpec(KindSpec):
    """``python: module:function`` or ``python: path/file.py:function``."""

    kind: ClassVar[str] = "python"
    isolated: ClassVar[bool] = True
    python: str = Field(description="module:function or path/file.py:function")
    interpreter: str | None = Field(default=None, description='a Python version ("3.11") or a path')
    in_process: bool = Field(default=False, description="run in the runner's own process")
    fresh_process: bool = Field(
        default=False, description="run in a new interpreter of its own, not a warm worker shared with earlier tasks"
    )

    @field_validator("python")
    @classmethod
    def _callable(cls, v: str) -> str:
        if not _CALLABLE.match(v):
            raise ValueError(f"expected module:function or path/file.py:function, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_placement(self) -> PythonSpec:
        if self.in_process and self.fresh_process:
            raise ValueError("in_process and fresh_process exclude each other: a task runs in the runner or in a process")
        return self

    @property
    def in_child(self) -> bool:
        return not self.in_process
