"""Named connections: opened on first use in a run, pooled for the run, closed at its end.

URLs are SQLAlchemy URLs (``sqlite:///``, ``postgresql+psycopg://``, ``mysql+pymysql://``) or
``duckdb:///path`` (the default `warehouse`). A `Session` is one connection for one task attempt:
one transaction, ``:name`` parameters always bound by the driver, and `cancel()` that stops the
running statement on the server (PostgreSQL cancel request, MySQL ``KILL QUERY``, DuckDB and
SQLite interrupt). Every error leaves here with the URL and password masked.

DuckDB lets one process at a time open a database file. So that concurrent runs take turns
instead of failing on DuckDB's own lock, a DuckDB file is held under a lock of ours
(``fcntl.flock`` on ``<file>.lock``) only while a session, a cursor (a dataflow) or a flush uses
it: the database is opened after the lock is taken and closed before it is released. Inside one
process the holding is shared and counted, with one database instance and a cursor per user, so
parallel tasks of a run (and runs hosted side by side) are not serialised by it. A waiter polls
the lock, tells what it waits for (`LockWait.note`) and gives up when killed or at its deadline.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import decimal
import itertools
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from msgspec import Struct, field

from flowstage.errors import ConnectionError, DefinitionError, RunError
from flowstage.redact import mask_url, scrub

#: the extra of flowstage that installs each database driver
_DRIVER_EXTRAS = {
    "psycopg": "postgres",
    "psycopg2": "postgres",
    "adbc_driver_postgresql": "postgres",
    "pymysql": "mysql",
    "MySQLdb": "mysql",
}


def driver_hint(module: str | None) -> str:
    """How to install the driver `module`: ``; pip install 'flowstage[postgres]'``."""
    extra = _DRIVER_EXTRAS.get((module or "").split(".")[0])
    return f"; install it with pip install 'flowstage[{extra}]'" if extra else ""


class QueryError(RunError):
    """A statement failed on the database (the message is masked)."""


class LockTimeout(RunError):
    """The attempt's deadline passed while it waited for a DuckDB file another process held."""


class StatementResult(Struct):
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] | None = None  # None when the statement returns no rows
    rowcount: int = -1
    truncated: bool = False


def to_json_value(value: Any) -> Any:
    """A database value as plain JSON data: decimals become numbers, times ISO text."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2**63 else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def split_statements(text: str) -> list[str]:
    """The statements of a SQL text (a file may hold many), comments removed.

    Comments go because a ``:name`` inside one would otherwise be taken for a parameter.
    """
    if ";" not in text and "--" not in text and "/*" not in text:
        return [text.strip()] if text.strip() else []
    import sqlparse

    out = []
    for stmt in sqlparse.split(text):
        body = sqlparse.format(stmt, strip_comments=True).strip()
        body = body[:-1].rstrip() if body.endswith(";") else body
        if body:
            out.append(body)
    return out


def to_dollar_params(sql: str) -> str:
    """``:name`` -> ``$name`` outside quotes and comments, leaving ``::type`` casts alone (DuckDB)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
            continue
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
            continue
        if sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j])
            i = j
            continue
        if ch == ":":
            if i + 1 < n and sql[i + 1] == ":":
                out.append("::")
                i += 2
                continue
            if (i == 0 or sql[i - 1] != ":") and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
                j = i + 1
                while j < n and (sql[j].isalnum() or sql[j] == "_"):
                    j += 1
                out.append("$" + sql[i + 1 : j])
                i = j
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def param_names(sql: str) -> set[str]:
    """The ``:name`` parameters a statement uses."""
    import re

    return set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", to_dollar_params(sql)))


class Session(abc.ABC):
    """One connection for one task attempt."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    @abc.abstractmethod
    def execute(self, sql: str, params: Mapping[str, Any], *, max_rows: int | None = None) -> StatementResult: ...

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the running statement on the server (called from another thread)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def error(self, exc: BaseException) -> QueryError:
        raw = str(getattr(exc, "orig", None) or exc).strip()
        first = raw.splitlines()[0] if raw else type(exc).__name__
        return QueryError(f"connection {self.name!r}: {scrub(first, [self.url])}")


def _fetch(cursor_rows: Any, keep: int | None) -> tuple[list[tuple[Any, ...]], bool, int]:
    """(the first `keep` rows, whether more came, how many came): the rest is counted, not kept."""
    if keep is None:
        rows = [tuple(r) for r in cursor_rows.fetchall()]
        return rows, False, len(rows)
    rows = [tuple(r) for r in cursor_rows.fetchmany(keep)] if keep else []
    total = len(rows)
    while True:
        chunk = cursor_rows.fetchmany(10_000)
        if not chunk:
            break
        total += len(chunk)
    return rows, total > len(rows), total


def _statement_type(text: str) -> str:
    import duckdb

    try:
        return str(duckdb.extract_statements(text)[0].type.name)
    except Exception:
        return "SELECT"


# ---------------------------------------------------------------------------- DuckDB file lock

#: how often a waiter looks at the lock again (seconds, with jitter so waiters do not move in step)
LOCK_POLL_SECONDS = (0.02, 0.05)
#: a waiter gives up this long before its deadline, so that the attempt's record tells what it
#: waited for (the runner would otherwise end it at the deadline with a bare "timed out")
LOCK_DEADLINE_MARGIN_SECONDS = 0.25


def _no_note(_reason: str | None) -> None:
    return None


def _not_killed() -> bool:
    return False


class LockWait(Struct, frozen=True):
    """How an attempt waits for a DuckDB file another process holds: what it tells, when it stops."""

    #: when the attempt must have ended (seconds since the epoch); None waits without a bound
    deadline: float | None = None
    #: the attempt's timeout in seconds, for the message when the deadline passes
    timeout: float | None = None
    #: whether the attempt was killed (the wait then ends at once)
    killed: Callable[[], bool] = _not_killed
    #: told what the attempt waits for, and None once it has the lock
    note: Callable[[str | None], None] = _no_note


def _lock_name(name: str) -> str:
    return "the DuckDB warehouse lock" if name == "warehouse" else f"the lock of DuckDB connection {name!r}"


class _Waiting:
    """One acquisition's wait: noted on its first turn, un-noted at the end, stopped by kill or deadline."""

    def __init__(self, name: str, wait: LockWait) -> None:
        self.name = name
        self.wait = wait
        self.started = time.time()
        self.noted = False

    def turn(self, *, contended: bool = True) -> float:
        """Called each time the lock is found taken: how long to sleep before looking again.

        `contended` is False while only another thread of this process is opening the file (and
        has not found it held elsewhere): a wait of a few milliseconds that is not worth telling.
        """
        wait = self.wait
        if contended and not self.noted:
            self.noted = True
            held = "the warehouse lock" if self.name == "warehouse" else f"the lock of DuckDB connection {self.name!r}"
            wait.note(f"waits for {held} (held by another process)")
        if wait.killed():
            raise RunError(f"cancelled while waiting for {_lock_name(self.name)}")
        pause = random.uniform(*LOCK_POLL_SECONDS)
        if wait.deadline is not None:
            left = wait.deadline - LOCK_DEADLINE_MARGIN_SECONDS - time.time()
            if left <= 0:
                timeout = wait.timeout if wait.timeout is not None else wait.deadline - self.started
                raise LockTimeout(f"timed out after {timeout:g}s waiting for {_lock_name(self.name)}")
            pause = min(pause, left)
        return pause

    def done(self) -> None:
        if self.noted:
            self.noted = False
            self.wait.note(None)


class _DuckFile:
    """A DuckDB database file as this process uses it: our lock on it, its open database, its holders."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.cond = threading.Condition()
        self.holders = 0
        self.opening = False  # a thread of this process is taking the lock: the others wait for it
        self.contended = False  # ... and found it held by another process
        self.fd: int | None = None
        self.conn: Any = None

    def acquire(self, name: str, url: str, wait: LockWait) -> Any:
        """A new cursor on the database, the file held (by this process) until `release`."""
        waiting = _Waiting(name, wait)
        try:
            with self.cond:
                while self.holders == 0 and self.opening:
                    self.cond.wait(waiting.turn(contended=self.contended))
                if self.holders > 0:
                    cursor = self.conn.cursor()
                    self.holders += 1
                    return cursor
                self.opening = True
            try:
                fd, conn = self._open(name, url, waiting)
            except BaseException:
                with self.cond:
                    self.opening = self.contended = False
                    self.cond.notify_all()
                raise
            with self.cond:
                self.fd, self.conn, self.opening, self.contended = fd, conn, False, False
                try:
                    cursor = conn.cursor()
                except BaseException:
                    self._close()
                    self.cond.notify_all()
                    raise
                self.holders = 1
                self.cond.notify_all()
                return cursor
        finally:
            waiting.done()

    def _open(self, name: str, url: str, waiting: _Waiting) -> tuple[int, Any]:
        import fcntl

        import duckdb

        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    self.contended = True
                    time.sleep(waiting.turn())
            while True:
                try:
                    return fd, duckdb.connect(self.path)
                except duckdb.IOException as exc:
                    # a program that does not take our lock (the DuckDB CLI, an older flowstage) has it open
                    if "lock" not in str(exc).lower():
                        raise _cannot_open(name, url, exc) from None
                    self.contended = True
                    time.sleep(waiting.turn())
                except Exception as exc:
                    raise _cannot_open(name, url, exc) from None
        except BaseException:
            os.close(fd)  # closing the descriptor releases the lock
            raise

    def release(self) -> None:
        with self.cond:
            self.holders -= 1
            if self.holders == 0:
                self._close()

    def _close(self) -> None:
        """Close the database, then release the lock: the next process can open the file."""
        conn, fd = self.conn, self.fd
        self.conn = self.fd = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


_FILES: dict[str, _DuckFile] = {}
_FILES_LOCK = threading.Lock()


def _duck_file(path: str) -> _DuckFile:
    key = os.path.realpath(path)
    with _FILES_LOCK:
        found = _FILES.get(key)
        if found is None:
            found = _FILES[key] = _DuckFile(key)
        return found


def _cannot_open(name: str, url: str, exc: BaseException) -> ConnectionError:
    return ConnectionError(f"connection {name!r} ({mask_url(url)}) cannot be opened: {scrub(str(exc), [url])}")


def _duck_path(url: str) -> str:
    path = url.split(":///", 1)[1] if ":///" in url else ":memory:"
    return path or ":memory:"


class DuckCursor:
    """A cursor on a DuckDB database that holds the database file until it is closed."""

    def __init__(self, cursor: Any, release: Callable[[], None]) -> None:
        self._cursor = cursor
        self._release = release

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._cursor, attr)

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self._cursor.close()
        finally:
            self._release()

    def __enter__(self) -> DuckCursor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class DuckSession(Session):
    def __init__(self, name: str, url: str, conn: Any, release: Callable[[], None] = lambda: None) -> None:
        super().__init__(name, url)
        self.conn = conn
        self._release: Callable[[], None] | None = release
        try:
            self.conn.execute("BEGIN TRANSACTION")
        except Exception as exc:
            self.close()
            raise self.error(exc) from None

    def execute(self, sql: str, params: Mapping[str, Any], *, max_rows: int | None = None) -> StatementResult:
        text = to_dollar_params(sql)
        used = param_names(sql)
        missing = used - set(params)
        if missing:
            raise QueryError(f"connection {self.name!r}: no value for parameter :{sorted(missing)[0]} (set it in params:)")
        bound = {k: v for k, v in params.items() if k in used}
        try:
            cur = self.conn.execute(text, bound) if bound else self.conn.execute(text)
            if cur.description is None:
                return StatementResult(rowcount=-1)
            columns = [d[0] for d in cur.description]
            if columns == ["Count"] and _statement_type(text) != "SELECT":
                # INSERT, UPDATE, DELETE, CREATE ... AS, COPY answer with the rows they changed
                changed = cur.fetchall()
                return StatementResult(rowcount=int(changed[0][0]) if changed and changed[0][0] is not None else -1)
            rows, truncated, total = _fetch(cur, max_rows)
        except Exception as exc:
            raise self.error(exc) from None
        return StatementResult(columns, rows, total, truncated)

    def commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except Exception as exc:
            raise self.error(exc) from None

    def rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.execute("ROLLBACK")

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.interrupt()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        release, self._release = self._release, None
        if release is not None:
            release()


class AlchemySession(Session):
    def __init__(self, name: str, url: str, engine: Any, timeout: float | None) -> None:
        super().__init__(name, url)
        self.engine = engine
        self.dialect = engine.dialect.name
        try:
            self.conn = engine.connect()
            self.tx = self.conn.begin()
            self.dbapi = self.conn.connection.dbapi_connection
            self.backend_id: Any = None
            if self.dialect == "postgresql" and timeout:
                from sqlalchemy import text

                self.conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout * 1000) + 500}"))
            if self.dialect in ("mysql", "mariadb"):
                self.backend_id = self.dbapi.thread_id()
        except Exception as exc:
            raise ConnectionError(f"connection {name!r} ({mask_url(url)}) cannot be opened: {self._first(exc)}") from None

    def _first(self, exc: BaseException) -> str:
        raw = str(getattr(exc, "orig", None) or exc).strip()
        return scrub(raw.splitlines()[0] if raw else type(exc).__name__, [self.url])

    def execute(self, sql: str, params: Mapping[str, Any], *, max_rows: int | None = None) -> StatementResult:
        from sqlalchemy import text
        from sqlalchemy.exc import ArgumentError, InvalidRequestError, StatementError

        stmt = text(sql)
        used = set(stmt._bindparams)
        missing = used - set(params)
        if missing:
            raise QueryError(f"connection {self.name!r}: no value for parameter :{sorted(missing)[0]} (set it in params:)")
        bound = {k: v for k, v in params.items() if k in used}
        try:
            result = self.conn.execute(stmt, bound)
            if not result.returns_rows:
                return StatementResult(rowcount=result.rowcount)
            columns = list(result.keys())
            rows, truncated, total = _fetch(result, max_rows)
            result.close()
        except (ArgumentError, InvalidRequestError) as exc:
            raise QueryError(f"connection {self.name!r}: {exc}") from None
        except (StatementError, Exception) as exc:
            raise self.error(exc) from None
        return StatementResult(columns, rows, total, truncated)

    def commit(self) -> None:
        try:
            self.tx.commit()
        except Exception as exc:
            raise self.error(exc) from None

    def rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.tx.rollback()

    def cancel(self) -> None:
        try:
            if self.dialect == "postgresql":
                cancel = getattr(self.dbapi, "cancel_safe", None) or self.dbapi.cancel
                cancel()
            elif self.dialect in ("mysql", "mariadb") and self.backend_id is not None:
                from sqlalchemy import text

                with self.engine.connect() as other:
                    other.execute(text(f"KILL QUERY {int(self.backend_id)}"))
            elif self.dialect == "sqlite":
                self.dbapi.interrupt()
        except Exception:
            pass

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


#: how long a SQLite statement waits for another connection's write to end
SQLITE_BUSY_MS = 30_000


def _sqlite_transactions(engine: Any) -> None:
    """BEGIN IMMEDIATE at the start of every transaction, so DDL is rolled back too (pysqlite begins
    only before DML) and parallel tasks writing one file queue for its lock instead of failing:
    a deferred transaction that read first cannot wait for the write lock (SQLite answers "database
    is locked" at once, as waiting could deadlock); one that takes it at BEGIN waits its turn."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Connections:
    """The connections of one run: engines created on first use, disposed at the end.

    DuckDB files are held only while a session or a cursor is open (see the module's docstring);
    an in-memory DuckDB database lives as long as the run's connections.
    """

    def __init__(self, urls: Mapping[str, str], *, root: str | os.PathLike[str] | None = None) -> None:
        self.urls = dict(urls)
        #: the project root: relative file names in DuckDB queries are looked up there, whatever
        #: the working directory of the process hosting the run
        self.root = str(root) if root is not None else None
        self._lock = threading.Lock()
        self._engines: dict[str, Any] = {}
        self._duck: dict[str, Any] = {}  # in-memory DuckDB databases
        self._held: dict[int, Callable[[], None]] = {}  # releases of the DuckDB files held, by holding
        self._holdings = itertools.count()

    def url(self, name: str) -> str:
        try:
            return self.urls[name]
        except KeyError:
            known = ", ".join(sorted(self.urls)) or "none"
            raise DefinitionError(f"unknown connection {name!r} (known: {known})") from None

    def secrets(self) -> list[str]:
        return list(self.urls.values())

    @contextlib.contextmanager
    def transaction(self, name: str, *, timeout: float | None = None, wait: LockWait | None = None) -> Iterator[Session]:
        """A session whose work commits when the block ends well and rolls back otherwise."""
        session = self.session(name, timeout=timeout, wait=wait)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def session(self, name: str, *, timeout: float | None = None, wait: LockWait | None = None) -> Session:
        """One connection for one attempt; on a DuckDB file it holds the file until it is closed.

        Args:
            name: the connection's name.
            timeout: the attempt's timeout (a statement timeout on PostgreSQL).
            wait: how to wait for a DuckDB file another process holds (default: without a bound).
        """
        url = self.url(name)
        if url.startswith("duckdb:"):
            cursor, release = self._duck_cursor(name, url, wait or LockWait())
            self._search_root(cursor)
            return DuckSession(name, url, cursor, release)
        return AlchemySession(name, url, self._engine(name, url), timeout)

    def duck_cursor(self, name: str, *, wait: LockWait | None = None) -> DuckCursor:
        """A new cursor on the DuckDB database of connection `name` (autocommit).

        The database file stays held by this process until the cursor is closed: close it.
        """
        url = self.url(name)
        if not url.startswith("duckdb:"):
            raise DefinitionError(f"connection {name!r} is not a DuckDB database")
        cursor, release = self._duck_cursor(name, url, wait or LockWait())
        self._search_root(cursor)
        return DuckCursor(cursor, release)

    def _search_root(self, cursor: Any) -> None:
        if self.root is not None:
            quoted = self.root.replace("'", "''")
            cursor.execute(f"SET SESSION file_search_path = '{quoted}'")

    def _duck_cursor(self, name: str, url: str, wait: LockWait) -> tuple[Any, Callable[[], None]]:
        path = _duck_path(url)
        if path == ":memory:":
            with self._lock:
                conn = self._duck.get(name)
                if conn is None:
                    import duckdb

                    conn = self._duck[name] = duckdb.connect(":memory:")
                return conn.cursor(), lambda: None
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        file = _duck_file(path)
        cursor = file.acquire(name, url, wait)
        key = next(self._holdings)

        def release() -> None:
            with self._lock:
                held = self._held.pop(key, None)
            if held is not None:
                file.release()

        with self._lock:
            self._held[key] = release
        return cursor, release

    def _engine(self, name: str, url: str) -> Any:
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                import sqlalchemy as sa

                try:
                    engine = sa.create_engine(url, pool_pre_ping=True)
                except ModuleNotFoundError as exc:
                    raise ConnectionError(
                        f"connection {name!r}: driver {exc.name} not installed{driver_hint(exc.name)}"
                    ) from None
                except Exception as exc:
                    raise ConnectionError(f"connection {name!r}: invalid URL {mask_url(url)}: {scrub(str(exc), [url])}") from None
                if engine.dialect.name == "sqlite":
                    _sqlite_transactions(engine)
                self._engines[name] = engine
            return engine

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                with contextlib.suppress(Exception):
                    engine.dispose()
            for conn in self._duck.values():
                with contextlib.suppress(Exception):
                    conn.close()
            self._engines.clear()
            self._duck.clear()
            # a session or cursor left open must not keep a DuckDB file from other processes
            held = list(self._held.values())
        for release in held:
            release()


def run_statements(
    session: Session,
    statements: Sequence[str],
    params: Mapping[str, Any],
    *,
    max_rows: int | None = None,
) -> tuple[StatementResult | None, int]:
    """Run `statements` in order; returns (the last result with rows, rows written)."""
    last: StatementResult | None = None
    written = 0
    for stmt in statements:
        result = session.execute(stmt, params, max_rows=max_rows)
        if result.rows is not None:
            last = result
        elif result.rowcount > 0:
            written += result.rowcount
    return last, written
