"""The SQL run store: SQLite (WAL, busy timeout, BEGIN IMMEDIATE) or PostgreSQL.

Every batch from the runner is one transaction. On SQLite, write transactions start with
``BEGIN IMMEDIATE`` so that twenty processes sharing one file queue on the busy timeout instead
of failing with "database is locked" when a reader upgrades to a writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

from flowstage.engine.ports import Batch, Event, LogLine, TaskRun
from flowstage.errors import StoreError
from flowstage.model.statuses import TaskStatus
from flowstage.stores.base import NewRun, StoredLog, StoredRun
from flowstage.stores.sql import schema
from flowstage.stores.sql.schema import events, logs, runs, task_runs

HEAD_REVISION = "0001"
_BUSY_TIMEOUT_MS = 120_000


def mask_url(url: str) -> str:
    """`url` with its password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    return json.loads(text)


class SqlRunStore:
    """A run store on a SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``)."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        self.is_sqlite = url.startswith("sqlite")
        try:
            self.engine, self.read_engine = self._engines(url)
            if migrate:
                self._migrate()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"run store {self.masked_url} is unreachable: {_clean(exc, url)}") from None
        except ModuleNotFoundError as exc:
            raise StoreError(f"run store {self.masked_url}: driver not installed ({exc.name}); install flowstage[postgres]") from None

    # ------------------------------------------------------------------ engines
    def _engines(self, url: str) -> tuple[Engine, Engine]:
        if not self.is_sqlite:
            engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
            return engine, engine
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

        def make(immediate: bool) -> Engine:
            engine = sa.create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

            @sa_event.listens_for(engine, "connect")
            def _connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @sa_event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

            return engine

        return make(True), make(False)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"run store {self.masked_url}: {_clean(exc, self.url)}") from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.read_engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"run store {self.masked_url}: {_clean(exc, self.url)}") from None

    def _migrate(self) -> None:
        with self.read_engine.connect() as conn:
            try:
                current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except sa.exc.SQLAlchemyError:
                current = None
            conn.rollback()
        if current == HEAD_REVISION:
            return
        with self._migration_lock():
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.is_sqlite:
            import fcntl

            path = sa.engine.make_url(self.url).database or ""
            if not path or path == ":memory:":
                yield
                return
            with open(path + ".migrate.lock", "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
            return
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(7150451)"))
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(7150451)"))
                conn.commit()

    def close(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()

    # ------------------------------------------------------------------ writes
    def create_run(self, run: NewRun) -> None:
        with self._write() as conn:
            conn.execute(
                runs.insert().values(
                    id=run.id,
                    workflow=run.workflow,
                    version=run.version,
                    status="running",
                    started_at=run.started_at,
                    ended_at=None,
                    variables=_dumps(run.variables),
                    overrides=_dumps(run.overrides),
                    definition=_dumps(run.definition),
                    root=run.root,
                    logical_time=run.logical_time,
                    runner_pid=run.runner_pid,
                    runner_host=run.runner_host,
                    runner_started=run.runner_started,
                    heartbeat_at=run.started_at,
                    cancel_requested_at=None,
                    resumes="[]",
                    parent_run_id=run.parent_run_id,
                    source=run.source,
                )
            )
            if run.tasks:
                conn.execute(
                    task_runs.insert(),
                    [dict(_task_row(t), run_id=run.id, name=t.name, position=i) for i, t in enumerate(run.tasks)],
                )
            conn.execute(
                events.insert().values(run_id=run.id, at=run.started_at, kind="run_started", task=None, status="running", data="{}")
            )

    def record(self, batch: Batch) -> None:
        with self._write() as conn:
            if batch.tasks:
                stmt = (
                    task_runs.update()
                    .where(task_runs.c.run_id == sa.bindparam("_run_id"), task_runs.c.name == sa.bindparam("_name"))
                    .values(
                        status=sa.bindparam("status"),
                        reason=sa.bindparam("reason"),
                        started_at=sa.bindparam("started_at"),
                        ended_at=sa.bindparam("ended_at"),
                        error=sa.bindparam("error"),
                        metrics=sa.bindparam("metrics"),
                        saved=sa.bindparam("saved"),
                        variables=sa.bindparam("variables"),
                        attempts=sa.bindparam("attempts"),
                    )
                )
                conn.execute(stmt, [dict(_task_row(t), _run_id=batch.run_id, _name=t.name) for t in batch.tasks])
            if batch.events:
                conn.execute(
                    events.insert(),
                    [
                        {"run_id": e.run_id, "at": e.at, "kind": e.kind, "task": e.task, "status": e.status, "data": _dumps(e.data)}
                        for e in batch.events
                    ],
                )
            if batch.logs:
                conn.execute(
                    logs.insert(),
                    [
                        {"run_id": ln.run_id, "task": ln.task, "attempt": ln.attempt, "at": ln.at, "level": ln.level, "message": ln.message}
                        for ln in batch.logs
                    ],
                )
            values: dict[str, Any] = {}
            if batch.run_status is not None:
                values["status"] = batch.run_status
                values["ended_at"] = batch.run_ended_at
            if batch.run_variables is not None:
                values["variables"] = _dumps(batch.run_variables)
            if values:
                conn.execute(runs.update().where(runs.c.id == batch.run_id).values(**values))

    def heartbeat(self, run_id: str, at: float) -> bool:
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(heartbeat_at=at))
            requested = conn.execute(sa.select(runs.c.cancel_requested_at).where(runs.c.id == run_id)).scalar()
        return requested is not None

    def request_cancel(self, run_id: str, at: float) -> bool:
        with self._write() as conn:
            result = conn.execute(
                runs.update().where(runs.c.id == run_id, runs.c.status == "running").values(cancel_requested_at=at)
            )
            conn.execute(events.insert().values(run_id=run_id, at=at, kind="cancel_requested", task=None, status=None, data="{}"))
        return bool(result.rowcount)

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
        with self._write() as conn:
            row = conn.execute(sa.select(runs.c.resumes).where(runs.c.id == run_id)).first()
            if row is None:
                return False
            resumes = _loads(row.resumes, [])
            resumes.append({"by": by, "at": at})
            cond = [runs.c.id == run_id, runs.c.status == expect_status]
            cond.append(runs.c.heartbeat_at.is_(None) if expect_heartbeat is None else runs.c.heartbeat_at == expect_heartbeat)
            result = conn.execute(
                runs.update()
                .where(*cond)
                .values(
                    status="running",
                    ended_at=None,
                    runner_pid=pid,
                    runner_host=host,
                    runner_started=started,
                    heartbeat_at=at,
                    cancel_requested_at=None,
                    resumes=_dumps(resumes),
                )
            )
            if result.rowcount != 1:
                return False
            conn.execute(
                events.insert().values(run_id=run_id, at=at, kind="run_resumed", task=None, status="running", data=_dumps({"by": by}))
            )
        return True

    def finish_orphan(self, run_id: str, *, status: str, at: float, reason: str) -> None:
        with self._write() as conn:
            conn.execute(
                task_runs.update()
                .where(task_runs.c.run_id == run_id, task_runs.c.status.in_(["pending", "running", "retrying"]))
                .values(status=status if status != "failed" else "cancelled", reason=reason, ended_at=at)
            )
            conn.execute(runs.update().where(runs.c.id == run_id).values(status=status, ended_at=at))
            conn.execute(events.insert().values(run_id=run_id, at=at, kind="run_finished", task=None, status=status, data=_dumps({"reason": reason})))

    # ------------------------------------------------------------------ reads
    def get_run(self, run_id: str, *, with_tasks: bool = True) -> StoredRun | None:
        with self._read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
            if row is None:
                return None
            run = _run_from_row(row)
            if with_tasks:
                rows = conn.execute(sa.select(task_runs).where(task_runs.c.run_id == run_id).order_by(task_runs.c.position))
                run.tasks = [_task_from_row(r) for r in rows]
        return run

    def list_runs(
        self, *, workflow: str | None = None, statuses: Sequence[str] | None = None, limit: int = 50
    ) -> list[StoredRun]:
        query = sa.select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        if statuses:
            query = query.where(runs.c.status.in_(list(statuses)))
        with self._read() as conn:
            return [_run_from_row(r) for r in conn.execute(query)]

    def logs(
        self,
        run_id: str,
        *,
        task: str | None = None,
        min_level: int = 0,
        after: int = 0,
        limit: int = 10_000,
    ) -> list[StoredLog]:
        query = sa.select(logs).where(logs.c.run_id == run_id, logs.c.id > after).order_by(logs.c.id).limit(limit)
        if task is not None:
            query = query.where(logs.c.task == task)
        if min_level:
            query = query.where(logs.c.level >= min_level)
        with self._read() as conn:
            return [
                StoredLog(r.id, LogLine(r.run_id, r.task, r.attempt, r.at, r.level, r.message)) for r in conn.execute(query)
            ]

    def events(self, run_id: str, *, after: int = 0, limit: int = 10_000) -> list[tuple[int, Event]]:
        query = sa.select(events).where(events.c.run_id == run_id, events.c.id > after).order_by(events.c.id).limit(limit)
        with self._read() as conn:
            return [(r.id, Event(r.run_id, r.at, r.kind, r.task, r.status, _loads(r.data, {}))) for r in conn.execute(query)]


def _task_row(t: TaskRun) -> dict[str, Any]:
    return {
        "stage": t.stage,
        "status": str(t.status),
        "reason": t.reason,
        "started_at": t.started_at,
        "ended_at": t.ended_at,
        "error": t.error,
        "metrics": _dumps(t.metrics),
        "saved": _dumps(t.saved),
        "variables": _dumps(t.variables),
        "attempts": _dumps(t.attempts),
    }


def _task_from_row(r: Any) -> TaskRun:
    return TaskRun(
        name=r.name,
        stage=r.stage,
        status=TaskStatus(r.status),
        reason=r.reason,
        started_at=r.started_at,
        ended_at=r.ended_at,
        error=r.error,
        metrics=_loads(r.metrics, {}),
        saved=_loads(r.saved, {}),
        variables=_loads(r.variables, {}),
        attempts=_loads(r.attempts, []),
    )


def _run_from_row(r: Any) -> StoredRun:
    return StoredRun(
        id=r.id,
        workflow=r.workflow,
        version=r.version,
        status=r.status,
        started_at=r.started_at,
        ended_at=r.ended_at,
        variables=_loads(r.variables, {}),
        overrides=_loads(r.overrides, {}),
        definition=_loads(r.definition, {}),
        root=r.root,
        logical_time=r.logical_time,
        runner_pid=r.runner_pid,
        runner_host=r.runner_host,
        runner_started=r.runner_started,
        heartbeat_at=r.heartbeat_at,
        cancel_requested_at=r.cancel_requested_at,
        resumes=_loads(r.resumes, []),
        parent_run_id=r.parent_run_id,
        source=r.source,
    )


def _clean(exc: BaseException, url: str) -> str:
    """A driver error's first line, with the URL and password masked."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.replace(url, mask_url(url))
    password = sa.engine.make_url(url).password if "://" in url else None
    if password:
        text = text.replace(str(password), "***")
    return text


def sqlite_path(url: str) -> str | None:
    if not url.startswith("sqlite"):
        return None
    db = sa.engine.make_url(url).database
    return os.path.abspath(db) if db and db != ":memory:" else None


__all__ = ["HEAD_REVISION", "SqlRunStore", "mask_url", "schema"]
