"""The notifiers of a project, from flowstage.yaml's ``notifiers:`` mapping.

    notifiers:
      ops: {webhook: "http://127.0.0.1:9000/hook"}
      team: {email: {to: [data@example.com], smtp: "smtp://127.0.0.1:1025"}}

Each entry names exactly one kind. A kind's factory is called as
``factory(name, settings, root=project_root)`` and returns a `Notifier`, raising `ConfigProblem`
(or ValueError) for wrong settings; every problem becomes a `DefinitionError` naming the file and
the key path (``notifiers.team.email.to``), and never quoting a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from flowstage.errors import DefinitionError, Problem
from flowstage.notifiers.base import ConfigProblem, Notifier
from flowstage.redact import mask_url

#: the built-in kinds, as `flowstage.plugins.Registry` entries
BUILTIN_NOTIFIERS: Mapping[str, str] = {
    "webhook": "flowstage.notifiers.webhook:webhook_notifier",
    "slack": "flowstage.notifiers.slack:slack_notifier",
    "email": "flowstage.notifiers.email:email_notifier",
    "command": "flowstage.notifiers.command:command_notifier",
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class Kinds(Protocol):
    """Where factories are found by kind: a `flowstage.plugins.Registry`."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> Any: ...


def _builtin_kinds() -> Kinds:
    from flowstage.plugins import Registry

    return Registry("flowstage.notifiers", BUILTIN_NOTIFIERS, what="notifier")


def _problem(where: str, path: tuple[str | int, ...], message: str) -> Problem:
    """A problem at `path` of `where`: with its line when `where` is the file and it can be read."""
    dotted = ".".join(str(p) for p in path)
    text = f"{dotted}: {message}"
    file = Path(where)
    if file.is_file():
        try:
            from flowstage.model.yamlsource import parse

            return parse(file.read_text(encoding="utf-8"), where).problem(path, text)
        except (OSError, ValueError, DefinitionError):
            pass
    return Problem(text, where)


def notifiers_from_config(
    config: Mapping[str, Any],
    *,
    where: str = "flowstage.yaml",
    kinds: Kinds | None = None,
    root: Path | None = None,
) -> dict[str, Notifier]:
    """The notifiers of `config` (a project's flowstage.yaml, `${ENV}` already substituted), by name.

    Every problem found is reported at once, as one `DefinitionError`.
    """
    section = config.get("notifiers")
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise DefinitionError([_problem(where, ("notifiers",), "expected a mapping of names to notifiers")])
    kinds = kinds or _builtin_kinds()
    available = kinds.names()
    found: dict[str, Notifier] = {}
    problems: list[Problem] = []
    for name, entry in section.items():
        path: tuple[str | int, ...] = ("notifiers", name)
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(_problem(where, path, "a notifier's name is a letter then letters, digits, '_' or '-'"))
            continue
        if not isinstance(entry, dict) or len(entry) != 1:
            shape = "several kinds" if isinstance(entry, dict) and entry else "no kind"
            problems.append(
                _problem(where, path, f"a notifier names exactly one kind ({', '.join(available)}), this one has {shape}")
            )
            continue
        ((kind, spec),) = entry.items()
        path = (*path, kind)
        if kind not in available:
            from flowstage.model.workflow import did_you_mean

            problems.append(
                _problem(
                    where,
                    path,
                    f"unknown notifier kind '{kind}'{did_you_mean(str(kind), available)}; kinds: {', '.join(available)}",
                )
            )
            continue
        try:
            found[name] = kinds.get(kind)(name, spec, root=root)
        except ConfigProblem as exc:
            problems.append(_problem(where, (*path, *exc.key), exc.message))
        except (ValueError, TypeError) as exc:
            problems.append(_problem(where, path, mask_url(f"invalid settings: {exc}")))
    if problems:
        raise DefinitionError(problems)
    return found


__all__ = ["BUILTIN_NOTIFIERS", "Kinds", "notifiers_from_config"]
