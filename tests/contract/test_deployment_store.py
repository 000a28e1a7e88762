"""The deployment store on SQLite and PostgreSQL: versions, activations, and fires claimed once.

The claims are where exactly-once starts come from (docs/adr/0004), so they are held to the same
behaviour on both databases, with threads racing on one key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstage.stores.base import NewRun
from flowstage.stores.deployments import ActiveRun, Claim, Fire
from flowstage.stores.sql.deployments import SqlDeploymentStore
from flowstage.stores.sql.store import SqlRunStore

T0 = 1_800_000_000.0
SCHEDULED = {"name": "w", "trigger": {"schedule": "0 * * * *"}, "tasks": [{"name": "a", "shell": "echo"}]}


def alive(_run: ActiveRun) -> bool:
    return True


def fire(logical_time: float, *, run_id: str, kind: str = "schedule", consumed: list[str] | None = None) -> Fire:
    return Fire("w", logical_time, kind, 1, run_id, fired_at=T0, fired_pid=1, fired_host="h", consumed=consumed or [])


def ended_run(store: SqlRunStore, run_id: str, workflow: str, status: str, at: float) -> None:
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
            started_at=at,
            runner_pid=1,
            runner_host="h",
            runner_started=at,
            tasks=[],
        )
    )
    store.finish_orphan(run_id, status=status, at=at + 1, reason="ended")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def store(url: str) -> Iterator[SqlRunStore]:
    s = SqlRunStore(url)
    yield s
    s.close()


def test_deploy_makes_a_version_only_for_new_content_and_rollback_keeps_the_history(store: SqlRunStore) -> None:
    d = SqlDeploymentStore(store)
    first = d.deploy(name="w", definition=SCHEDULED, text="v1", files={}, source="w.yaml", at=T0, by="me")
    same = d.deploy(name="w", definition=SCHEDULED, text="v1", files={}, source="w.yaml", at=T0 + 1, by="me")
    changed = d.deploy(
        name="w", definition=SCHEDULED, text="v1", files={"q.sql": "select 2"}, source="w.yaml", at=T0 + 2, by="me"
    )
    assert (first.version, first.created, same.created, same.activated, changed.version) == (1, True, False, False, 2)
    back = d.rollback("w", 1, at=T0 + 3, by="me")
    assert (back.version, back.previous, back.activated) == (1, 2, True)
    current = d.workflow("w")
    assert current is not None
    assert (current.current_version, current.versions) == (1, 2)
    assert current.schedule_since == T0  # the schedule never changed: it counts from its first deployment
    assert [(a.version, a.action) for a in d.activations("w")] == [(1, "rollback"), (2, "deploy"), (1, "deploy")]
    assert [v.version for v in d.versions("w")] == [2, 1]
    version = d.version("w", 2)
    assert version is not None
    assert version.files == {"q.sql": "select 2"}


def test_a_due_time_is_claimed_once_however_many_try_at_once(store: SqlRunStore, url: str) -> None:
    SqlDeploymentStore(store).deploy(name="w", definition=SCHEDULED, text="v1", files={}, source=None, at=T0, by=None)
    claims: list[Claim] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        own = SqlRunStore(url)
        try:
            got = SqlDeploymentStore(own).claim_fire(fire(T0 + 3600, run_id=f"r{i}"), max_active=100, alive=alive)
        finally:
            own.close()
        with lock:
            claims.append(got)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claims) == sorted([Claim.CLAIMED] + [Claim.TAKEN] * 7)
    assert [f.logical_time for f in SqlDeploymentStore(store).fires("w")] == [T0 + 3600]


def test_an_older_time_is_not_fired_after_a_later_one(store: SqlRunStore) -> None:
    d = SqlDeploymentStore(store)
    assert d.claim_fire(fire(T0 + 7200, run_id="r2"), max_active=10, alive=alive) is Claim.CLAIMED
    assert d.claim_fire(fire(T0 + 3600, run_id="r1"), max_active=10, alive=alive) is Claim.TAKEN
    assert d.last_fire("w") == T0 + 7200
    assert d.last_fires() == {"w": T0 + 7200}


def test_max_active_runs_counts_live_running_runs_and_fires_whose_run_is_not_recorded_yet(store: SqlRunStore) -> None:
    d = SqlDeploymentStore(store)
    assert d.claim_fire(fire(T0 + 60, run_id="r1"), max_active=1, alive=alive) is Claim.CLAIMED
    assert d.claim_fire(fire(T0 + 120, run_id="r2"), max_active=1, alive=alive) is Claim.BUSY  # r1 not recorded yet
    ended_run(store, "r1", "w", "succeeded", T0)
    assert d.claim_fire(fire(T0 + 120, run_id="r2"), max_active=1, alive=alive) is Claim.CLAIMED
    assert [f.run_id for f in d.orphan_fires(since=T0 - 1)] == ["r2"]
    taken_over = d.orphan_fires(since=T0 - 1)[0]
    assert d.take_over(taken_over, at=T0 + 500, pid=2, host="h")
    assert not d.take_over(taken_over, at=T0 + 501, pid=3, host="h")  # compare-and-set: one owner


def test_claim_fires_takes_a_batch_in_one_transaction(store: SqlRunStore) -> None:
    d = SqlDeploymentStore(store)
    claims = d.claim_fires([(fire(T0 + 60 * i, run_id=f"r{i}"), 2) for i in (3, 1, 2)], alive=alive)
    assert claims == [Claim.BUSY, Claim.CLAIMED, Claim.CLAIMED]  # claimed in time order; the third finds two pending


def test_a_watched_run_is_consumed_by_one_event_fire(store: SqlRunStore, url: str) -> None:
    d = SqlDeploymentStore(store)
    for i, wf in enumerate(["a", "b", "a"]):
        ended_run(store, f"x{i}", wf, "succeeded", T0 + i)
    pending = d.pending_events("w", watched=["a", "b"], statuses=["succeeded"], since=T0 - 10)
    assert [r.id for r in pending] == ["x0", "x1", "x2"]
    first = fire(T0 + 2, run_id="e1", kind="event", consumed=["x0", "x1"])
    assert d.claim_fire(first, max_active=10, alive=alive) is Claim.CLAIMED
    overlapping = fire(T0 + 3, run_id="e2", kind="event", consumed=["x1", "x2"])
    assert d.claim_fire(overlapping, max_active=10, alive=alive) is Claim.TAKEN  # x1 was consumed: nothing of it lands
    assert [f.run_id for f in d.fires("w")] == ["e1"]
    assert [r.id for r in d.pending_events("w", watched=["a", "b"], statuses=["succeeded"], since=T0 - 10)] == ["x2"]

    results: list[Any] = []

    def claim(i: int) -> None:
        own = SqlRunStore(url)
        try:
            results.append(
                SqlDeploymentStore(own).claim_fire(
                    fire(T0 + 4, run_id=f"e{10 + i}", kind="event", consumed=["x2"]), max_active=10, alive=alive
                )
            )
        finally:
            own.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(Claim.CLAIMED) == 1
    assert d.pending_events("w", watched=["a", "b"], statuses=["succeeded"], since=T0 - 10) == []
