"""`catalog`: the tables crawlers found, their columns and schema history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from flowstage.cli.common import emit_json, project_for, store_for
from flowstage.errors import NotFoundError
from flowstage.views.records import iso

if TYPE_CHECKING:
    from flowstage.stores.catalog import CatalogTable


def _entry(t: CatalogTable, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": t.name,
        "location": t.location,
        "connection": t.connection,
        "format": t.format,
        "columns": t.columns,
        "partitions": t.partitions,
        "row_estimate": t.row_estimate,
        "version": t.version,
        "updated_at": iso(t.updated_at),
    }
    if history is not None:
        out["history"] = [dict(h, at=iso(h["at"])) for h in history]
    return out


@click.command("catalog")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the catalog table (or the list of tables) as JSON.")
def catalog_cmd(name: str | None, as_json: bool) -> None:
    """The data catalog: tables, or one table's columns, location, row estimate and schema history."""
    from flowstage.stores.catalog import CatalogStore, describe_change

    catalog: CatalogStore = store_for(project_for()).catalog
    if name is None:
        tables = catalog.tables()
        if as_json:
            emit_json([_entry(t) for t in tables])
            return
        if not tables:
            click.echo("the catalog is empty: run a crawler (a `crawl:` task)")
            return
        click.echo(f"{'NAME':<32} {'FORMAT':<8} {'COLUMNS':>7} {'ROWS':>12} {'VERSION':>7}  LOCATION")
        for t in tables:
            rows = "" if t.row_estimate is None else f"{t.row_estimate:,}"
            where = f"{t.connection}:{t.location}" if t.connection else t.location
            click.echo(f"{t.name:<32} {t.format or '':<8} {len(t.columns):>7} {rows:>12} {t.version:>7}  {where}")
        return
    table = catalog.get(name)
    if table is None:
        raise NotFoundError(f"no catalog table {name!r}")
    history = catalog.history(name)
    if as_json:
        emit_json(_entry(table, history))
        return
    where = f"{table.connection}:{table.location}" if table.connection else table.location
    click.echo(f"{table.name}  ({table.format}, version {table.version})  {where}")
    if table.row_estimate is not None:
        click.echo(f"about {table.row_estimate:,} rows")
    if table.partitions:
        click.echo("partitions: " + ", ".join(table.partitions))
    width = max((len(c["name"]) for c in table.columns), default=4)
    for c in table.columns:
        click.echo(f"  {c['name']:<{width}}  {c['type']}")
    click.echo("history:")
    for h in history:
        click.echo(f"  v{h['version']}  {iso(h['at'])}  {describe_change(h['change'])}")


COMMANDS = [catalog_cmd]
