"""The exceptions flowstage raises, and the exit codes they map to.

    FlowstageError                     every error flowstage raises on purpose
    ├── DefinitionError                a workflow / project file is invalid (exit 2)
    │   └── VariableError (KeyError)   an undefined variable or a template that fails
    ├── UsageError                     bad command-line arguments (exit 2)
    ├── NotFoundError (LookupError)    an unknown run, workflow or task (exit 2)
    ├── RunError                       a run cannot be started, resumed or cancelled (exit 1)
    ├── StoreError                     the run store is unreachable or broken (exit 3)
    └── ConnectionError                a connection cannot be opened (exit 3)

`RunInterrupted` derives from `BaseException` so that an ``except Exception:`` on the way cannot
swallow a cancel signal.
"""

from __future__ import annotations

from enum import IntEnum

from msgspec import Struct


class ExitCode(IntEnum):
    """The CLI's exit codes: a contract with scripts and schedulers."""

    OK = 0
    RUN_FAILED = 1
    INVALID_INPUT = 2
    INFRASTRUCTURE = 3


class FlowstageError(Exception):
    """Root of every error flowstage raises on purpose."""

    exit_code: ExitCode = ExitCode.RUN_FAILED


class Problem(Struct, frozen=True):
    """One problem found in a file, located by line and column (1-based)."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.file is None and self.line is None:
            return self.message
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class DefinitionError(FlowstageError):
    """A workflow or project file is invalid; carries every problem found."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class VariableError(KeyError, DefinitionError):
    """An undefined variable, or a template that cannot be rendered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return DefinitionError.__str__(self)


class UsageError(FlowstageError):
    """Bad command-line arguments."""

    exit_code = ExitCode.INVALID_INPUT


class NotFoundError(LookupError, FlowstageError):
    """An unknown run, workflow or task."""

    exit_code = ExitCode.INVALID_INPUT


class RunError(FlowstageError):
    """A run cannot be started, resumed or cancelled."""

    exit_code = ExitCode.RUN_FAILED


class StoreError(FlowstageError):
    """The run store is unreachable or broken."""

    exit_code = ExitCode.INFRASTRUCTURE


class ConnectionError(FlowstageError):
    """A connection cannot be opened."""

    exit_code = ExitCode.INFRASTRUCTURE


class RunInterrupted(BaseException):
    """Raised by a signal handler (SIGTERM) to cancel the run in progress."""
