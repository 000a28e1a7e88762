"""Backfills (`BackfillStore`, stores/backfills.py) in a SQL run store's database.

The tables of migration 0006: `backfills`, one row per backfill, and `backfill_times`, one row
per logical time keyed by (backfill_id, logical_time). Every change of a backfill's times first
locks its `backfills` row (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
serializes writers), so a claim checks the backfill's status and `max_active` and takes the
oldest queued time atomically: two drivers never claim one time, nor more than `max_active`.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flowstage.stores.backfills import (
    TIME_CANCELLED,
    TIME_QUEUED,
    TIME_RUNNING,
    Backfill,
    BackfillStatus,
    BackfillTime,
    NewBackfill,
    PriorRun,
)

if TYPE_CHECKING:  # the run store opens these lazily: a type, not an import
    from flowstage.stores.sql.store import SqlRunStore

_HEAD = "id, workflow, version, start_time, end_time, max_active, reprocess, status, created_at, updated_at, created_by"
_TIME = "logical_time, status, run_id, prior_run_id, claimed_pid, claimed_host, claimed_at, ended_at"


def _in(prefix: str, values: Sequence[Any], params: dict[str, Any]) -> str:
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return "(" + ", ".join(names) + ")"


class SqlBackfillStore:
    """Backfills kept in a SQL run store's database."""

    def __init__(self, store: SqlRunStore) -> None:
        self.store = store
        self._lock_clause = "" if store.is_sqlite else " FOR UPDATE"

    def _lock(self, tx: Any, backfill_id: str) -> dict[str, Any] | None:
        rows = tx.query(f"SELECT status, max_active FROM backfills WHERE id = :id{self._lock_clause}", {"id": backfill_id})
        return dict(rows[0]) if rows else None

    def create(self, backfill: NewBackfill) -> None:
        with self.store.write_transaction() as tx:
            tx.execute(
                f"INSERT INTO backfills ({_HEAD}) VALUES (:id, :w, :v, :s, :e, :m, :r, :st, :at, :at, :by)",
                {
                    "id": backfill.id,
                    "w": backfill.workflow,
                    "v": backfill.version,
                    "s": backfill.start,
                    "e": backfill.end,
                    "m": backfill.max_active,
                    "r": backfill.reprocess,
                    "st": BackfillStatus.QUEUED.value,
                    "at": backfill.created_at,
                    "by": backfill.created_by,
                },
            )
            if backfill.times:
                tx.executemany_values(
                    "INSERT INTO backfill_times (backfill_id, logical_time, status, prior_run_id) VALUES (:b, :t, :s, :p)",
                    [(backfill.id, t.logical_time, t.status, t.prior_run_id) for t in backfill.times],
                )

    def _counts(self, tx: Any, ids: Sequence[str]) -> dict[str, dict[str, int]]:
        if not ids:
            return {}
        params: dict[str, Any] = {}
        rows = tx.query(
            "SELECT backfill_id, status, COUNT(*) AS n FROM backfill_times "
            f"WHERE backfill_id IN {_in('b', ids, params)} GROUP BY backfill_id, status",
            params,
        )
        found: dict[str, dict[str, int]] = {i: {} for i in ids}
        for r in rows:
            found[r["backfill_id"]][r["status"]] = int(r["n"])
        return found

    def get(self, backfill_id: str) -> Backfill | None:
        with self.store.read_transaction() as tx:
            heads = tx.query(f"SELECT {_HEAD} FROM backfills WHERE id = :id", {"id": backfill_id})
            if not heads:
                return None
            times = tx.query(
                f"SELECT {_TIME} FROM backfill_times WHERE backfill_id = :id ORDER BY logical_time", {"id": backfill_id}
            )
        shown = tuple(_time(r) for r in times)
        counts: dict[str, int] = {}
        for t in shown:
            counts[t.status] = counts.get(t.status, 0) + 1
        return _head(heads[0], counts, shown)

    def list(self, *, limit: int = 100) -> builtins.list[Backfill]:
        with self.store.read_transaction() as tx:
            heads = tx.query(f"SELECT {_HEAD} FROM backfills ORDER BY created_at DESC, id LIMIT :n", {"n": int(limit)})
            counts = self._counts(tx, [h["id"] for h in heads])
        return [_head(h, counts.get(h["id"], {}), ()) for h in heads]

    def set_status(self, backfill_id: str, status: str, *, expect: Sequence[str], at: float) -> bool:
        if not expect:
            return False
        with self.store.write_transaction() as tx:
            row = self._lock(tx, backfill_id)
            if row is None or row["status"] not in expect:
                return False
            tx.execute(
                "UPDATE backfills SET status = :s, updated_at = :at WHERE id = :id", {"s": status, "at": at, "id": backfill_id}
            )
            if status == BackfillStatus.CANCELLED.value:
                tx.execute(
                    "UPDATE backfill_times SET status = :c, ended_at = :at WHERE backfill_id = :id AND status = :q",
                    {"c": TIME_CANCELLED, "at": at, "id": backfill_id, "q": TIME_QUEUED},
                )
        return True

    def claim_next(self, backfill_id: str, *, run_id: str, pid: int, host: str, at: float) -> BackfillTime | None:
        with self.store.write_transaction() as tx:
            row = self._lock(tx, backfill_id)
            if row is None or row["status"] != BackfillStatus.RUNNING.value:
                return None
            running = tx.query(
                "SELECT COUNT(*) AS n FROM backfill_times WHERE backfill_id = :id AND status = :r",
                {"id": backfill_id, "r": TIME_RUNNING},
            )
            if int(running[0]["n"]) >= int(row["max_active"]):
                return None
            first = tx.query(
                f"SELECT {_TIME} FROM backfill_times WHERE backfill_id = :id AND status = :q ORDER BY logical_time LIMIT 1",
                {"id": backfill_id, "q": TIME_QUEUED},
            )
            if not first:
                return None
            at_time = float(first[0]["logical_time"])
            count = tx.execute(
                "UPDATE backfill_times SET status = :r, run_id = :run, claimed_pid = :pid, claimed_host = :host, "
                "claimed_at = :at, ended_at = NULL WHERE backfill_id = :id AND logical_time = :t AND status = :q",
                {
                    "r": TIME_RUNNING,
                    "run": run_id,
                    "pid": pid,
                    "host": host,
                    "at": at,
                    "id": backfill_id,
                    "t": at_time,
                    "q": TIME_QUEUED,
                },
            )
            if count != 1:  # pragma: no cover - the row lock makes this impossible
                return None
            tx.execute("UPDATE backfills SET updated_at = :at WHERE id = :id", {"at": at, "id": backfill_id})
        return BackfillTime(
            logical_time=at_time,
            status=TIME_RUNNING,
            run_id=run_id,
            prior_run_id=first[0]["prior_run_id"],
            claimed_pid=pid,
            claimed_host=host,
            claimed_at=at,
        )

    def take_over(self, backfill_id: str, time: BackfillTime, *, pid: int, host: str, at: float) -> bool:
        params: dict[str, Any] = {
            "pid": pid,
            "host": host,
            "at": at,
            "id": backfill_id,
            "t": time.logical_time,
            "r": TIME_RUNNING,
            "run": time.run_id,
        }
        checks = []
        for column, value in (
            ("claimed_pid", time.claimed_pid),
            ("claimed_host", time.claimed_host),
            ("claimed_at", time.claimed_at),
        ):
            if value is None:
                checks.append(f"{column} IS NULL")
            else:
                params[f"old_{column}"] = value
                checks.append(f"{column} = :old_{column}")
        with self.store.write_transaction() as tx:
            count = tx.execute(
                "UPDATE backfill_times SET claimed_pid = :pid, claimed_host = :host, claimed_at = :at "
                "WHERE backfill_id = :id AND logical_time = :t AND status = :r AND run_id = :run AND " + " AND ".join(checks),
                params,
            )
        return bool(count == 1)

    def finish_time(self, backfill_id: str, logical_time: float, *, run_id: str, status: str, at: float) -> bool:
        with self.store.write_transaction() as tx:
            count = tx.execute(
                "UPDATE backfill_times SET status = :s, ended_at = :at "
                "WHERE backfill_id = :id AND logical_time = :t AND status = :r AND run_id = :run",
                {"s": status, "at": at, "id": backfill_id, "t": logical_time, "r": TIME_RUNNING, "run": run_id},
            )
            if count == 1:
                tx.execute("UPDATE backfills SET updated_at = :at WHERE id = :id", {"at": at, "id": backfill_id})
        return bool(count == 1)

    def complete(self, backfill_id: str, *, at: float) -> bool:
        with self.store.write_transaction() as tx:
            row = self._lock(tx, backfill_id)
            if row is None or row["status"] != BackfillStatus.RUNNING.value:
                return False
            left = tx.query(
                "SELECT COUNT(*) AS n FROM backfill_times WHERE backfill_id = :id AND status IN (:q, :r)",
                {"id": backfill_id, "q": TIME_QUEUED, "r": TIME_RUNNING},
            )
            if int(left[0]["n"]):
                return False
            tx.execute(
                "UPDATE backfills SET status = :s, updated_at = :at WHERE id = :id",
                {"s": BackfillStatus.DONE.value, "at": at, "id": backfill_id},
            )
        return True

    def prior_runs(self, workflow: str, *, start: float, end: float) -> builtins.list[PriorRun]:
        with self.store.read_transaction() as tx:
            rows = tx.query(
                "SELECT id, logical_time, status, started_at FROM runs "
                "WHERE workflow = :w AND logical_time >= :s AND logical_time <= :e ORDER BY started_at, id",
                {"w": workflow, "s": start, "e": end},
            )
        return [PriorRun(r["id"], float(r["logical_time"]), r["status"], float(r["started_at"])) for r in rows]


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _time(r: Any) -> BackfillTime:
    return BackfillTime(
        logical_time=float(r["logical_time"]),
        status=r["status"],
        run_id=r["run_id"],
        prior_run_id=r["prior_run_id"],
        claimed_pid=None if r["claimed_pid"] is None else int(r["claimed_pid"]),
        claimed_host=r["claimed_host"],
        claimed_at=_opt_float(r["claimed_at"]),
        ended_at=_opt_float(r["ended_at"]),
    )


def _head(r: Any, counts: dict[str, int], times: tuple[BackfillTime, ...]) -> Backfill:
    return Backfill(
        id=r["id"],
        workflow=r["workflow"],
        version=None if r["version"] is None else int(r["version"]),
        start=float(r["start_time"]),
        end=float(r["end_time"]),
        max_active=int(r["max_active"]),
        reprocess=r["reprocess"],
        status=r["status"],
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
        created_by=r["created_by"],
        counts=dict(counts),
        times=times,
    )


__all__ = ["SqlBackfillStore"]
