"""Helpers shared by the commands: the project, the store, workflow lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowstage.settings import Project, load_project
from flowstage.stores.base import RunStore


def emit_json(data: Any) -> None:
    """Print `data` as the command's one JSON document (valid JSON and UTF-8: see `json_text`)."""
    import click

    from flowstage.views.records import json_text

    click.echo(json_text(data))


def project_for(ref: str | None = None) -> Project:
    """The project around the current directory, or around `ref` when it is a file."""
    if ref is not None:
        path = Path(ref)
        if path.is_file():
            from flowstage.settings import find_root

            root, cfg = find_root(path.resolve().parent)
            if cfg is not None:
                return load_project(root=root)
    return load_project()


def store_for(project: Project) -> RunStore:
    from flowstage.app.runs import open_store

    return open_store(project)
