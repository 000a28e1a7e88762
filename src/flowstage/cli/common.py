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


def print_table(headers: list[str], rows: list[list[str]], *, right: tuple[int, ...] = ()) -> None:
    """A table on stdout (rich): a header row, columns as wide as their widest cell, never wrapped
    (a pipe gets lines of any length), so long names never shift the columns after them."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if i in right else "left", no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*row)
    widest = sum(max([len(h), *(len(r[i]) for r in rows)]) + 2 for i, h in enumerate(headers))
    console = Console(soft_wrap=False, width=max(widest + 4, 80), highlight=False)
    console.print(table, markup=False)


def short_time(ts: float | None, *, utc: bool = False) -> str:
    """A time as people read it: ``2026-03-01 14:05:09 CET`` (local, the zone named) or in UTC."""
    import time

    if ts is None:
        return ""
    if utc:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def number(value: object) -> str:
    """A metric as people read it: at most 4 significant digits for a fraction, whole numbers whole."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    if isinstance(value, float):
        return str(int(value))
    return str(value)


def brief(value: object, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, saying how long it was."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text):,} chars)"


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
