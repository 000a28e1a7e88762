"""`command`: a program run with the notification's body (JSON) on its stdin.

    page: {command: "scripts/page-oncall --team data"}
    page: {command: [scripts/page-oncall, --team, data]}

The command is split like a shell would (``shlex``) but no shell runs it; it runs in the project
root, without the store URL or the connection URLs in its environment, for at most 10 s. A
non-zero exit is a failure, reported with the last line of its stderr.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstage.notifiers.base import ConfigProblem, Masker, Notification, NotifierError
from flowstage.notifiers.webhook import encode

TIMEOUT = 10.0


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not (k.startswith("FLOWSTAGE_CONN_") or k == "FLOWSTAGE_STORE")}


@dataclass(frozen=True)
class CommandNotifier:
    name: str
    argv: tuple[str, ...]
    cwd: Path | None = None
    timeout: float = TIMEOUT
    kind: str = "command"

    @property
    def mask(self) -> Masker:
        return Masker.of(urls=[a for a in self.argv if "://" in a])

    def send(self, notification: Notification) -> None:
        where = f"command {self.name}: {Path(self.argv[0]).name}"
        try:
            done = subprocess.run(
                self.argv,
                input=encode(notification.body),
                capture_output=True,
                timeout=self.timeout,
                cwd=self.cwd,
                env=_environment(),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise NotifierError(f"{where}: still running after {self.timeout:g} s (stopped)") from None
        except OSError as exc:
            raise NotifierError(self.mask(f"{where}: cannot run it: {exc.strerror or exc}")) from None
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            said = f": {lines[-1].strip()[:300]}" if lines else ""
            raise NotifierError(self.mask(f"{where}: exit code {done.returncode}{said}"))


def command_notifier(name: str, spec: Any, *, root: Path | None = None) -> CommandNotifier:
    """A command notifier from its settings: a command line, or a list of its arguments."""
    if isinstance(spec, str):
        try:
            argv = shlex.split(spec)
        except ValueError as exc:
            raise ConfigProblem(f"cannot split the command line: {exc}") from None
    elif isinstance(spec, list) and all(isinstance(a, str | int | float) for a in spec):
        argv = [str(a) for a in spec]
    else:
        raise ConfigProblem("expected a command line or a list of its arguments")
    if not argv or not argv[0]:
        raise ConfigProblem("the command is empty")
    return CommandNotifier(name, tuple(argv), cwd=root)


__all__ = ["CommandNotifier", "command_notifier"]
