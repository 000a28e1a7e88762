"""Auto flush: after a successful run, refresh the tables and materialized views it feeds.

`preferences.flush` items: a name (a DuckDB table of the warehouse rebuilt from ``sql/NAME.sql``),
``{table, sql_file, connection}`` (a table rebuilt from a SQL file on a DuckDB or SQL connection),
or ``{materialized_view, connection}`` (``REFRESH MATERIALIZED VIEW`` on PostgreSQL). An item on a
DuckDB file holds the file while it is rebuilt; while another process holds it, the flush waits
its turn (and logs that it does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from flowstage.connections import Connections, LockWait, split_statements
from flowstage.data.compile import qualified
from flowstage.errors import FlowstageError
from flowstage.logging import INFO
from flowstage.model.workflow import FlushItem


def _item(entry: str | FlushItem) -> FlushItem:
    if isinstance(entry, FlushItem):
        return entry
    return FlushItem(table=entry, sql_file=f"sql/{entry}.sql")


def refresh(
    items: Sequence[str | FlushItem],
    connections: Connections,
    root: Path,
    log: Callable[[int, str], None],
    *,
    wait: LockWait | None = None,
) -> str | None:
    """Refresh every item; the first error as text, or None.

    Args:
        wait: how to wait for a DuckDB file another process holds (default: without a bound,
            the wait logged).
    """
    if wait is None:
        wait = LockWait(note=lambda reason: log(INFO, f"flush {reason}") if reason else None)
    for entry in items:
        item = _item(entry)
        try:
            if item.materialized_view is not None:
                with connections.transaction(item.connection, wait=wait) as session:
                    session.execute(f"REFRESH MATERIALIZED VIEW {qualified(item.materialized_view)}", {})
                log(INFO, f"flush: refreshed materialized view {item.materialized_view}")
                continue
            assert item.table is not None
            file = Path(item.sql_file or f"sql/{item.table}.sql")
            path = file if file.is_absolute() else root / file
            try:
                statements = split_statements(path.read_text(encoding="utf-8"))
            except OSError:
                return f"flush {item.table}: cannot read {file} (the SQL that defines the table)"
            if len(statements) != 1:
                return f"flush {item.table}: {file} must hold one SELECT"
            with connections.transaction(item.connection, wait=wait) as session:
                if connections.url(item.connection).startswith("duckdb:"):
                    session.execute(f"CREATE OR REPLACE TABLE {qualified(item.table)} AS {statements[0]}", {})
                else:
                    session.execute(f"DROP TABLE IF EXISTS {qualified(item.table)}", {})
                    session.execute(f"CREATE TABLE {qualified(item.table)} AS {statements[0]}", {})
            log(INFO, f"flush: rebuilt table {item.table} from {file}")
        except FlowstageError as exc:
            return f"flush: {exc}"
    return None
