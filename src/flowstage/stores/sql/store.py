"""The SQL run store: SQLite (WAL, busy timeout, BEGIN IMMEDIATE) or PostgreSQL.

One implementation, portable SQL with ``:name`` parameters, on two drivers:
- SQLite goes through the standard library's `sqlite3` (the embedded default must start fast:
  importing SQLAlchemy costs more than a whole one-task run);
- every other URL goes through SQLAlchemy (``postgresql+psycopg://...``).
The schema belongs to Alembic (`migrations/`); a store checks the schema revision on open and
migrates, under a lock, only when it is behind.

Every batch from the runner is one transaction. On SQLite, write transactions start with
``BEGIN IMMEDIATE`` so that twenty processes sharing one file queue on the busy timeout instead
of failing with "database is locked" when a reader upgrades to a writer.

The event log is read by cursor (`events_after`): an event must never become visible with an id
lower than one a reader already saw. SQLite's single writer gives that for free; on PostgreSQL
ids come from a sequence and concurrent transactions may commit out of order, so every
transaction that inserts events takes one transaction-level advisory lock just before it does,
as its last step, which orders the commits of event writers by id. The same transaction sends
``pg_notify('flowstage_events', run_id)``, delivered on commit, and `wait_events` listens for it
on one dedicated connection per store (`_PgListener`); elsewhere a waiter polls ``max(id)``
every 25 ms. Writes through the same store object wake its waiters at once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flowstage.engine import collector, projection
from flowstage.engine.ports import Batch, Event, LogLine, TaskRun
from flowstage.errors import StoreError, UsageError
from flowstage.model.statuses import TaskStatus
from flowstage.redact import mask_strings, mask_url, scrub
from flowstage.stores.base import NewRun, RunHead, StoredLog, StoredRun

if TYPE_CHECKING:
    from flowstage.stores.alerts import AlertStore
    from flowstage.stores.backfills import BackfillStore
    from flowstage.stores.catalog import CatalogStore
    from flowstage.stores.deployments import DeploymentStore
    from flowstage.stores.tokens import TokenStore

HEAD_REVISION = "0006"
_BUSY_TIMEOUT_MS = 120_000

EVENTS_CHANNEL = "flowstage_events"  # the LISTEN/NOTIFY channel; the payload is the run id
_EVENTS_LOCK = 7150452  # the advisory lock that orders event writers on PostgreSQL (7150451 guards migrations)
_POLL_SECONDS = 0.025  # how often a waiter without notifications looks for new events
_RECHECK_SECONDS = 1.0  # a listening waiter looks anyway this often, in case a writer sent no notification

log = logging.getLogger(__name__)

Row = Mapping[str, Any]


def _encoder() -> Callable[[Any], str]:
    """One encoder for every write (`json.dumps` with options builds a new one per call).

    The C encoder is called directly: `JSONEncoder.encode` builds one anew on every call, and a
    run writes several values per task. Without the C module, the plain encoder does the same.
    """
    plain = json.JSONEncoder(default=str, separators=(",", ":")).encode
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:
        return plain
    try:
        fast = make(None, str, encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
        sample = {"a": [1.5, None, True, "\u00e9\x00", {"b": 2**70}], "c": float("inf")}
        if "".join(fast(sample, 0)) != plain(sample):
            return plain
    except TypeError:  # another signature
        return plain

    def encode(value: Any) -> str:
        return "".join(fast(value, 0))

    return encode


_ENCODE = _encoder()
_DECODE = json.JSONDecoder().decode


def _dumps(value: Any) -> str:
    # most task rows carry empty metrics, saved values and variables: no encoder for those
    if not value and type(value) in (dict, list):
        return "{}" if type(value) is dict else "[]"
    return _ENCODE(value)


def _dumps_masked(value: Any) -> str:
    """`_dumps` of variables with every password written in a URL masked (``user:***@``): a URL given
    with ``--var`` or saved by a task is used by the run as it is, never stored so."""
    text = _dumps(value)
    if "://" in text or "=" in text:
        masked = mask_strings(value)
        if masked != value:
            return _dumps(masked)
    return text


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return _DECODE(text)


def _text(value: str | None) -> str | None:
    """Free text for a TEXT column: PostgreSQL refuses NUL, which a task's output or error may carry."""
    return value.replace("\x00", "\ufffd") if value else value


_PLACEHOLDER = re.compile(r"(?<!:):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=32)
def _qmark(sql: str) -> str:
    """`sql` with its ``:name`` placeholders as ``?``, for rows given as tuples."""
    return _PLACEHOLDER.sub("?", sql)


@functools.lru_cache(maxsize=32)
def _placeholders(sql: str) -> tuple[str, ...]:
    return tuple(_PLACEHOLDER.findall(sql))


class _Tx(Protocol):
    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int: ...
    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None: ...
    def executemany_values(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """`executemany` with each row's values in the order of the placeholders of `sql`."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...
    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> Iterator[Row]:
        """The rows of a query as they come (a large answer is never all in memory at once)."""
        ...


class _Driver(Protocol):
    def write(self, *, blind: bool = False) -> contextlib.AbstractContextManager[_Tx]:
        """A write transaction; `blind`: its statements' answers are never read, so a driver may
        send them all before waiting for any (psycopg's pipeline mode: one round trip, not one each)."""
        ...

    def read(self) -> contextlib.AbstractContextManager[_Tx]: ...
    def read_one(self) -> contextlib.AbstractContextManager[_Tx]: ...
    def close(self) -> None: ...


# --------------------------------------------------------------------------- SQLite
class _SqliteTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        return int(self.conn.execute(sql, params or {}).rowcount)

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None:
        self.conn.executemany(sql, params)

    def executemany_values(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # tuples bind faster than mappings, and no mapping is built per row
        self.conn.executemany(_qmark(sql), rows)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return list(self.conn.execute(sql, params or {}).fetchall())

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> Iterator[Row]:
        cursor = self.conn.execute(sql, params or {})
        while chunk := cursor.fetchmany(1000):
            yield from chunk


class _SqliteDriver:
    """stdlib sqlite3, one connection per thread, WAL, explicit BEGIN IMMEDIATE for writes.

    Each connection has a lock its thread holds while using it, and `close` takes it before
    closing: a connection closed under a statement running in another thread would crash the
    process, and a thread that finds its connection closed gets an error instead.
    """

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        self.path = path
        #: the store's folder cannot be written (a read-only mount, a copy shared read-only): reads
        #: work, a write fails as a write to a read-only database
        self.read_only = read_only
        #: the files a write goes to, checked before each write transaction (`_check_writable`)
        self._files = () if path == ":memory:" else (path, path + "-wal", path + "-shm")
        if path != ":memory:" and not read_only:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[tuple[Any, threading.RLock]] = []
        self._lock = threading.Lock()
        self._pinned: set[int] = set()  # the connections `_pin` keeps from ever being closed
        # the connections are closed when the driver is freed, or at exit if it never is (the CLI
        # ends its process without freeing every object: see `flowstage.exiting`). Closing the last
        # one checkpoints the WAL into the database and removes the -wal and -shm files.
        weakref.finalize(self, _close_connections, self._files, read_only, self._all, self._lock, self._pinned, 1.0)

    def _conn(self) -> tuple[Any, threading.RLock]:
        found = getattr(self._local, "conn", None)
        if found is None:
            import sqlite3

            if self.read_only:
                conn = _read_only_connection(self.path)
                conn.row_factory = sqlite3.Row
                found = (conn, threading.RLock())
                self._local.conn = found
                with self._lock:
                    self._all.append(found)
                return found
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode=WAL")  # may find the database locked by a migration
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except BaseException:
                conn.close()  # never registered: nothing else would close it
                raise
            found = (conn, threading.RLock())  # re-entrant: a read inside a write of the same thread
            self._local.conn = found
            with self._lock:
                self._all.append(found)
        return found

    @contextlib.contextmanager
    def write(self, *, blind: bool = False) -> Iterator[_Tx]:
        if self.read_only:
            import sqlite3

            raise sqlite3.OperationalError("read-only: its folder cannot be written, so runs can be read but not started")
        self._check_writable()
        conn, lock = self._conn()
        with lock:
            try:
                # inside the try: a signal raised while BEGIN waits for the lock must not leave it open
                conn.execute("BEGIN IMMEDIATE")
                yield _SqliteTx(conn)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _check_writable(self) -> None:
        """Refuse a write, as a `StoreError`, when the database or its WAL or shared-memory index can
        no longer be written (made immutable, the file system remounted read-only, permissions taken).

        SQLite keeps the ``-shm`` index memory-mapped: its next write to a file that became read-only
        is a SIGBUS that kills the process without a word. A few `os.access` calls per transaction
        turn that into an error the runner stops on cleanly, leaving the run interrupted.
        """
        access, writable = os.access, os.W_OK
        for name in self._files:
            if not access(name, writable):
                break
        else:
            return
        refused = self._refused()
        if not refused:
            return
        self._pin()
        names = refused[0] if len(refused) == 1 else ", ".join(refused[:-1]) + " and " + refused[-1]
        raise StoreError(
            f"run store {self.path} became read-only ({names} cannot be written); "
            "a run in progress is left interrupted and can be resumed when the store is writable again"
        )

    def _refused(self) -> list[str]:
        return _refused_files(self._files)

    def _pin(self) -> None:
        _pin_connections(self._all, self._lock, self._pinned)

    @contextlib.contextmanager
    def read(self) -> Iterator[_Tx]:
        conn, lock = self._conn()
        with lock:
            try:
                conn.execute("BEGIN")
                yield _SqliteTx(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    @contextlib.contextmanager
    def read_one(self) -> Iterator[_Tx]:
        # one statement is a transaction of its own (autocommit): no BEGIN and COMMIT around it
        conn, lock = self._conn()
        with lock:
            yield _SqliteTx(conn)

    def close(self) -> None:
        _close_connections(self._files, self.read_only, self._all, self._lock, self._pinned)
        self._local = threading.local()


def _refused_files(files: Sequence[str]) -> list[str]:
    """The names of a store's `files` that exist and cannot be written (one SQLite has not made
    yet is not refused: SQLite makes it, or says why it cannot)."""
    return [os.path.basename(f) for f in files if not os.access(f, os.W_OK) and os.path.lexists(f)]


def _pin_connections(connections: list[tuple[Any, threading.RLock]], guard: threading.Lock, pinned: set[int]) -> None:
    """Make sure no connection open now is ever closed, not even when the process exits.

    Closing the last connection to a WAL database checkpoints, which writes the memory-mapped
    index: a fault once the files became read-only. Left open, the connections end with the
    process as a killed runner's do; their locks go with it, and the next writer recovers the
    WAL. Each connection is pinned once and stays in use: once the store is writable again, it
    writes as before.
    """
    import ctypes

    with guard:
        for conn, _lock in connections:
            if id(conn) not in pinned:
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))  # a reference nothing drops
                pinned.add(id(conn))


def _close_connections(
    files: Sequence[str],
    read_only: bool,
    connections: list[tuple[Any, threading.RLock]],
    guard: threading.Lock,
    pinned: set[int],
    wait: float = -1,
) -> None:
    """Close every thread's connection, each once its thread is done with it (`wait`: at most that
    many seconds per connection; one still in use then is left open, as a killed runner's is)."""
    # closing would checkpoint into files that cannot be written: left open instead (see `_pin_connections`)
    left_open = not read_only and bool(files) and bool(_refused_files(files))
    if left_open:
        _pin_connections(connections, guard, pinned)
    with guard:
        for conn, lock in connections if not left_open else ():
            if lock.acquire(timeout=wait):
                try:
                    with contextlib.suppress(Exception):
                        conn.close()
                finally:
                    lock.release()
        connections.clear()


# --------------------------------------------------------------------------- SQLAlchemy
class _AlchemyTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        from sqlalchemy import text

        return int(self.conn.execute(text(sql), dict(params or {})).rowcount)

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None:
        from sqlalchemy import text

        self.conn.execute(text(sql), [dict(p) for p in params])

    def executemany_values(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        names = _placeholders(sql)
        self.executemany(sql, [dict(zip(names, row, strict=True)) for row in rows])

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        from sqlalchemy import text

        return list(self.conn.execute(text(sql), dict(params or {})).mappings().all())

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> Iterator[Row]:
        from sqlalchemy import text

        yield from self.conn.execute(text(sql), dict(params or {})).mappings()


#: connections kept per engine (the API server's requests run on up to 40 threads)
_POOL_SIZE = 40
_POOL_OVERFLOW = 20


class _RetryingTx(_AlchemyTx):
    """A single-statement read that is asked again, once, on a fresh connection when the pooled one
    turned out to be dead (the server restarted, a proxy dropped it): a read is safe to repeat."""

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        from sqlalchemy import exc

        try:
            return super().query(sql, params)
        except exc.DBAPIError as error:
            if not error.connection_invalidated:
                raise
        self.conn.rollback()  # the invalidated connection is replaced on its next use
        return super().query(sql, params)


#: a pooled connection unused for this long is checked before a write is begun on it
_PING_AFTER_IDLE_SECONDS = 2.0


def _ping_when_idle(engine: Any) -> None:
    """Check a pooled connection at checkout only when it sat idle: a server restart or a dropped
    connection is found before a write begins on it, and a runner writing many times a second pays
    no extra round trip per write (SQLAlchemy's `pool_pre_ping` pings at every checkout)."""
    import sqlalchemy as sa

    @sa.event.listens_for(engine, "checkin")
    def _used(dbapi_conn: Any, record: Any) -> None:
        record.info["used_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        used = record.info.get("used_at")
        if used is None or time.monotonic() - used < _PING_AFTER_IDLE_SECONDS:
            return  # a new connection, or one in steady use
        try:
            with contextlib.closing(dbapi_conn.cursor()) as cursor:
                cursor.execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as exc:
            # the pool drops this connection and checks out another (SQLAlchemy's disconnect handling)
            raise sa.exc.DisconnectionError(str(exc)) from exc


class _AlchemyDriver:
    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        # connections are opened as threads need them and kept up to the pool's size: a connection
        # past it (an overflow) is closed after its use, and opening one costs more than many reads
        self.engine = sa.create_engine(url, pool_size=_POOL_SIZE, max_overflow=_POOL_OVERFLOW)
        _ping_when_idle(self.engine)
        # single-statement reads: autocommit, no ping (a connection found dead is replaced and the
        # statement asked once more, see `read_one`), so a read costs one round trip, not four
        self._autocommit = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=_POOL_SIZE, max_overflow=_POOL_OVERFLOW)

    @contextlib.contextmanager
    def write(self, *, blind: bool = False) -> Iterator[_Tx]:
        if not blind:
            with self.engine.begin() as conn:
                yield _AlchemyTx(conn)
            return
        with self.engine.connect() as conn:
            pipeline = getattr(conn.connection.driver_connection, "pipeline", None)
            with pipeline() if pipeline is not None else contextlib.nullcontext(), conn.begin():
                yield _AlchemyTx(conn)

    @contextlib.contextmanager
    def read(self) -> Iterator[_Tx]:
        with self.engine.connect() as conn:
            yield _AlchemyTx(conn)
            conn.rollback()

    @contextlib.contextmanager
    def read_one(self) -> Iterator[_Tx]:
        with self._autocommit.connect() as conn:
            yield _RetryingTx(conn)

    def close(self) -> None:
        self.engine.dispose()
        self._autocommit.dispose()


# --------------------------------------------------------------------------- waiting for events
class _Waiter:
    """One thread in `wait_events`: woken when an event of its run (or of any run) may have come."""

    __slots__ = ("run_id", "woken")

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.woken = False


class _Wakeups:
    """The waiters of one store, and the condition they sleep on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.waiters: set[_Waiter] = set()
        self.closes = 0  # how many times the store was closed: a wait begun before a close ends

    def close(self) -> None:
        with self.cond:
            self.closes += 1
        self.wake(None)

    def wake(self, run_ids: Collection[str] | None) -> None:
        """Wake the waiters on these runs (None: every waiter) and those that wait on every run."""
        with self.cond:
            woke = False
            for w in self.waiters:
                if run_ids is None or w.run_id is None or w.run_id in run_ids:
                    w.woken = woke = True
            if woke:
                self.cond.notify_all()


class _PgListener:
    """One autocommit psycopg connection that LISTENs on `EVENTS_CHANNEL`, pumped by a daemon thread.

    Each notification wakes the waiters of its run. The connection opens on the first wait
    (`ensure`) and again after it was lost (every waiter is woken then, to look at the table);
    `close` stops the thread through a pipe, so it never waits for a timeout.
    """

    def __init__(self, connect: Callable[[], Any], wakeups: _Wakeups) -> None:
        self._connect = connect
        self._wakeups = wakeups
        self._lock = threading.Lock()
        self._conn: Any = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stop_read, self._stop_write = os.pipe()

    def ensure(self) -> bool:
        """Listen, if not yet or no longer: once this returns, no notification is missed. False once closed."""
        with self._lock:
            if self._closed:
                return False
            if self._conn is not None:
                return True
            conn = self._connect()
            try:
                conn.execute(f"LISTEN {EVENTS_CHANNEL}")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._thread = threading.Thread(target=self._pump, args=(conn,), name="flowstage-events-listener", daemon=True)
            self._thread.start()
            return True

    def _pump(self, conn: Any) -> None:
        import select

        try:
            fd = conn.fileno()
            while True:
                ready, _, _ = select.select([fd, self._stop_read], [], [])
                if self._stop_read in ready:
                    return
                runs = {n.payload for n in conn.notifies(timeout=0)}
                if runs:
                    self._wakeups.wake(runs)
        except Exception as exc:
            log.debug("the event listener lost its connection: %s", type(exc).__name__)
        finally:
            with self._lock:
                if self._conn is conn:
                    self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
            self._wakeups.wake(None)  # whatever came while nobody listened is in the table: look again

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        os.write(self._stop_write, b"x")
        if thread is not None:
            thread.join(timeout=10)
        if thread is None or not thread.is_alive():
            os.close(self._stop_read)
            os.close(self._stop_write)
        self._wakeups.wake(None)


def _driver_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    errors: list[type[BaseException]] = [sqlite3.Error]
    import sys

    # `sqlalchemy.exc`, not `sqlalchemy`: another thread may be importing SQLAlchemy right now, and a
    # partly imported package has no `exc` yet
    exc = sys.modules.get("sqlalchemy.exc")
    found = getattr(exc, "SQLAlchemyError", None)
    if isinstance(found, type):
        errors.append(found)
    return tuple(errors)


# --------------------------------------------------------------------------- the store
_RUN_COLUMNS = (
    "id, workflow, version, status, started_at, ended_at, variables, overrides, definition, root, logical_time, "
    "runner_pid, runner_host, runner_started, heartbeat_at, cancel_requested_at, resumes, parent_run_id, source"
)
_TASK_COLUMNS = "name, stage, status, reason, started_at, ended_at, error, metrics, saved, variables, attempts"
_UPDATE_TASK = (
    "UPDATE task_runs SET status = :status, reason = :reason, started_at = :started_at, ended_at = :ended_at, "
    "error = :error, metrics = :metrics, saved = :saved, variables = :variables, attempts = :attempts "
    "WHERE run_id = :run_id AND name = :name"
)
_INSERT_TASK = (
    "INSERT INTO task_runs (run_id, position, status, reason, started_at, ended_at, error, metrics, saved, variables, "
    "attempts, name, stage) VALUES (:run_id, :position, :status, :reason, :started_at, :ended_at, :error, :metrics, "
    ":saved, :variables, :attempts, :name, :stage)"
)
_INSERT_EVENT = "INSERT INTO events (run_id, at, kind, task, status, data) VALUES (:run_id, :at, :kind, :task, :status, :data)"
_INSERT_LOG = (
    "INSERT INTO logs (run_id, task, attempt, at, level, message) VALUES (:run_id, :task, :attempt, :at, :level, :message)"
)


#: the databases a run store can be kept in besides SQLite (it needs their row locks and advisory locks)
SERVER_STORES = ("postgresql",)


def _check_server_url(url: str, masked: str) -> None:
    """A run store URL other than SQLite: a PostgreSQL URL that parses (UsageError otherwise)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        _ = parsed.port  # a port that is not a number fails here, not at the first connection
    except (ArgumentError, ValueError) as exc:
        raise UsageError(f"run store {masked}: not a database URL ({_clean(exc, url)})") from None
    backend = parsed.get_backend_name()
    if backend not in SERVER_STORES:
        hint = "; MariaDB and MySQL serve as connections of tasks" if backend in ("mysql", "mariadb") else ""
        raise UsageError(
            f"run store {masked}: runs are kept in SQLite (sqlite:///path) or PostgreSQL "
            f"(postgresql+psycopg://user@host/db), not in {backend}{hint}"
        )


_CREATING = ".creating"  # the file a new SQLite store is made in, beside it (`SqlRunStore._create_sqlite`)
_ABSENT = "\0absent"
_UNFINISHED = "\0unfinished"


def _read_only_connection(path: str) -> Any:
    """A connection that never writes, to a store whose folder cannot be written: read-only, or —
    when SQLite cannot even keep its shared-memory index beside a WAL database there — immutable
    (nothing can change a file in a folder nobody may write)."""
    import sqlite3
    from urllib.parse import quote

    uri = "file:" + quote(os.path.abspath(path))
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        conn.close()
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)


def _folder_writable(path: str) -> bool:
    """Whether a file can be made beside `path` (permissions, a read-only mount, an immutable folder)."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".flowstage-probe-")
    except FileNotFoundError:
        return True  # the folder is made with the store
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def _read_only_revision(path: str) -> str | None:
    """The revision of the store at `path`, read without writing anything."""
    import sqlite3

    if not os.path.isfile(path):
        return None
    try:
        conn = _read_only_connection(path)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(row[0]) if row is not None else None
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _sqlite_state(path: str) -> str | None:
    """The revision of the SQLite store at `path`; `_ABSENT` when there is none; `_UNFINISHED` when
    its creation never ended (an empty file, or only empty tables of a store, with no revision:
    what a runner of an earlier version killed while creating it left). None: no revision, and
    tables that are not only a store's, which is left for the migration to report."""
    import sqlite3

    try:
        if os.path.getsize(path) == 0:
            return _UNFINISHED
    except FileNotFoundError:
        return _ABSENT
    except OSError:
        return None  # the connection below reports what is wrong
    try:
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error:
        return None
    try:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
        }
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            if row is not None:
                return str(row[0])
        from flowstage.stores.sql.schema import metadata

        ours = set(metadata.tables) | {"alembic_version"}
        if tables <= ours and all(
            conn.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone() is None for name in tables if name != "alembic_version"
        ):
            return _UNFINISHED
        return None
    except sqlite3.Error:
        return None  # not a database, or unreadable: opening it says so
    finally:
        conn.close()


class SqlRunStore:
    """A run store on a URL: ``sqlite:///path`` or any SQLAlchemy URL (``postgresql+psycopg://...``)."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = False
        self._alchemy: _AlchemyDriver | None = None
        self._wakeups = _Wakeups()
        self._listener: _PgListener | None = None
        self._listener_lock = threading.Lock()
        try:
            if self.is_sqlite:
                self.sqlite_path = _sqlite_file(url)
                if self.sqlite_path == ":memory:":
                    raise StoreError("an in-memory SQLite run store would forget every run: give the store a file")
                self.driver: _Driver = _SqliteDriver(self.sqlite_path)
            else:
                _check_server_url(url, self.masked_url)
                self._alchemy = _AlchemyDriver(url)
                self.driver = self._alchemy
                self.is_postgres = self._alchemy.engine.dialect.name == "postgresql"
            if migrate:
                try:
                    self._migrate()
                except BaseException:
                    self.driver.close()  # nothing of a store that could not open stays open
                    raise
        except ModuleNotFoundError as exc:
            raise StoreError(
                f"run store {self.masked_url}: driver not installed ({exc.name}); install flowstage[postgres]"
            ) from None
        except StoreError:
            raise
        except Exception as exc:
            if type(exc).__name__ in ("ArgumentError", "NoSuchModuleError"):  # not a URL SQLAlchemy knows
                raise UsageError(f"run store {self.masked_url}: not a database URL ({_clean(exc, url)})") from None
            if isinstance(exc, _driver_errors()) or type(exc).__module__.startswith(("sqlalchemy", "psycopg", "sqlite3")):
                raise StoreError(f"run store {self.masked_url} is unreachable: {_clean(exc, url)}") from None
            raise

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def _write(self, *, blind: bool = False) -> Iterator[_Tx]:
        try:
            with self.driver.write(blind=blind) as tx:
                yield tx
        except _driver_errors() as exc:
            raise StoreError(f"run store {self.masked_url}: {_clean(exc, self.url)}") from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[_Tx]:
        try:
            with self.driver.read() as tx:
                yield tx
        except _driver_errors() as exc:
            raise StoreError(f"run store {self.masked_url}: {_clean(exc, self.url)}") from None

    @contextlib.contextmanager
    def _read_one(self) -> Iterator[_Tx]:
        """A read of one statement (no transaction around it: it is one)."""
        try:
            with self.driver.read_one() as tx:
                yield tx
        except _driver_errors() as exc:
            raise StoreError(f"run store {self.masked_url}: {_clean(exc, self.url)}") from None

    def read_one(self) -> contextlib.AbstractContextManager[_Tx]:
        """A read of one statement, for the stores that share the database (tokens)."""
        return self._read_one()

    def write_transaction(self) -> contextlib.AbstractContextManager[_Tx]:
        """A write transaction on the store's database, for the stores that share it (deployments, catalog)."""
        return self._write()

    def read_transaction(self) -> contextlib.AbstractContextManager[_Tx]:
        """A read transaction on the store's database."""
        return self._read()

    def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        try:
            with self.driver.read() as tx:
                rows = tx.query("SELECT version_num FROM alembic_version")
        except _driver_errors():
            return None
        return str(rows[0]["version_num"]) if rows else None

    def _found_revision(self) -> str | None:
        """The revision as the migration sees it: for SQLite on a connection of its own, opened for the
        question (the driver's would stay on a file that `_create_sqlite` may replace)."""
        if not self.is_sqlite:
            return self.revision()
        found = _sqlite_state(self.sqlite_path)
        return found if found not in (_ABSENT, _UNFINISHED) else None

    def _migrate(self) -> None:
        if self._found_revision() == HEAD_REVISION:
            return
        if self.is_sqlite and not _folder_writable(self.sqlite_path):
            if _read_only_revision(self.sqlite_path) == HEAD_REVISION:
                # a current store in a folder that cannot be written: it is read, never written
                self.driver.close()
                self.driver = _SqliteDriver(self.sqlite_path, read_only=True)
                return
            raise StoreError(
                f"run store {self.masked_url} cannot be created or brought to the current schema: "
                f"its folder {os.path.dirname(self.sqlite_path) or '.'} cannot be written"
            )
        import sqlalchemy as sa

        with self._migration_lock():
            if self._found_revision() == HEAD_REVISION:
                return  # another process migrated while this one waited for the lock
            if self.is_sqlite and _sqlite_state(self.sqlite_path) in (_ABSENT, _UNFINISHED):
                self._create_sqlite()
                return
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
            engine = sa.create_engine(self.url if not self.is_sqlite else f"sqlite:///{self.sqlite_path}")
            try:
                with engine.begin() as conn:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
            finally:
                engine.dispose()

    def _create_sqlite(self) -> None:
        """A new SQLite store, whole or not at all: made and migrated in a file beside it, then moved
        into place. A runner killed while creating leaves no store (the next one creates it) and a
        temporary file that the next creation removes; never a store half made.

        Called under the migration lock, with no store at the path, or one whose creation never
        ended (no revision, nothing but empty tables of its own), which it replaces."""
        import sqlalchemy as sa
        from alembic import command
        from alembic.config import Config

        path = self.sqlite_path
        tmp = path + _CREATING
        for stale in (tmp, tmp + "-journal", tmp + "-wal", tmp + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)  # of a creation that was killed: nothing in it counts
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        engine = sa.create_engine(f"sqlite:///{tmp}")
        try:
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        finally:
            engine.dispose()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        for stale in (path + "-wal", path + "-shm", path + "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)  # of the unfinished store: SQLite must not replay them onto the new one
        os.replace(tmp, path)
        with contextlib.suppress(OSError):
            folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.is_sqlite:
            import fcntl

            if self.sqlite_path == ":memory:":
                yield
                return
            lock = self.sqlite_path + ".migrate.lock"
            try:
                fh = open(lock, "a")  # noqa: SIM115 (closed below, after the lock is let go)
            except OSError as exc:
                raise StoreError(
                    f"run store {self.masked_url} cannot be created or brought to the current schema: "
                    f"{exc.strerror or exc} ({lock}); its folder must be writable"
                ) from None
            with fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
            return
        import sqlalchemy as sa

        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(7150451)"))
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(7150451)"))
                    conn.commit()
        finally:
            engine.dispose()

    def close(self) -> None:
        self._wakeups.close()
        with self._listener_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.driver.close()

    def add_events_in(self, tx: _Tx, events: Sequence[Event]) -> None:
        """Append events inside a write transaction of a store that shares the database (alerts)."""
        self._add_events(tx, events)

    def _add_events(self, tx: _Tx, events: Sequence[Event]) -> None:
        """Insert events, as the last statements of a write transaction (see the module docstring)."""
        if not events:
            return
        if self.is_postgres:
            # one statement takes the lock and queues the notifications (delivered on commit)
            run_ids = sorted({e.run_id for e in events})
            notify = "".join(f", pg_notify('{EVENTS_CHANNEL}', :r{i})" for i in range(len(run_ids)))
            tx.execute(
                f"SELECT pg_advisory_xact_lock(:key){notify}",
                {"key": _EVENTS_LOCK, **{f"r{i}": r for i, r in enumerate(run_ids)}},
            )
        tx.executemany_values(_INSERT_EVENT, [(e.run_id, e.at, e.kind, e.task, e.status, _dumps_masked(e.data)) for e in events])

    # ------------------------------------------------------------------ writes
    def create_run(self, run: NewRun) -> None:
        # a large run's definition text and rows are made and dropped here: no collection walks them
        with collector.paused(), self._write() as tx:
            tx.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (:id, :workflow, :version, 'running', :started_at, NULL, "
                ":variables, :overrides, :definition, :root, :logical_time, :runner_pid, :runner_host, :runner_started, "
                ":started_at, NULL, '[]', :parent_run_id, :source)",
                {
                    "id": run.id,
                    "workflow": run.workflow,
                    "version": run.version,
                    "started_at": run.started_at,
                    "variables": _dumps_masked(run.variables),
                    "overrides": _dumps_masked(run.overrides),
                    "definition": _dumps(run.definition),
                    "root": run.root,
                    "logical_time": run.logical_time,
                    "runner_pid": run.runner_pid,
                    "runner_host": run.runner_host,
                    "runner_started": run.runner_started,
                    "parent_run_id": run.parent_run_id,
                    "source": run.source,
                },
            )
            if run.tasks:
                tx.executemany_values(
                    _INSERT_TASK, [(run.id, i, *_task_values(t), t.name, t.stage) for i, t in enumerate(run.tasks)]
                )
            self._add_events(tx, [Event(run.id, run.started_at, projection.RUN_STARTED, None, "running", {})])
        self._wakeups.wake([run.id])

    def record(self, batch: Batch) -> None:
        run_id = batch.run_id
        with self._write(blind=True) as tx:
            if batch.tasks:
                tx.executemany_values(_UPDATE_TASK, [_task_update(t, run_id) for t in batch.tasks])
            if batch.logs:
                tx.executemany_values(
                    _INSERT_LOG, [(ln.run_id, ln.task, ln.attempt, ln.at, ln.level, _text(ln.message)) for ln in batch.logs]
                )
            if batch.run_status is not None:
                tx.execute(
                    "UPDATE runs SET status = :status, ended_at = :ended_at WHERE id = :id",
                    {"status": batch.run_status, "ended_at": batch.run_ended_at, "id": batch.run_id},
                )
            if batch.run_variables is not None:
                tx.execute(
                    "UPDATE runs SET variables = :v WHERE id = :id",
                    {"v": _dumps_masked(batch.run_variables), "id": batch.run_id},
                )
            self._add_events(tx, batch.events)
        if batch.events:
            self._wakeups.wake({e.run_id for e in batch.events})

    def heartbeat(self, run_id: str, at: float) -> bool:
        with self._write() as tx:
            tx.execute("UPDATE runs SET heartbeat_at = :at WHERE id = :id", {"at": at, "id": run_id})
            rows = tx.query("SELECT cancel_requested_at FROM runs WHERE id = :id", {"id": run_id})
        return bool(rows) and rows[0]["cancel_requested_at"] is not None

    def request_cancel(self, run_id: str, at: float) -> bool:
        with self._write() as tx:
            count = tx.execute(
                "UPDATE runs SET cancel_requested_at = :at WHERE id = :id AND status = 'running'", {"at": at, "id": run_id}
            )
            if count:
                self._add_events(tx, [Event(run_id, at, projection.CANCEL_REQUESTED, None, None, {})])
        if count:
            self._wakeups.wake([run_id])
        return bool(count)

    def claim(
        self,
        run_id: str,
        *,
        expect_status: str,
        expect_heartbeat: float | None,
        pid: int,
        host: str,
        started: float,
        at: float,
        by: str,
    ) -> bool:
        with self._write() as tx:
            rows = tx.query("SELECT resumes FROM runs WHERE id = :id", {"id": run_id})
            if not rows:
                return False
            resumes = _loads(rows[0]["resumes"], [])
            resumes.append({"by": by, "at": at})
            beat = "heartbeat_at IS NULL" if expect_heartbeat is None else "heartbeat_at = :beat"
            count = tx.execute(
                "UPDATE runs SET status = 'running', ended_at = NULL, runner_pid = :pid, runner_host = :host, "
                "runner_started = :started, heartbeat_at = :at, cancel_requested_at = NULL, resumes = :resumes "
                f"WHERE id = :id AND status = :expect AND {beat}",
                {
                    "pid": pid,
                    "host": host,
                    "started": started,
                    "at": at,
                    "resumes": _dumps(resumes),
                    "id": run_id,
                    "expect": expect_status,
                    "beat": expect_heartbeat,
                },
            )
            if count != 1:
                return False
            self._add_events(tx, [Event(run_id, at, projection.RUN_RESUMED, None, "running", {"by": by})])
        self._wakeups.wake([run_id])
        return True

    def finish_orphan(self, run_id: str, *, status: str, at: float, reason: str) -> None:
        with self._write() as tx:
            # FOR UPDATE: a write to these rows that commits meanwhile is not overwritten by a stale projection
            rows = tx.query(
                f"SELECT {_TASK_COLUMNS} FROM task_runs WHERE run_id = :id ORDER BY position{'' if self.is_sqlite else ' FOR UPDATE'}",
                {"id": run_id},
            )
            tasks = [_task_from_row(r) for r in rows]
            events = projection.orphan_events(tasks, run_id=run_id, status=status, at=at, reason=reason)
            touched = {e.task for e in events if e.task is not None}
            changed = projection.replay([t for t in tasks if t.name in touched], events)
            if changed:
                tx.executemany(_UPDATE_TASK, [dict(_task_row(t), run_id=run_id) for t in changed.values()])
            tx.execute(
                "UPDATE runs SET status = :status, ended_at = :at WHERE id = :id", {"status": status, "at": at, "id": run_id}
            )
            self._add_events(tx, events)
        self._wakeups.wake([run_id])

    # ------------------------------------------------------------------ reads
    def events_after(self, cursor: int, *, run_id: str | None = None, limit: int = 1000) -> list[tuple[int, Event]]:
        sql = "SELECT id, run_id, at, kind, task, status, data FROM events WHERE id > :after"
        params: dict[str, Any] = {"after": int(cursor), "limit": max(int(limit), 0)}
        if run_id is not None:
            sql += " AND run_id = :run_id"
            params["run_id"] = run_id
        with self._read_one() as tx:
            rows = tx.query(sql + " ORDER BY id LIMIT :limit", params)
        return [(r["id"], Event(r["run_id"], r["at"], r["kind"], r["task"], r["status"], _loads(r["data"], {}))) for r in rows]

    def wait_events(self, cursor: int, *, run_id: str | None = None, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        listener = self._events_listener() if timeout > 0 else None  # a look without a wait needs no LISTEN
        interval = _POLL_SECONDS if listener is None else _RECHECK_SECONDS
        waiter = _Waiter(run_id)
        wakeups = self._wakeups
        with wakeups.cond:
            wakeups.waiters.add(waiter)
            closes = wakeups.closes
        try:
            while True:
                with wakeups.cond:
                    if wakeups.closes != closes:
                        return False  # the store was closed
                    waiter.woken = False  # before looking: a write committed after this wakes the wait below
                if listener is not None and not self._listening(listener):
                    return False  # closed meanwhile
                if self._newest_event(run_id) > cursor:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with wakeups.cond:
                    wakeups.cond.wait_for(lambda: waiter.woken, timeout=min(interval, remaining))
        finally:
            with wakeups.cond:
                wakeups.waiters.discard(waiter)

    def last_event_id(self, run_id: str | None = None) -> int:
        """The cursor of the newest event (of one run, or of every run); 0 when there is none."""
        return self._newest_event(run_id)

    def _newest_event(self, run_id: str | None) -> int:
        """The id of the newest event (of one run), 0 when there is none: one index lookup."""
        if run_id is None:
            sql, params = "SELECT max(id) AS newest FROM events", {}
        else:
            sql, params = "SELECT max(id) AS newest FROM events WHERE run_id = :run_id", {"run_id": run_id}
        with self._read_one() as tx:
            rows = tx.query(sql, params)
        return int(rows[0]["newest"] or 0) if rows else 0

    def _events_listener(self) -> _PgListener | None:
        """The store's LISTEN connection (PostgreSQL through psycopg 3), made on first use; None elsewhere."""
        if not self.is_postgres or self._alchemy is None or self._alchemy.engine.dialect.driver != "psycopg":
            return None
        with self._listener_lock:
            if self._listener is None:
                engine = self._alchemy.engine

                def connect() -> Any:
                    import psycopg

                    args, kwargs = engine.dialect.create_connect_args(engine.url)
                    return psycopg.connect(*args, **kwargs, autocommit=True)

                self._listener = _PgListener(connect, self._wakeups)
            return self._listener

    def _listening(self, listener: _PgListener) -> bool:
        try:
            return listener.ensure()
        except Exception as exc:
            raise StoreError(f"run store {self.masked_url}: cannot listen for events: {_clean(exc, self.url)}") from None

    def get_run(self, run_id: str, *, with_tasks: bool = True) -> StoredRun | None:
        # the run and its tasks are read in one transaction (one snapshot); the run alone is one statement
        # a large run's definition and tasks: none of them garbage, no collection walks them as they come
        with collector.paused(), self._read() if with_tasks else self._read_one() as tx:
            rows = tx.query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = :id", {"id": run_id})
            if not rows:
                return None
            run = _run_from_row(rows[0])
            if with_tasks:
                found = tx.rows(f"SELECT {_TASK_COLUMNS} FROM task_runs WHERE run_id = :id ORDER BY position", {"id": run_id})
                run.tasks = _tasks_from_rows(found)
        return run

    def run_head(self, run_id: str) -> RunHead | None:
        sql = (
            "SELECT id, status, ended_at, resumes, runner_pid, runner_host, runner_started, heartbeat_at, "
            "(SELECT max(e.id) FROM events e WHERE e.run_id = runs.id) AS newest FROM runs WHERE id = :id"
        )
        with self._read_one() as tx:
            rows = tx.query(sql, {"id": run_id})
        if not rows:
            return None
        r = rows[0]
        return RunHead(
            id=r["id"],
            status=r["status"],
            ended_at=r["ended_at"],
            resumes=len(_loads(r["resumes"], [])),
            runner_pid=r["runner_pid"],
            runner_host=r["runner_host"],
            runner_started=r["runner_started"],
            heartbeat_at=r["heartbeat_at"],
            newest_event=int(r["newest"] or 0),
        )

    def list_runs(
        self, *, workflow: str | None = None, statuses: Sequence[str] | None = None, limit: int = 50
    ) -> list[StoredRun]:
        where = []
        params: dict[str, Any] = {"limit": int(limit)}
        if workflow is not None:
            where.append("workflow = :workflow")
            params["workflow"] = workflow
        if statuses:
            names = []
            for i, s in enumerate(statuses):
                params[f"s{i}"] = s
                names.append(f":s{i}")
            where.append(f"status IN ({', '.join(names)})")
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        with self._read() as tx:
            rows = tx.query(f"SELECT {_RUN_COLUMNS} FROM runs {clause} ORDER BY started_at DESC, id DESC LIMIT :limit", params)
        return [_run_from_row(r) for r in rows]

    def logs(
        self,
        run_id: str,
        *,
        task: str | None = None,
        min_level: int = 0,
        after: int = 0,
        limit: int = 10_000,
        contains: str | None = None,
    ) -> list[StoredLog]:
        sql = "SELECT id, run_id, task, attempt, at, level, message FROM logs WHERE run_id = :id AND id > :after"
        params: dict[str, Any] = {"id": run_id, "after": after, "limit": int(limit)}
        if task is not None:
            sql += " AND task = :task"
            params["task"] = task
        if min_level:
            sql += " AND level >= :level"
            params["level"] = min_level
        if contains:
            # a plain substring, case-insensitive: LIKE's own characters are escaped (by `!`, which
            # every backend reads the same way)
            escaped = contains.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
            sql += " AND lower(message) LIKE :contains ESCAPE '!'"
            params["contains"] = f"%{escaped}%"
        sql += " ORDER BY id LIMIT :limit"
        with self._read_one() as tx:
            rows = tx.query(sql, params)
        return [
            StoredLog(r["id"], LogLine(r["run_id"], r["task"], r["attempt"], r["at"], r["level"], r["message"])) for r in rows
        ]

    def events(self, run_id: str, *, after: int = 0, limit: int = 10_000) -> list[tuple[int, Event]]:
        with self._read() as tx:
            rows = tx.query(
                "SELECT id, run_id, at, kind, task, status, data FROM events WHERE run_id = :id AND id > :after ORDER BY id LIMIT :limit",
                {"id": run_id, "after": after, "limit": int(limit)},
            )
        return [(r["id"], Event(r["run_id"], r["at"], r["kind"], r["task"], r["status"], _loads(r["data"], {}))) for r in rows]

    # ------------------------------------------------------------------ the stores that share its database
    @property
    def deployments(self) -> DeploymentStore:
        """The deployed workflows, their versions and trigger fires, in this store's database."""
        found: DeploymentStore | None = self.__dict__.get("_deployments")
        if found is None:
            from flowstage.stores.sql.deployments import SqlDeploymentStore

            found = self.__dict__.setdefault("_deployments", SqlDeploymentStore(self))
        return found

    @property
    def catalog(self) -> CatalogStore:
        """The data catalog in this store's database."""
        found: CatalogStore | None = self.__dict__.get("_catalog")
        if found is None:
            from flowstage.stores.sql.catalog import SqlCatalog

            found = self.__dict__.setdefault("_catalog", SqlCatalog(self))
        return found

    @property
    def alerts(self) -> AlertStore:
        """The alerts fired, in this store's database."""
        found: AlertStore | None = self.__dict__.get("_alerts")
        if found is None:
            from flowstage.stores.sql.alerts import SqlAlertStore

            found = self.__dict__.setdefault("_alerts", SqlAlertStore(self))
        return found

    @property
    def backfills(self) -> BackfillStore:
        """The backfills in this store's database."""
        found: BackfillStore | None = self.__dict__.get("_backfills")
        if found is None:
            from flowstage.stores.sql.backfills import SqlBackfillStore

            found = self.__dict__.setdefault("_backfills", SqlBackfillStore(self))
        return found

    @property
    def tokens(self) -> TokenStore:
        """The API tokens in this store's database."""
        found: TokenStore | None = self.__dict__.get("_tokens")
        if found is None:
            from flowstage.stores.sql.tokens import SqlTokenStore

            found = self.__dict__.setdefault("_tokens", SqlTokenStore(self))
        return found


def _task_row(t: TaskRun) -> dict[str, Any]:
    return {
        "name": t.name,
        "stage": t.stage,
        "status": str(t.status),
        "reason": _text(t.reason),
        "started_at": t.started_at,
        "ended_at": t.ended_at,
        "error": _text(t.error),
        "metrics": _dumps(t.metrics),
        "saved": _dumps(t.saved),
        "variables": _dumps(t.variables),
        "attempts": _dumps(t.attempts),
    }


def _task_values(t: TaskRun) -> tuple[Any, ...]:
    """What a task row holds beyond its keys: status, reason, times, error and the JSON columns, in that order."""
    return (
        str(t.status),
        _text(t.reason),
        t.started_at,
        t.ended_at,
        _text(t.error),
        _dumps(t.metrics),
        _dumps_masked(t.saved),
        _dumps_masked(t.variables),
        _dumps_masked(t.attempts),
    )


def _task_update(t: TaskRun, run_id: str) -> tuple[Any, ...]:
    """The values of `_UPDATE_TASK` for `t`, in the order of its placeholders."""
    return (*_task_values(t), run_id, t.name)


_JSON_COLUMNS: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("metrics", dict),
    ("saved", dict),
    ("variables", dict),
    ("attempts", list),
)
_CHUNK = 1000


def _tasks_from_rows(rows: Iterator[Row]) -> list[TaskRun]:
    """Task runs from rows as they come, a chunk at a time.

    The JSON columns of a chunk are decoded in one call per column: the decoder then makes each
    key (``status``, ``started_at``, ...) once per chunk instead of once per row, which is most of
    the memory a large run's attempts take.
    """
    out: list[TaskRun] = []
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _CHUNK:
            out.extend(_tasks_of_chunk(chunk))
            chunk = []
    out.extend(_tasks_of_chunk(chunk))
    return out


def _tasks_of_chunk(rows: list[Row]) -> list[TaskRun]:
    if not rows:
        return []
    columns = [_decode_column([r[name] for r in rows], empty) for name, empty in _JSON_COLUMNS]
    return [
        TaskRun(
            name=r["name"],
            stage=r["stage"],
            status=TaskStatus(r["status"]),
            reason=r["reason"],
            started_at=r["started_at"],
            ended_at=r["ended_at"],
            error=r["error"],
            metrics=metrics,
            saved=saved,
            variables=variables,
            attempts=attempts,
        )
        for r, metrics, saved, variables, attempts in zip(rows, *columns, strict=True)
    ]


def _decode_column(texts: list[str | None], empty: Callable[[], Any]) -> list[Any]:
    """The values of one JSON column (an empty text or value is a new `empty`), in one decoder call."""
    full = [t for t in texts if t and t != "{}" and t != "[]"]
    if not full:
        return [empty() for _ in texts]
    try:
        values = iter(_DECODE("[" + ",".join(full) + "]"))
    except ValueError:
        return [_loads(t, empty()) for t in texts]  # one of them is broken: decode one by one, to say which
    return [next(values) if t and t != "{}" and t != "[]" else _loads(t, empty()) for t in texts]


def _task_from_row(r: Row) -> TaskRun:
    return TaskRun(
        name=r["name"],
        stage=r["stage"],
        status=TaskStatus(r["status"]),
        reason=r["reason"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        error=r["error"],
        metrics=_loads(r["metrics"], {}),
        saved=_loads(r["saved"], {}),
        variables=_loads(r["variables"], {}),
        attempts=_loads(r["attempts"], []),
    )


def _run_from_row(r: Row) -> StoredRun:
    return StoredRun(
        id=r["id"],
        workflow=r["workflow"],
        version=r["version"],
        status=r["status"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        variables=_loads(r["variables"], {}),
        overrides=_loads(r["overrides"], {}),
        definition=_loads(r["definition"], {}),
        root=r["root"],
        logical_time=r["logical_time"],
        runner_pid=r["runner_pid"],
        runner_host=r["runner_host"],
        runner_started=r["runner_started"],
        heartbeat_at=r["heartbeat_at"],
        cancel_requested_at=r["cancel_requested_at"],
        resumes=_loads(r["resumes"], []),
        parent_run_id=r["parent_run_id"],
        source=r["source"],
    )


def _sqlite_file(url: str) -> str:
    """The file of a ``sqlite:///path`` URL (``sqlite://`` alone is an in-memory database)."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    if not rest or rest in ("/", "/:memory:"):
        return ":memory:"
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    return path or ":memory:"


def _clean(exc: BaseException, url: str) -> str:
    """A driver error's first line, with the URL and password masked."""
    raw = str(getattr(exc, "orig", None) or exc).strip()
    text = raw.splitlines()[0] if raw else type(exc).__name__
    return scrub(text, [url])


__all__ = ["HEAD_REVISION", "SqlRunStore", "mask_url"]
