"""One conformance suite for the deployment store: memory (the reference), SQLite and PostgreSQL.

`DeploymentStoreContract` states what a deployment store does: versions, activations, and fires
claimed once. The claims are where exactly-once starts come from (docs/adr/0004), so every
backend is held to them with threads racing on one key, each through its own handle on the
store (`peer`: a second connection to the same database, or the same memory store).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstage.errors import NotFoundError
from flowstage.stores.base import NewRun, RunStore
from flowstage.stores.deployments import ActiveRun, Claim, DeploymentStore, Fire
from flowstage.stores.memory import MemoryRunStore
from flowstage.stores.memory_deployments import MemoryDeploymentStore
from flowstage.stores.sql.deployments import SqlDeploymentStore
from flowstage.stores.sql.store import SqlRunStore

T0 = 1_800_000_000.0
SCHEDULED = {"name": "w", "trigger": {"schedule": "0 * * * *"}, "tasks": [{"name": "a", "shell": "echo"}]}
HALF_HOURLY = {"name": "w", "trigger": {"schedule": "*/30 * * * *"}, "tasks": [{"name": "a", "shell": "echo"}]}
ON_DEMAND = {"name": "w", "tasks": [{"name": "a", "shell": "echo"}]}
AFTER_A = {"name": "w", "trigger": {"after": {"workflows": ["a"]}}, "tasks": [{"name": "a", "shell": "echo"}]}

Peer = Callable[[], contextlib.AbstractContextManager[DeploymentStore]]


def alive(_run: ActiveRun) -> bool:
    return True


def fire(
    logical_time: float, *, run_id: str, kind: str = "schedule", consumed: list[str] | None = None, workflow: str = "w"
) -> Fire:
    return Fire(workflow, logical_time, kind, 1, run_id, fired_at=T0, fired_pid=1, fired_host="h", consumed=consumed or [])


def started_run(store: RunStore, run_id: str, workflow: str, at: float) -> None:
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


def ended_run(store: RunStore, run_id: str, workflow: str, status: str, at: float) -> None:
    started_run(store, run_id, workflow, at)
    store.finish_orphan(run_id, status=status, at=at + 1, reason="ended")


def deploy(d: DeploymentStore, definition: dict[str, Any], text: str, at: float, files: dict[str, str] | None = None) -> Any:
    return d.deploy(name="w", definition=definition, text=text, files=files or {}, source="w.yaml", at=at, by="me")


class DeploymentStoreContract:
    """What every deployment store does. A backend's class provides `store` and `peer`; the tests are shared."""

    @pytest.fixture
    def store(self) -> Iterator[RunStore]:
        raise NotImplementedError("each backend's test class opens its store")

    @pytest.fixture
    def peer(self, store: RunStore) -> Peer:
        raise NotImplementedError("each backend's test class says how a second handle on the store opens")

    @pytest.fixture
    def d(self, store: RunStore) -> DeploymentStore:
        found: DeploymentStore = store.deployments
        return found

    # ------------------------------------------------------------------ versions
    def test_a_run_store_hands_out_one_deployment_store(self, store: RunStore) -> None:
        assert store.deployments is store.deployments

    def test_deploy_makes_a_version_only_for_new_content_and_rollback_keeps_the_history(self, d: DeploymentStore) -> None:
        first = deploy(d, SCHEDULED, "v1", T0)
        same = deploy(d, SCHEDULED, "v1", T0 + 1)
        changed = deploy(d, SCHEDULED, "v1", T0 + 2, files={"q.sql": "select 2"})
        assert (first.version, first.created, same.created, same.activated, changed.version) == (1, True, False, False, 2)
        back = d.rollback("w", 1, at=T0 + 3, by="me")
        assert (back.version, back.previous, back.activated) == (1, 2, True)
        current = d.workflow("w")
        assert current is not None
        assert (current.current_version, current.versions, current.activated_at) == (1, 2, T0 + 3)
        assert current.schedule_since == T0  # the schedule never changed: it counts from its first deployment
        assert [(a.version, a.previous, a.action, a.at) for a in d.activations("w")] == [
            (1, 2, "rollback", T0 + 3),
            (2, 1, "deploy", T0 + 2),
            (1, None, "deploy", T0),
        ]
        assert [v.version for v in d.versions("w")] == [2, 1]
        version = d.version("w", 2)
        assert version is not None
        assert (version.files, version.text, version.source, version.deployed_by) == ({"q.sql": "select 2"}, "v1", "w.yaml", "me")
        assert version.definition == SCHEDULED

    def test_deploying_the_content_of_an_older_version_makes_it_current_again(self, d: DeploymentStore) -> None:
        deploy(d, SCHEDULED, "v1", T0)
        deploy(d, SCHEDULED, "v2", T0 + 1)
        again = deploy(d, SCHEDULED, "v1", T0 + 2)
        assert (again.version, again.previous, again.created, again.activated) == (1, 2, False, True)
        current = d.workflow("w")
        assert current is not None
        assert (current.current_version, current.versions) == (1, 2)

    def test_a_version_keeps_its_files_for_the_runs_of_that_version(self, d: DeploymentStore) -> None:
        deploy(d, SCHEDULED, "v1", T0, files={"sql/q.sql": "select 1", "tasks/t.py": "def f():\n    return 'é'\n"})
        deploy(d, SCHEDULED, "v1", T0 + 1, files={"sql/q.sql": "select 2"})
        assert d.version_files("w", 1) == {"sql/q.sql": "select 1", "tasks/t.py": "def f():\n    return 'é'\n"}
        assert d.version_files("w", 2) == {"sql/q.sql": "select 2"}
        with pytest.raises(NotFoundError, match="no version 3"):
            d.version_files("w", 3)
        with pytest.raises(NotFoundError):
            d.version_files("never", 1)

    def test_what_the_store_returns_is_a_copy(self, d: DeploymentStore) -> None:
        files = {"q.sql": "select 1"}
        definition = {**SCHEDULED, "tags": ["a"]}
        deploy(d, definition, "v1", T0, files=files)
        files["q.sql"] = "drop table x"
        definition["tags"].append("b")
        version = d.version("w", 1)
        assert version is not None
        version.files["q.sql"] = "edited"
        version.definition["tags"].append("c")
        assert d.version_files("w", 1) == {"q.sql": "select 1"}
        current = d.workflow("w")
        assert current is not None
        assert current.definition["tags"] == ["a"]

    def test_rollback_to_a_version_that_does_not_exist_is_not_found(self, d: DeploymentStore) -> None:
        with pytest.raises(NotFoundError, match="never deployed"):
            d.rollback("w", 1, at=T0, by=None)
        deploy(d, SCHEDULED, "v1", T0)
        with pytest.raises(NotFoundError, match=r"no version 7 \(versions 1 to 1\)"):
            d.rollback("w", 7, at=T0 + 1, by=None)
        same = d.rollback("w", 1, at=T0 + 2, by=None)
        assert (same.activated, len(d.activations("w"))) == (False, 1)

    def test_workflows_list_the_latest_activated_first_and_the_stamp_moves_with_each_change(self, d: DeploymentStore) -> None:
        empty = d.stamp()
        assert d.workflows() == []
        d.deploy(name="b", definition=ON_DEMAND, text="b", files={}, source=None, at=T0, by=None)
        after_b = d.stamp()
        d.deploy(name="a", definition=ON_DEMAND, text="a", files={}, source=None, at=T0 + 1, by=None)
        d.deploy(name="c", definition=ON_DEMAND, text="c", files={}, source=None, at=T0 + 1, by=None)
        assert [w.name for w in d.workflows()] == ["a", "c", "b"]
        assert len({empty, after_b, d.stamp()}) == 3
        unchanged = d.stamp()
        d.deploy(name="a", definition=ON_DEMAND, text="a", files={}, source=None, at=T0 + 5, by=None)
        assert d.stamp() == unchanged  # same content: no activation
        assert d.workflow("nope") is None
        assert d.versions("nope") == []
        assert d.version("a", 9) is None

    def test_a_changed_trigger_counts_from_its_own_deployment(self, d: DeploymentStore) -> None:
        deploy(d, SCHEDULED, "v1", T0)
        deploy(d, {**SCHEDULED, "description": "same trigger"}, "v2", T0 + 10)
        current = d.workflow("w")
        assert current is not None
        assert (current.schedule_since, current.event_since) == (T0, None)
        deploy(d, HALF_HOURLY, "v3", T0 + 20)
        current = d.workflow("w")
        assert current is not None
        assert current.schedule_since == T0 + 20
        deploy(d, AFTER_A, "v4", T0 + 30)
        current = d.workflow("w")
        assert current is not None
        assert (current.schedule_since, current.event_since) == (None, T0 + 30)
        d.rollback("w", 3, at=T0 + 40, by=None)
        current = d.workflow("w")
        assert current is not None
        assert (current.schedule_since, current.event_since) == (T0 + 40, None)

    # ------------------------------------------------------------------ fires
    def test_a_due_time_is_claimed_once_however_many_try_at_once(self, d: DeploymentStore, peer: Peer) -> None:
        deploy(d, SCHEDULED, "v1", T0)
        claims: list[Claim] = []
        lock = threading.Lock()
        start = threading.Barrier(8)

        def claim(i: int) -> None:
            with peer() as own:
                start.wait(timeout=30)
                got = own.claim_fire(fire(T0 + 3600, run_id=f"r{i}"), max_active=100, alive=alive)
            with lock:
                claims.append(got)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(claims) == sorted([Claim.CLAIMED] + [Claim.TAKEN] * 7)
        assert [f.logical_time for f in d.fires("w")] == [T0 + 3600]

    def test_an_older_time_is_not_fired_after_a_later_one(self, d: DeploymentStore) -> None:
        assert d.claim_fire(fire(T0 + 7200, run_id="r2"), max_active=10, alive=alive) is Claim.CLAIMED
        assert d.claim_fire(fire(T0 + 3600, run_id="r1"), max_active=10, alive=alive) is Claim.TAKEN
        assert d.claim_fire(fire(T0 + 7200, run_id="r3"), max_active=10, alive=alive) is Claim.TAKEN
        assert d.last_fire("w") == T0 + 7200
        assert d.last_fire("w", "event") is None
        assert d.last_fires() == {"w": T0 + 7200}
        assert d.last_fires("event") == {}

    def test_fires_are_listed_the_latest_first_with_what_they_recorded(self, d: DeploymentStore) -> None:
        for i in (1, 3, 2):
            assert d.claim_fire(fire(T0 + 60 * i, run_id=f"r{i}"), max_active=10, alive=alive) in (Claim.CLAIMED, Claim.TAKEN)
        fires = d.fires("w")
        assert [f.run_id for f in fires] == ["r3", "r1"]  # r2 came after a later time: not fired
        assert (fires[0].kind, fires[0].version, fires[0].fired_at, fires[0].fired_pid, fires[0].fired_host) == (
            "schedule",
            1,
            T0,
            1,
            "h",
        )
        assert [f.run_id for f in d.fires("w", limit=1)] == ["r3"]
        assert d.fires("other") == []

    def test_max_active_runs_counts_live_running_runs_and_fires_whose_run_is_not_recorded_yet(
        self, store: RunStore, d: DeploymentStore
    ) -> None:
        assert d.claim_fire(fire(T0 + 60, run_id="r1"), max_active=1, alive=alive) is Claim.CLAIMED
        assert d.claim_fire(fire(T0 + 120, run_id="r2"), max_active=1, alive=alive) is Claim.BUSY  # r1 not recorded yet
        ended_run(store, "r1", "w", "succeeded", T0)
        assert d.claim_fire(fire(T0 + 120, run_id="r2"), max_active=1, alive=alive) is Claim.CLAIMED
        assert [f.run_id for f in d.orphan_fires(since=T0 - 1)] == ["r2"]
        taken_over = d.orphan_fires(since=T0 - 1)[0]
        assert d.take_over(taken_over, at=T0 + 500, pid=2, host="h")
        assert not d.take_over(taken_over, at=T0 + 501, pid=3, host="h")  # compare-and-set: one owner
        owned = d.orphan_fires(since=T0 - 1)[0]
        assert (owned.fired_at, owned.fired_pid) == (T0 + 500, 2)
        assert d.orphan_fires(since=T0 + 500) == []

    def test_a_running_run_counts_against_max_active_runs_only_while_its_runner_lives(
        self, store: RunStore, d: DeploymentStore
    ) -> None:
        started_run(store, "r1", "w", T0)
        seen: list[ActiveRun] = []

        def dead(run: ActiveRun) -> bool:
            seen.append(run)
            return False

        assert d.claim_fire(fire(T0 + 60, run_id="r2"), max_active=1, alive=alive) is Claim.BUSY
        assert d.claim_fire(fire(T0 + 60, run_id="r2"), max_active=1, alive=dead) is Claim.CLAIMED
        assert [(r.id, r.status, r.runner_pid, r.runner_host) for r in seen] == [("r1", "running", 1, "h")]

    def test_a_run_that_was_recorded_takes_its_fire_off_the_orphans(self, store: RunStore, d: DeploymentStore) -> None:
        assert d.claim_fire(fire(T0 + 60, run_id="r1"), max_active=5, alive=alive) is Claim.CLAIMED
        orphan = d.orphan_fires(since=T0 - 1)[0]
        started_run(store, "r1", "w", T0 + 60)
        assert d.orphan_fires(since=T0 - 1) == []
        assert not d.take_over(orphan, at=T0 + 500, pid=2, host="h")  # its run exists: nobody takes it over

    def test_claim_fires_takes_a_batch_in_one_transaction(self, d: DeploymentStore) -> None:
        claims = d.claim_fires([(fire(T0 + 60 * i, run_id=f"r{i}"), 2) for i in (3, 1, 2)], alive=alive)
        assert claims == [Claim.BUSY, Claim.CLAIMED, Claim.CLAIMED]  # claimed in time order; the third finds two pending

    def test_claim_fires_refuses_an_event_fire_and_lands_nothing_of_the_batch(self, d: DeploymentStore) -> None:
        batch = [(fire(T0 + 60, run_id="r1"), 5), (fire(T0 + 120, run_id="e1", kind="event", consumed=["x"]), 5)]
        with pytest.raises(ValueError, match="event fire"):
            d.claim_fires(batch, alive=alive)
        assert d.fires("w") == []

    def test_a_watched_run_is_consumed_by_one_event_fire(self, store: RunStore, d: DeploymentStore, peer: Peer) -> None:
        for i, wf in enumerate(["a", "b", "a"]):
            ended_run(store, f"x{i}", wf, "succeeded", T0 + i)
        pending = d.pending_events("w", watched=["a", "b"], statuses=["succeeded"], since=T0 - 10)
        assert [(r.id, r.workflow, r.status, r.ended_at) for r in pending] == [
            ("x0", "a", "succeeded", T0 + 1),
            ("x1", "b", "succeeded", T0 + 2),
            ("x2", "a", "succeeded", T0 + 3),
        ]
        first = fire(T0 + 2, run_id="e1", kind="event", consumed=["x1", "x0"])
        assert d.claim_fire(first, max_active=10, alive=alive) is Claim.CLAIMED
        overlapping = fire(T0 + 3, run_id="e2", kind="event", consumed=["x1", "x2"])
        assert d.claim_fire(overlapping, max_active=10, alive=alive) is Claim.TAKEN  # x1 was consumed: nothing of it lands
        assert [(f.run_id, f.consumed) for f in d.fires("w")] == [("e1", ["x0", "x1"])]
        assert d.last_fire("w", "event") == T0 + 2
        assert [r.id for r in d.pending_events("w", watched=["a", "b"], statuses=["succeeded"], since=T0 - 10)] == ["x2"]

        results: list[Claim] = []
        lock = threading.Lock()
        start = threading.Barrier(6)

        def claim(i: int) -> None:
            with peer() as own:
                start.wait(timeout=30)
                got = own.claim_fire(fire(T0 + 4, run_id=f"e{10 + i}", kind="event", consumed=["x2"]), max_active=10, alive=alive)
            with lock:
                results.append(got)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(Claim.CLAIMED) == 1
        assert d.pending_events("w", watched=["a", "b"], statuses=["succeeded"], since=T0 - 10) == []

    def test_an_event_fire_at_a_fired_time_moves_just_after_it(self, store: RunStore, d: DeploymentStore) -> None:
        ended_run(store, "x0", "a", "succeeded", T0)
        ended_run(store, "x1", "a", "succeeded", T0 + 5)
        assert (
            d.claim_fire(fire(T0 + 10, run_id="e1", kind="event", consumed=["x0"]), max_active=10, alive=alive) is Claim.CLAIMED
        )
        late = fire(T0 + 10, run_id="e2", kind="event", consumed=["x1"])
        assert d.claim_fire(late, max_active=10, alive=alive) is Claim.CLAIMED
        assert T0 + 10 < late.logical_time < T0 + 10.001
        assert [f.run_id for f in d.fires("w")] == ["e2", "e1"]

    def test_pending_events_keep_to_the_watched_workflows_statuses_time_and_limit(
        self, store: RunStore, d: DeploymentStore
    ) -> None:
        ended_run(store, "a0", "a", "succeeded", T0)
        ended_run(store, "a1", "a", "failed", T0 + 1)
        ended_run(store, "a2", "a", "succeeded", T0 + 2)
        ended_run(store, "a3", "a", "succeeded", T0 + 3)
        ended_run(store, "b0", "b", "succeeded", T0 + 4)
        ended_run(store, "c0", "c", "succeeded", T0 + 5)
        started_run(store, "a4", "a", T0 + 6)
        ok = ["succeeded"]
        assert [r.id for r in d.pending_events("w", watched=["a", "b"], statuses=ok, since=T0 + 1.5)] == ["a2", "a3", "b0"]
        assert [r.id for r in d.pending_events("w", watched=["a"], statuses=["failed", "succeeded"], since=0)] == [
            "a0",
            "a1",
            "a2",
            "a3",
        ]
        # at most `limit` per watched workflow: a busy one cannot hide the one run of another
        assert [r.id for r in d.pending_events("w", watched=["a", "b"], statuses=ok, since=0, limit=1)] == ["a0", "b0"]
        assert d.pending_events("w", watched=[], statuses=ok, since=0) == []
        assert d.pending_events("w", watched=["a"], statuses=[], since=0) == []
        assert d.latest_end() == T0 + 6

    def test_latest_end_is_none_before_any_run_ended(self, store: RunStore, d: DeploymentStore) -> None:
        assert d.latest_end() is None
        started_run(store, "r1", "w", T0)
        assert d.latest_end() is None


class TestMemoryDeploymentStore(DeploymentStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[RunStore]:
        store = MemoryRunStore()
        yield store
        store.close()

    @pytest.fixture
    def peer(self, store: RunStore) -> Peer:
        @contextlib.contextmanager
        def same() -> Iterator[DeploymentStore]:
            yield store.deployments

        return same

    def test_the_memory_store_hands_out_its_reference_deployment_store(self, store: RunStore) -> None:
        assert isinstance(store.deployments, MemoryDeploymentStore)


class SqlDeploymentStoreContract(DeploymentStoreContract):
    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError("each SQL backend's test class gives its URL")

    @pytest.fixture
    def store(self, url: str) -> Iterator[RunStore]:
        store = SqlRunStore(url)
        yield store
        store.close()

    @pytest.fixture
    def peer(self, url: str) -> Peer:
        @contextlib.contextmanager
        def own() -> Iterator[DeploymentStore]:
            other = SqlRunStore(url)
            try:
                yield other.deployments
            finally:
                other.close()

        return own

    def test_the_sql_store_hands_out_its_deployment_store(self, store: SqlRunStore) -> None:
        assert isinstance(store.deployments, SqlDeploymentStore)

    def test_deployments_made_through_one_store_are_seen_through_another(self, store: SqlRunStore, peer: Peer) -> None:
        deploy(store.deployments, SCHEDULED, "v1", T0, files={"q.sql": "select 1"})
        with peer() as other:
            assert other.version_files("w", 1) == {"q.sql": "select 1"}


class TestSqliteDeploymentStore(SqlDeploymentStoreContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.mark.postgres
class TestPostgresDeploymentStore(SqlDeploymentStoreContract):
    @pytest.fixture
    def url(self, pg_schema_url: str) -> str:
        return pg_schema_url
