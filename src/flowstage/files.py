"""Reading the files a user writes — workflows, packages, flowstage.yaml — as text, within bounds.

A definition file is UTF-8 text of at most `MAX_DEFINITION_BYTES`; anything else (a binary file,
another encoding, `/dev/zero`, a folder) is a `DefinitionError` naming the file, never an internal
error or a read without end.
"""

from __future__ import annotations

from pathlib import Path

from flowstage.errors import DefinitionError, Problem

#: far above any hand-written file (a 100,000-task workflow is about 7 MB)
MAX_DEFINITION_BYTES = 64 << 20


def read_definition(path: str | Path, what: str = "file") -> str:
    """The text of the definition file at `path` (`what` names it in messages: "dataflow package")."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_DEFINITION_BYTES + 1)
    except FileNotFoundError:
        raise DefinitionError([Problem("no such file", name)]) from None
    except IsADirectoryError:
        raise DefinitionError([Problem(f"is a directory, not a {what}", name)]) from None
    except OSError as exc:
        raise DefinitionError([Problem(f"cannot read {what}: {exc.strerror or exc}", name)]) from None
    if len(data) > MAX_DEFINITION_BYTES:
        raise DefinitionError([Problem(f"larger than {MAX_DEFINITION_BYTES >> 20} MiB: not a {what}", name)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"cannot read: not UTF-8 text (byte 0x{data[exc.start]:02x}): save the {what} as UTF-8"
        raise DefinitionError([Problem(message, name, line, column)]) from None


__all__ = ["MAX_DEFINITION_BYTES", "read_definition"]
