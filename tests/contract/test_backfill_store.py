"""One conformance suite for the backfill store: memory (the reference), SQLite and PostgreSQL.

`BackfillStoreContract` states what every backend does: a backfill reads back with its times in
order and counts by status; a time is claimed once, oldest first, only while the backfill runs
and fewer than `max_active` times run; a claim of a dead driver is taken over once; a cancel
cancels the queued times; a backfill is done only when no time is queued or running.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowstage.stores.backfills import BackfillStore, BackfillTime, NewBackfill
from flowstage.stores.base import NewRun, RunStore
from flowstage.stores.memory import MemoryRunStore
from flowstage.stores.sql.store import SqlRunStore

T0 = 1_800_000_000.0
HOUR = 3600.0


def new_backfill(backfill_id: str = "b1", *, times: int = 4, max_active: int = 2, skipped: tuple[int, ...] = ()) -> NewBackfill:
    return NewBackfill(
        id=backfill_id,
        workflow="hourly",
        version=3,
        start=T0,
        end=T0 + (times - 1) * HOUR,
        max_active=max_active,
        reprocess="none",
        created_at=T0 + 10,
        created_by="me@host",
        times=[
            BackfillTime(T0 + i * HOUR, "skipped" if i in skipped else "queued", prior_run_id="r-old" if i in skipped else None)
            for i in range(times)
        ],
    )


def claim(store: BackfillStore, run_id: str, backfill_id: str = "b1", at: float = T0 + 20) -> BackfillTime | None:
    return store.claim_next(backfill_id, run_id=run_id, pid=100, host="h", at=at)


class BackfillStoreContract:
    """What every backfill store does. A backend's class provides `store`; the tests are shared."""

    @pytest.fixture
    def store(self) -> Iterator[RunStore]:
        raise NotImplementedError("each backend's test class opens its store")

    @pytest.fixture
    def backfills(self, store: RunStore) -> BackfillStore:
        found: BackfillStore = store.backfills
        return found

    def start(self, backfills: BackfillStore, backfill_id: str = "b1") -> None:
        assert backfills.set_status(backfill_id, "running", expect=["queued"], at=T0 + 11)

    def test_a_run_store_hands_out_one_backfill_store(self, store: RunStore) -> None:
        assert store.backfills is store.backfills

    def test_a_created_backfill_reads_back_with_its_times_in_order_and_counts(self, backfills: BackfillStore) -> None:
        backfills.create(new_backfill(times=4, skipped=(1,)))
        found = backfills.get("b1")
        assert found is not None
        assert (found.workflow, found.version, found.start, found.end, found.max_active, found.reprocess) == (
            "hourly",
            3,
            T0,
            T0 + 3 * HOUR,
            2,
            "none",
        )
        assert (found.status, found.created_at, found.updated_at, found.created_by) == ("queued", T0 + 10, T0 + 10, "me@host")
        assert [t.logical_time for t in found.times] == [T0 + i * HOUR for i in range(4)]
        assert [t.status for t in found.times] == ["queued", "skipped", "queued", "queued"]
        assert found.times[1].prior_run_id == "r-old"
        assert found.counts == {"queued": 3, "skipped": 1}
        assert backfills.get("nope") is None

    def test_list_is_newest_first_with_counts(self, backfills: BackfillStore) -> None:
        backfills.create(new_backfill("b1"))
        later = new_backfill("b2", times=2)
        backfills.create(NewBackfill(**{**later.__dict__, "created_at": T0 + 99}))
        listed = backfills.list()
        assert [b.id for b in listed] == ["b2", "b1"]
        assert listed[0].counts == {"queued": 2}
        assert listed[0].total == 2
        assert [b.id for b in backfills.list(limit=1)] == ["b2"]

    def test_times_are_claimed_oldest_first_only_while_running_and_below_max_active(self, backfills: BackfillStore) -> None:
        backfills.create(new_backfill(times=4, max_active=2, skipped=(0,)))
        assert claim(backfills, "r1") is None  # queued: not started yet
        self.start(backfills)
        first = claim(backfills, "r1")
        assert first is not None
        assert (first.logical_time, first.status, first.run_id, first.claimed_pid, first.claimed_host) == (
            T0 + HOUR,
            "running",
            "r1",
            100,
            "h",
        )
        second = claim(backfills, "r2")
        assert second is not None
        assert second.logical_time == T0 + 2 * HOUR
        assert claim(backfills, "r3") is None  # two running: max_active
        assert backfills.finish_time("b1", T0 + HOUR, run_id="r1", status="succeeded", at=T0 + 30)
        assert backfills.set_status("b1", "paused", expect=["running"], at=T0 + 31)
        assert claim(backfills, "r3") is None  # paused
        assert backfills.set_status("b1", "running", expect=["paused"], at=T0 + 32)
        third = claim(backfills, "r3")
        assert third is not None
        assert third.logical_time == T0 + 3 * HOUR
        assert claim(backfills, "r4") is None  # nothing queued is left
        found = backfills.get("b1")
        assert found is not None
        assert [(t.status, t.run_id) for t in found.times] == [
            ("skipped", None),
            ("succeeded", "r1"),
            ("running", "r2"),
            ("running", "r3"),
        ]

    def test_finish_time_takes_only_the_running_run_of_that_time(self, backfills: BackfillStore) -> None:
        backfills.create(new_backfill(times=2))
        self.start(backfills)
        assert claim(backfills, "r1") is not None
        assert not backfills.finish_time("b1", T0, run_id="other", status="failed", at=T0 + 30)
        assert backfills.finish_time("b1", T0, run_id="r1", status="failed", at=T0 + 30)
        assert not backfills.finish_time("b1", T0, run_id="r1", status="succeeded", at=T0 + 31)  # final already
        found = backfills.get("b1")
        assert found is not None
        assert (found.times[0].status, found.times[0].ended_at) == ("failed", T0 + 30)

    def test_a_backfill_is_done_only_when_nothing_is_queued_or_running(self, backfills: BackfillStore) -> None:
        backfills.create(new_backfill(times=2, max_active=2))
        self.start(backfills)
        assert not backfills.complete("b1", at=T0 + 40)
        assert claim(backfills, "r1") is not None
        assert claim(backfills, "r2") is not None
        assert backfills.finish_time("b1", T0, run_id="r1", status="succeeded", at=T0 + 30)
        assert not backfills.complete("b1", at=T0 + 40)
        assert backfills.finish_time("b1", T0 + HOUR, run_id="r2", status="failed", at=T0 + 31)
        assert backfills.complete("b1", at=T0 + 41)
        found = backfills.get("b1")
        assert found is not None
        assert (found.status, found.updated_at, found.counts) == ("done", T0 + 41, {"succeeded": 1, "failed": 1})
        assert not backfills.set_status("b1", "running", expect=["paused", "queued"], at=T0 + 50)

    def test_a_cancel_cancels_the_queued_times_and_leaves_running_ones_to_their_runs(self, backfills: BackfillStore) -> None:
        backfills.create(new_backfill(times=3))
        self.start(backfills)
        assert claim(backfills, "r1") is not None
        assert backfills.set_status("b1", "cancelled", expect=["running", "paused", "queued"], at=T0 + 60)
        found = backfills.get("b1")
        assert found is not None
        assert found.status == "cancelled"
        assert [t.status for t in found.times] == ["running", "cancelled", "cancelled"]
        assert backfills.finish_time("b1", T0, run_id="r1", status="cancelled", at=T0 + 61)
        assert claim(backfills, "r9") is None

    def test_a_dead_drivers_claim_is_taken_over_once(self, backfills: BackfillStore) -> None:
        backfills.create(new_backfill(times=1))
        self.start(backfills)
        claimed = claim(backfills, "r1")
        assert claimed is not None
        assert backfills.take_over("b1", claimed, pid=200, host="h2", at=T0 + 90)
        assert not backfills.take_over("b1", claimed, pid=300, host="h3", at=T0 + 91)  # the claim changed
        found = backfills.get("b1")
        assert found is not None
        assert (found.times[0].run_id, found.times[0].claimed_pid, found.times[0].claimed_host) == ("r1", 200, "h2")

    def test_concurrent_claims_start_each_time_once_and_never_more_than_max_active(self, store: RunStore) -> None:
        store.backfills.create(new_backfill(times=6, max_active=3))
        self.start(store.backfills)
        got: list[BackfillTime] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            for k in range(4):
                found = store.backfills.claim_next("b1", run_id=f"r{n}-{k}", pid=n, host="h", at=T0 + 20)
                if found is not None:
                    with lock:
                        got.append(found)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 3
        assert len({t.logical_time for t in got}) == 3

    def test_prior_runs_are_the_workflows_runs_in_the_range(self, store: RunStore) -> None:
        for run_id, workflow, at, started in (
            ("a", "hourly", T0, T0 + 5),
            ("b", "hourly", T0 + HOUR, T0 + 3),
            ("c", "hourly", T0 + 5 * HOUR, T0 + 4),
            ("d", "other", T0, T0 + 1),
        ):
            store.create_run(
                NewRun(
                    id=run_id,
                    workflow=workflow,
                    version=None,
                    definition={},
                    variables={},
                    overrides={},
                    root="/",
                    logical_time=at,
                    started_at=started,
                    runner_pid=1,
                    runner_host="h",
                    runner_started=0.0,
                    tasks=[],
                )
            )
        found = store.backfills.prior_runs("hourly", start=T0, end=T0 + 2 * HOUR)
        assert [(r.id, r.logical_time, r.status) for r in found] == [("b", T0 + HOUR, "running"), ("a", T0, "running")]


class TestMemoryBackfillStore(BackfillStoreContract):
    @pytest.fixture
    def store(self) -> RunStore:
        return MemoryRunStore()


class TestSqliteBackfillStore(BackfillStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[RunStore]:
        store = SqlRunStore(f"sqlite:///{tmp_path / 'store.db'}")
        yield store
        store.close()


@pytest.mark.postgres
class TestPostgresBackfillStore(BackfillStoreContract):
    @pytest.fixture
    def store(self, pg_schema_url: str) -> Iterator[RunStore]:
        store = SqlRunStore(pg_schema_url)
        yield store
        store.close()
