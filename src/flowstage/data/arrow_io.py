"""Move tables between databases and DuckDB as Arrow record batches.

PostgreSQL goes through ADBC (`adbc-driver-postgresql`: COPY in binary, straight to Arrow, and
bulk ingest back); other SQLAlchemy databases (MariaDB/MySQL, SQLite) are read in batches of rows
turned into Arrow, and written with batched parameterized INSERTs. Upserts go through a staging
table and the database's own statement: ``MERGE`` (PostgreSQL 15+), ``ON DUPLICATE KEY UPDATE``
(MariaDB/MySQL), ``ON CONFLICT`` (SQLite).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from flowstage.connections import Connections
from flowstage.data.compile import ident, qualified
from flowstage.errors import RunError
from flowstage.redact import scrub

BATCH_ROWS = 50_000


def _libpq_value(value: str) -> str:
    """`value` quoted for a libpq keyword/value connection string (a quoted value may hold anything)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def libpq_conninfo(url: str) -> str:
    """A SQLAlchemy ``postgresql+driver://`` URL as libpq keyword/value parameters, for ADBC.

    The URL is decoded once (SQLAlchemy's parser) and each part is handed to libpq as a quoted
    parameter: a password is never percent-encoded again into a URI, where a space or a ``%`` it
    holds would be misread (and libpq would echo it in its error).
    """
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    params: dict[str, str] = {}
    for key, value in (("host", u.host), ("port", u.port), ("dbname", u.database), ("user", u.username)):
        if value is not None and value != "":
            params[key] = str(value)
    if u.password is not None:
        params["password"] = str(u.password)
    for key, given in u.query.items():
        params[key] = given[-1] if isinstance(given, tuple) else given
    return " ".join(f"{key}={_libpq_value(value)}" for key, value in params.items())


def _dialect(url: str) -> str:
    scheme = url.split("://", 1)[0]
    return scheme.split("+", 1)[0]


def read_arrow(
    connections: Connections,
    name: str,
    *,
    table: str | None = None,
    query: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """The rows of `table` (or of `query`, with ``:name`` params bound) as a pyarrow Table."""
    import pyarrow as pa

    url = connections.url(name)
    dialect = _dialect(url)
    try:
        if dialect == "postgresql" and table is not None:
            import adbc_driver_postgresql.dbapi as adbc

            with adbc.connect(libpq_conninfo(url)) as conn, conn.cursor() as cur:
                cur.execute(f"SELECT * FROM {qualified(table)}")
                return _pg_numbers(cur.fetch_arrow_table())
        session = connections.session(name)
        try:
            sql = query if query is not None else f"SELECT * FROM {_quote(table or '', dialect)}"
            from sqlalchemy import text

            stmt = text(sql)
            used = {k: v for k, v in (params or {}).items() if k in stmt._bindparams}
            result = session.conn.execute(stmt, used)  # type: ignore[attr-defined]
            columns = list(result.keys())
            tables = []
            while True:
                rows = result.fetchmany(BATCH_ROWS)
                if not rows:
                    break
                tables.append(pa.Table.from_pylist([dict(zip(columns, r, strict=False)) for r in rows]))
            if not tables:
                return pa.table({c: pa.array([], type=pa.null()) for c in columns})
            # each batch guesses its own types (a wider decimal later, a column all null at first): widen to fit all
            return pa.concat_tables(tables, promote_options="permissive")
        finally:
            session.rollback()
            session.close()
    except RunError:
        raise
    except Exception as exc:
        raise RunError(scrub(f"reading {table or 'a query'} from {name!r}: {_first(exc)}", [url])) from None


def _pg_numbers(table: Any) -> Any:
    """ADBC hands NUMERIC over as text: DECIMAL(p, s) when the column declares them (else, or for NaN, DOUBLE)."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        meta = f.metadata or {}
        if meta.get(b"ADBC:postgresql:typname", meta.get(b"POSTGRESQL:type")) != b"numeric":
            continue
        storage_type = getattr(f.type, "storage_type", f.type)
        text = pa.chunked_array([getattr(c, "storage", c) for c in table.column(i).chunks], type=storage_type)
        typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1"))
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        try:
            if typmod < 0 or not 0 < precision <= 38:
                raise ValueError("no declared precision")
            number = text.cast(pa.decimal128(precision, scale))
        except (ValueError, pa.ArrowException):
            number = text.cast(pa.float64())
        table = table.set_column(i, pa.field(f.name, number.type, metadata=f.metadata), number)
    return table


def _quote(name: str, dialect: str) -> str:
    if dialect in ("mysql", "mariadb"):
        return ".".join("`" + p.replace("`", "``") + "`" for p in name.split("."))
    return qualified(name)


def _sql_type(arrow_type: Any, dialect: str, key: bool) -> str:
    import pyarrow as pa
    import pyarrow.types as t

    mysql = dialect in ("mysql", "mariadb")
    if t.is_boolean(arrow_type):
        return "BOOLEAN"
    if t.is_integer(arrow_type):
        return "BIGINT"
    if t.is_floating(arrow_type):
        return "DOUBLE" if mysql or dialect == "sqlite" else "DOUBLE PRECISION"
    if t.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision}, {arrow_type.scale})"
    if t.is_timestamp(arrow_type):
        return "DATETIME(6)" if mysql else "TIMESTAMP"
    if t.is_date(arrow_type):
        return "DATE"
    if arrow_type == pa.null():
        return "VARCHAR(255)" if mysql else "TEXT"
    if mysql:
        return "VARCHAR(255)" if key else "TEXT"
    return "TEXT"


def write_arrow(
    connections: Connections,
    name: str,
    table: str,
    reader: Any,
    *,
    mode: str,
    keys: Sequence[str] = (),
) -> int:
    """Write the batches of `reader` into `table` of connection `name`; returns rows written."""
    url = connections.url(name)
    dialect = _dialect(url)
    try:
        if dialect == "postgresql":
            return _write_postgres(url, table, reader, mode, keys)
        return _write_generic(connections, name, dialect, table, reader, mode, keys)
    except RunError:
        raise
    except Exception as exc:
        raise RunError(scrub(f"writing {table} to {name!r}: {_first(exc)}", [url])) from None


def _split(table: str) -> tuple[str | None, str]:
    parts = table.split(".")
    return (parts[-2] if len(parts) > 1 else None), parts[-1]


def _write_postgres(url: str, table: str, reader: Any, mode: str, keys: Sequence[str]) -> int:
    import adbc_driver_postgresql.dbapi as adbc

    schema, name = _split(table)
    with adbc.connect(libpq_conninfo(url)) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = $1 AND table_schema = COALESCE($2, current_schema())",
                parameters=(name, schema),
            )
            exists = bool(cur.fetchone()[0])
            if mode == "overwrite" or not exists:
                written = cur.adbc_ingest(name, reader, mode="replace" if exists else "create", db_schema_name=schema)
                if mode == "upsert":
                    cols = ", ".join(ident(k) for k in keys)
                    cur.execute(f"ALTER TABLE {qualified(table)} ADD PRIMARY KEY ({cols})")
            elif mode == "append":
                written = cur.adbc_ingest(name, reader, mode="append", db_schema_name=schema)
            else:
                stage = f"flowstage_stage_{secrets.token_hex(4)}"
                written = cur.adbc_ingest(stage, reader, mode="create", temporary=True)
                cur.execute(
                    f"SELECT column_name FROM information_schema.columns WHERE table_name = '{stage}' ORDER BY ordinal_position"
                )
                columns = [r[0] for r in cur.fetchall()]
                on = " AND ".join(f"t.{ident(k)} = s.{ident(k)}" for k in keys)
                sets = ", ".join(f"{ident(c)} = s.{ident(c)}" for c in columns if c not in keys)
                names = ", ".join(ident(c) for c in columns)
                values = ", ".join(f"s.{ident(c)}" for c in columns)
                matched = f"WHEN MATCHED THEN UPDATE SET {sets} " if sets else ""
                cur.execute(
                    f"MERGE INTO {qualified(table)} AS t USING {ident(stage)} AS s ON ({on}) "
                    f"{matched}WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
                )
                cur.execute(f"DROP TABLE {ident(stage)}")
        conn.commit()
    return int(written if written is not None and written >= 0 else 0)


def _batches(reader: Any) -> Iterator[Any]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


def _write_generic(
    connections: Connections, name: str, dialect: str, table: str, reader: Any, mode: str, keys: Sequence[str]
) -> int:
    from sqlalchemy import inspect, text

    session = connections.session(name)
    conn = session.conn  # type: ignore[attr-defined]
    schema = reader.schema
    columns = list(schema.names)

    def q(n: str) -> str:
        return _quote(n, dialect)

    target = q(table)
    written = 0
    try:
        insp = inspect(conn)
        sch, tname = _split(table)
        exists = insp.has_table(tname, schema=sch)
        final_target = target
        if mode == "overwrite" and exists:
            # MariaDB/MySQL commit DDL at once: build the new table beside the old one, swap at the end
            fresh = f"{tname}__flowstage_new"
            target = q(f"{sch}.{fresh}" if sch else fresh)
            conn.execute(text(f"DROP TABLE IF EXISTS {target}"))
            exists = False
        if mode == "upsert" and exists and not _has_unique_key(insp, tname, sch, keys):
            raise RunError(f"upsert into {table} needs a primary or unique key on ({', '.join(keys)}); the table has none")
        if not exists:
            defs = ", ".join(f"{q(f.name)} {_sql_type(f.type, dialect, f.name in keys)}" for f in schema)
            pk = f", PRIMARY KEY ({', '.join(q(k) for k in keys)})" if keys and mode == "upsert" else ""
            conn.execute(text(f"CREATE TABLE {target} ({defs}{pk})"))
        names = ", ".join(q(c) for c in columns)
        marks = ", ".join(f":c{i}" for i in range(len(columns)))
        if mode == "upsert" and exists:
            stage = q(f"flowstage_stage_{secrets.token_hex(4)}")
            defs = ", ".join(f"{q(f.name)} {_sql_type(f.type, dialect, f.name in keys)}" for f in schema)
            conn.execute(text(f"CREATE TEMPORARY TABLE {stage} ({defs})"))
            insert = text(f"INSERT INTO {stage} ({names}) VALUES ({marks})")
            for batch in _batches(reader):
                rows = batch.to_pylist()
                conn.execute(insert, [{f"c{i}": r[c] for i, c in enumerate(columns)} for r in rows])
                written += len(rows)
            others = [c for c in columns if c not in keys]
            if dialect in ("mysql", "mariadb"):
                updates = ", ".join(f"{q(c)} = VALUES({q(c)})" for c in others) or f"{q(keys[0])} = {q(keys[0])}"
                conn.execute(
                    text(f"INSERT INTO {target} ({names}) SELECT {names} FROM {stage} ON DUPLICATE KEY UPDATE {updates}")
                )
            else:
                updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in others)
                action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
                conn.execute(
                    text(
                        f"INSERT INTO {target} ({names}) SELECT {names} FROM {stage} WHERE true ON CONFLICT ({', '.join(q(k) for k in keys)}) {action}"
                    )
                )
            conn.execute(text(f"DROP TABLE {stage}"))
        else:
            insert = text(f"INSERT INTO {target} ({names}) VALUES ({marks})")
            for batch in _batches(reader):
                rows = batch.to_pylist()
                if rows:
                    conn.execute(insert, [{f"c{i}": r[c] for i, c in enumerate(columns)} for r in rows])
                    written += len(rows)
        if target != final_target:
            if dialect in ("mysql", "mariadb"):
                old = q(f"{sch}.{tname}__flowstage_old" if sch else f"{tname}__flowstage_old")
                conn.execute(text(f"DROP TABLE IF EXISTS {old}"))
                conn.execute(text(f"RENAME TABLE {final_target} TO {old}, {target} TO {final_target}"))
                conn.execute(text(f"DROP TABLE {old}"))
            else:
                conn.execute(text(f"DROP TABLE {final_target}"))
                conn.execute(text(f"ALTER TABLE {target} RENAME TO {q(tname)}"))
        session.commit()
    except BaseException:
        session.rollback()
        if target != final_target:
            with contextlib.suppress(Exception):
                conn.execute(text(f"DROP TABLE IF EXISTS {target}"))
                conn.commit()
        raise
    finally:
        with contextlib.suppress(Exception):
            session.close()
    return written


def _has_unique_key(insp: Any, table: str, schema: str | None, keys: Sequence[str]) -> bool:
    """Whether `keys` are covered by the table's primary key or one of its unique keys."""
    wanted = set(keys)
    candidates = [set(insp.get_pk_constraint(table, schema=schema).get("constrained_columns") or [])]
    candidates += [set(u.get("column_names") or []) for u in insp.get_unique_constraints(table, schema=schema)]
    candidates += [set(i.get("column_names") or []) for i in insp.get_indexes(table, schema=schema) if i.get("unique")]
    return any(c and c <= wanted for c in candidates)


def _first(exc: BaseException) -> str:
    raw = str(getattr(exc, "orig", None) or exc).strip()
    return raw.splitlines()[0] if raw else type(exc).__name__
