"""``sql:`` / ``sql_file:`` tasks: statements on a named connection, one transaction per attempt.

`params:` are bound by the driver (``:name``), never pasted into the text. `save: var` keeps
the first column of the first row (none when no row), `save: {var: column}` named columns of the
first row, `save_rows: var` every row as a mapping (at most 10,000: more is an error). A timeout
or cancel stops the statement on the server, and the transaction is rolled back. On a DuckDB file
another process holds, the attempt waits its turn (told as its reason) until its deadline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowstage.connections import LockTimeout, LockWait, StatementResult, run_statements, split_statements, to_json_value
from flowstage.engine.attempts import check_saved_size
from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import DefinitionError, RunError
from flowstage.logging import DEBUG
from flowstage.model.kinds.sql import SqlSpec
from flowstage.model.statuses import TaskStatus
from flowstage.tasks import TaskContext

MAX_SAVED_ROWS = 10_000


def statements_of(spec: SqlSpec, root: Path) -> list[str]:
    if spec.sql is not None:
        text = spec.sql
    else:
        assert spec.sql_file is not None
        path = Path(spec.sql_file)
        path = path if path.is_absolute() else root / path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DefinitionError(f"sql_file {spec.sql_file}: cannot read ({exc.strerror or exc})") from None
    statements = split_statements(text)
    if not statements:
        raise DefinitionError("sql: no statement to run")
    return statements


def lock_wait(job: AttemptSpec, ctx: TaskContext) -> LockWait:
    """How the attempt waits for a DuckDB file another process holds: noted, until killed or its deadline."""
    handle = ctx.handle
    return LockWait(deadline=job.deadline, timeout=job.timeout, killed=lambda: handle.killed, note=ctx.note)


def _first_row(result: StatementResult | None) -> dict[str, Any] | None:
    if result is None or not result.rows:
        return None
    return {c: to_json_value(v) for c, v in zip(result.columns, result.rows[0], strict=False)}


def run(job: AttemptSpec, ctx: TaskContext) -> Outcome:
    spec = job.spec
    assert isinstance(spec, SqlSpec)
    statements = statements_of(spec, Path(job.root))
    timeout = job.timeout
    try:
        session = ctx.resources.connections.session(spec.connection, timeout=timeout, wait=lock_wait(job, ctx))
    except LockTimeout as exc:
        return Outcome(TaskStatus.TIMED_OUT, error=str(exc))
    ctx.handle.on_kill(session.cancel)
    max_rows = MAX_SAVED_ROWS if spec.save_rows else (1 if job.save is not None else 0)
    try:
        for stmt in statements:
            ctx.log(DEBUG, f"{spec.connection}: {stmt}")
        last, written = run_statements(session, statements, spec.params, max_rows=max_rows)
        if spec.save_rows and last is not None and last.truncated:
            raise RunError(f"save_rows: the query returns more than {MAX_SAVED_ROWS:,} rows; aggregate or filter it")
        if ctx.handle.killed:
            raise RunError("cancelled")
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    metrics: dict[str, Any] = {"rows_written": written}
    if last is not None:
        metrics["rows_read"] = last.rowcount
    saved: dict[str, Any] = {}
    if spec.save_rows:
        rows = (last.rows or []) if last is not None else []
        columns = last.columns if last is not None else []
        saved[spec.save_rows] = [{c: to_json_value(v) for c, v in zip(columns, r, strict=False)} for r in rows]
        check_saved_size(saved[spec.save_rows], "save_rows:")
    value: Any = None
    save = job.save
    if isinstance(save, str):
        first = _first_row(last)
        value = next(iter(first.values())) if first else None
    elif isinstance(save, dict):
        first = _first_row(last)
        if first is None:
            value = dict.fromkeys(save.values())
        else:
            value = first
    return Outcome(TaskStatus.SUCCEEDED, value=value, metrics=metrics, variables=saved)
