"""One conformance suite for the alert store: memory (the reference), SQLite and PostgreSQL.

Each firing is a record with the rule as written and the value seen, and an `alert_fired` event
in the run's log; a delivery settles it; `every:` reads the last one sent and counts those
suppressed since."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstage.stores.alerts import AlertStore
from flowstage.stores.base import NewRun
from flowstage.stores.memory import MemoryRunStore
from flowstage.stores.sql.store import SqlRunStore

T0 = 1_800_000_000.0
RULE = {"on": "failed", "notify": ["ops", "team"]}


def _run(run_id: str) -> NewRun:
    return NewRun(
        id=run_id, workflow="w", version=None, definition={}, variables={}, overrides={}, root="/", logical_time=T0,
        started_at=T0, runner_pid=1, runner_host="h", runner_started=T0, tasks=[],
    )  # fmt: skip


def _fire(alerts: AlertStore, run_id: str = "r1", notifier: str = "ops", at: float = T0 + 1, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "run_id": run_id, "workflow": "w", "rule": 0, "alert": RULE, "rule_key": "k0", "task": None, "status": "failed",
        "value": "failed", "notifier": notifier, "at": at,
    }  # fmt: skip
    args.update(kw)
    return alerts.add(**args)


class AlertStoreContract:
    @pytest.fixture
    def store(self) -> Iterator[Any]:
        raise NotImplementedError

    def test_a_firing_is_a_record_and_an_event_of_its_run(self, store: Any) -> None:
        store.create_run(_run("r1"))
        record = _fire(store.alerts, task="load", value={"memory_mb": 300.5})
        assert (record.run_id, record.alert, record.task, record.value, record.delivery, record.tries) == (
            "r1", RULE, "load", {"memory_mb": 300.5}, "pending", 0,
        )  # fmt: skip
        events = [e for _, e in store.events("r1") if e.kind == "alert_fired"]
        assert len(events) == 1
        assert events[0].data["alert_id"] == record.id
        assert events[0].data["notifier"] == "ops"
        assert store.alerts.for_run("r1") == [record]

    def test_a_delivery_settles_its_record_and_recent_lists_the_newest_first(self, store: Any) -> None:
        store.create_run(_run("r1"))
        first = _fire(store.alerts, notifier="ops")
        second = _fire(store.alerts, notifier="team", at=T0 + 2)
        store.alerts.settle(first.id, delivery="failed", tries=3, error="connection refused", at=T0 + 9, repeats=2)
        settled = store.alerts.for_run("r1")[0]
        assert (settled.delivery, settled.tries, settled.error, settled.delivered_at, settled.repeats) == (
            "failed", 3, "connection refused", T0 + 9, 2,
        )  # fmt: skip
        assert [r.id for r in store.alerts.recent()] == [second.id, first.id]
        assert store.alerts.recent(workflow="other") == []

    def test_every_reads_the_last_sent_and_counts_the_suppressed_since(self, store: Any) -> None:
        for run in ("r1", "r2", "r3"):
            store.create_run(_run(run))
        sent = _fire(store.alerts, "r1", at=T0 + 1)
        store.alerts.settle(sent.id, delivery="delivered", tries=1, error=None, at=T0 + 1)
        _fire(store.alerts, "r2", at=T0 + 60, delivery="suppressed")
        _fire(store.alerts, "r3", at=T0 + 120, delivery="suppressed")
        last = store.alerts.last_sent("w", "k0", "ops")
        assert last is not None
        assert last.id == sent.id
        assert store.alerts.suppressed_since("w", "k0", "ops", T0 + 1) == 2
        assert store.alerts.suppressed_since("w", "k0", "ops", T0 + 100) == 1
        assert store.alerts.last_sent("w", "k0", "team") is None


class TestMemoryAlertStore(AlertStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[Any]:
        opened = MemoryRunStore()
        yield opened
        opened.close()


class SqlAlertStoreContract(AlertStoreContract):
    @pytest.fixture
    def store(self, url: str) -> Iterator[Any]:
        opened = SqlRunStore(url)
        yield opened
        opened.close()


class TestSqliteAlertStore(SqlAlertStoreContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'store.db'}"


class TestPostgresAlertStore(SqlAlertStoreContract):
    @pytest.fixture
    def url(self, pg_schema_url: str) -> str:
        return pg_schema_url
