"""The `spark:` kind: a PySpark script run on the configured master."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator

from flowstage.model.kinds import KindSpec

_SCRIPT = re.compile(r"^(?:[^:]*/)?[^:/]+\.py(?::[A-Za-z_]\w*)?$")


class SparkSpec(KindSpec):
    """``spark: path/job.py``: a PySpark script whose ``main(spark, **with)`` runs on the configured master.

    ``spark: path/job.py:function`` calls another function than `main`. The attempt runs in a
    child process that builds its own SparkSession from flowstage.yaml's `spark:` (so a kill takes
    the driver and its JVM down with the task); the function's return value can be saved.
    """

    kind: ClassVar[str] = "spark"
    isolated: ClassVar[bool] = True
    spark: str = Field(
        description="a .py file (relative to the project root) whose main(spark, **with) is called, or path/file.py:function"
    )

    @field_validator("spark")
    @classmethod
    def _script(cls, v: str) -> str:
        if not _SCRIPT.match(v):
            raise ValueError(f"expected a PySpark script: path/file.py or path/file.py:function, got {v!r}")
        return v

    @property
    def script(self) -> str:
        """The script's path as written (relative to the project root, or absolute)."""
        return self.spark.rpartition(":")[0] if ":" in self.spark else self.spark

    @property
    def function(self) -> str:
        """The function called with the session and the task's `with:` (default `main`)."""
        return self.spark.rpartition(":")[2] if ":" in self.spark else "main"
