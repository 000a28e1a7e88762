"""Alerts fired (`AlertStore`, stores/alerts.py) in a SQL run store's database: the table of
migration 0005, and an `alert_fired` event in the same transaction as each row."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flowstage.stores.alerts import AlertRecord, fired_event

if TYPE_CHECKING:
    from flowstage.stores.sql.store import SqlRunStore

_COLUMNS = (
    "id, run_id, workflow, rule, alert, rule_key, task, status, value, notifier, fired_at, delivery, tries, error, "
    "delivered_at, repeats"
)


class SqlAlertStore:
    """Alerts kept in a SQL run store's database."""

    def __init__(self, store: SqlRunStore) -> None:
        self.store = store

    def add(
        self,
        *,
        run_id: str,
        workflow: str,
        rule: int,
        alert: dict[str, Any],
        rule_key: str,
        task: str | None,
        status: str,
        value: Any,
        notifier: str,
        at: float,
        delivery: str = "pending",
    ) -> AlertRecord:
        params = {
            "run_id": run_id,
            "workflow": workflow,
            "rule": rule,
            "alert": json.dumps(alert, sort_keys=True),
            "rule_key": rule_key,
            "task": task,
            "status": status,
            "value": json.dumps(value),
            "notifier": notifier,
            "at": at,
            "delivery": delivery,
        }
        with self.store.write_transaction() as tx:
            tx.execute(
                "INSERT INTO alerts (run_id, workflow, rule, alert, rule_key, task, status, value, notifier, fired_at, "
                "delivery, tries, repeats) VALUES (:run_id, :workflow, :rule, :alert, :rule_key, :task, :status, :value, "
                ":notifier, :at, :delivery, 0, 0)",
                params,
            )
            rows = tx.query(
                "SELECT max(id) AS id FROM alerts WHERE run_id = :run_id AND rule = :rule AND notifier = :notifier",
                {"run_id": run_id, "rule": rule, "notifier": notifier},
            )
            record = AlertRecord(
                int(rows[0]["id"]), run_id, workflow, rule, alert, rule_key, task, status, value, notifier, at, delivery
            )
            self.store.add_events_in(tx, [fired_event(record)])
        return record

    def settle(self, alert_id: int, *, delivery: str, tries: int, error: str | None, at: float, repeats: int = 0) -> None:
        with self.store.write_transaction() as tx:
            tx.execute(
                "UPDATE alerts SET delivery = :delivery, tries = :tries, error = :error, delivered_at = :at, repeats = :repeats "
                "WHERE id = :id",
                {"delivery": delivery, "tries": tries, "error": error, "at": at, "repeats": repeats, "id": alert_id},
            )

    def for_run(self, run_id: str) -> list[AlertRecord]:
        with self.store.read_one() as tx:
            rows = tx.query(f"SELECT {_COLUMNS} FROM alerts WHERE run_id = :run_id ORDER BY id", {"run_id": run_id})
        return [_record(r) for r in rows]

    def recent(self, *, workflow: str | None = None, limit: int = 100) -> list[AlertRecord]:
        where, params = ("WHERE workflow = :workflow", {"workflow": workflow}) if workflow is not None else ("", {})
        with self.store.read_one() as tx:
            rows = tx.query(
                f"SELECT {_COLUMNS} FROM alerts {where} ORDER BY id DESC LIMIT :limit", {**params, "limit": int(limit)}
            )
        return [_record(r) for r in rows]

    def last_sent(self, workflow: str, rule_key: str, notifier: str) -> AlertRecord | None:
        with self.store.read_one() as tx:
            rows = tx.query(
                f"SELECT {_COLUMNS} FROM alerts WHERE workflow = :workflow AND rule_key = :key AND notifier = :notifier "
                "AND delivery <> 'suppressed' ORDER BY id DESC LIMIT 1",
                {"workflow": workflow, "key": rule_key, "notifier": notifier},
            )
        return _record(rows[0]) if rows else None

    def suppressed_since(self, workflow: str, rule_key: str, notifier: str, since: float) -> int:
        with self.store.read_one() as tx:
            rows = tx.query(
                "SELECT count(*) AS n FROM alerts WHERE workflow = :workflow AND rule_key = :key AND notifier = :notifier "
                "AND delivery = 'suppressed' AND fired_at > :since",
                {"workflow": workflow, "key": rule_key, "notifier": notifier, "since": since},
            )
        return int(rows[0]["n"])


def _record(r: Any) -> AlertRecord:
    return AlertRecord(
        id=int(r["id"]),
        run_id=r["run_id"],
        workflow=r["workflow"],
        rule=int(r["rule"]),
        alert=json.loads(r["alert"]),
        rule_key=r["rule_key"],
        task=r["task"],
        status=r["status"],
        value=json.loads(r["value"]) if r["value"] is not None else None,
        notifier=r["notifier"],
        fired_at=r["fired_at"],
        delivery=r["delivery"],
        tries=int(r["tries"]),
        error=r["error"],
        delivered_at=r["delivered_at"],
        repeats=int(r["repeats"]),
    )


__all__ = ["SqlAlertStore"]
