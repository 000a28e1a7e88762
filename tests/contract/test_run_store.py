"""One conformance suite for every run store: memory (the reference), SQLite and PostgreSQL.

`StoreContract` states what a run store does; each backend's class only says how to open one.
The SQL backends add what only they have: Alembic migrations on first open, a file on disk.
"""

from __future__ import annotations

import copy
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstage.engine.ports import Batch, Event, LogLine, TaskRun
from flowstage.logging import DEBUG, ERROR, INFO, NOTICE, WARNING
from flowstage.model.statuses import TaskStatus
from flowstage.stores.base import NewRun, RunStore, StoredRun
from flowstage.stores.memory import MemoryRunStore
from flowstage.stores.sql.store import HEAD_REVISION, SqlRunStore

# Epoch seconds with microseconds, as `time.time()` gives them: they must come back bit for bit,
# since `claim` compares heartbeats for equality.
T0 = 1_763_932_889.819117

ODD_VALUES: dict[str, Any] = {
    "null": None,
    "true": True,
    "false": False,
    "int": -7,
    "big": 2**63 + 1,
    "float": 0.1,
    "tiny": 1e-300,
    "text": 'Zürich — 東京 😀 "quoted" back\\slash\nnew line\ttab',
    "empty_text": "",
    "empty_list": [],
    "empty_map": {},
    "nested": {"list": [1, "two", None, [3.5, {"deep": ["ß", None]}]], "map": {"ключ": "значение"}},
    "été key": 1,
}


def new_run(
    run_id: str = "r1",
    *,
    workflow: str = "daily",
    started_at: float = T0,
    tasks: list[TaskRun] | None = None,
    variables: dict[str, Any] | None = None,
) -> NewRun:
    return NewRun(
        id=run_id,
        workflow=workflow,
        version=3,
        definition={"name": workflow, "stages": [{"name": "s1", "tasks": [{"name": "extract", "shell": "echo hi"}]}]},
        variables={"region": "EU", "campaign_id": None} if variables is None else variables,
        overrides={"region": "EU"},
        root="/srv/project",
        logical_time=started_at - 60,
        started_at=started_at,
        runner_pid=4321,
        runner_host="runner-host",
        runner_started=started_at - 0.25,
        tasks=[TaskRun("extract", "s1"), TaskRun("transform", "s2"), TaskRun("load", "s2")] if tasks is None else tasks,
        parent_run_id="parent-run",
        source="workflows/daily.yaml",
    )


def finished_task(name: str, stage: str, status: TaskStatus = TaskStatus.SUCCEEDED, **extra: Any) -> TaskRun:
    attempt = {"number": 1, "status": str(status), "started_at": T0 + 1, "ended_at": T0 + 2, "error": extra.get("error")}
    return TaskRun(
        name=name,
        stage=stage,
        status=status,
        started_at=T0 + 1,
        ended_at=T0 + 2,
        metrics={"runtime_seconds": 1.0, "rows_written": 3},
        saved={"count": 3},
        variables={"region": "EU"},
        attempts=[attempt],
        **extra,
    )


def log(run_id: str, task: str | None, level: int, message: str, attempt: int | None = 1) -> LogLine:
    return LogLine(run_id, task, attempt, T0 + 1, level, message)


def must_get(store: RunStore, run_id: str) -> StoredRun:
    run = store.get_run(run_id)
    assert run is not None, f"no run {run_id}"
    return run


def run_started(run_id: str, at: float = T0) -> Event:
    return Event(run_id, at, "run_started", None, "running", {})


class Unstorable:
    """A value no store can copy or serialize: it makes a batch fail half-way through."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Unstorable:
        raise UnstorableError

    def __str__(self) -> str:
        raise UnstorableError


class UnstorableError(Exception):
    pass


class StoreContract:
    """What every run store does. A backend's class provides the `store` fixture; the tests are shared."""

    @pytest.fixture
    def store(self) -> Iterator[RunStore]:
        raise NotImplementedError("each backend's test class opens its store")

    # ------------------------------------------------------------------ create_run / get_run
    def test_created_run_reads_back_whole_with_tasks_pending_in_order(self, store: RunStore) -> None:
        tasks = [TaskRun("zeta", "first"), TaskRun("alpha", "first"), TaskRun("mid", "second")]
        store.create_run(new_run("r1", tasks=tasks))

        run = store.get_run("r1")

        assert run is not None
        assert (run.id, run.workflow, run.version, run.status) == ("r1", "daily", 3, "running")
        assert run.started_at == T0
        assert run.ended_at is None
        assert run.logical_time == T0 - 60
        assert run.variables == {"region": "EU", "campaign_id": None}
        assert run.overrides == {"region": "EU"}
        assert run.definition == new_run().definition
        assert run.root == "/srv/project"
        assert (run.runner_pid, run.runner_host, run.runner_started) == (4321, "runner-host", T0 - 0.25)
        assert run.heartbeat_at == T0
        assert run.cancel_requested_at is None
        assert run.resumes == []
        assert (run.parent_run_id, run.source) == ("parent-run", "workflows/daily.yaml")
        assert [t.name for t in run.tasks] == ["zeta", "alpha", "mid"]
        assert run.tasks == tasks
        assert all(t.status == TaskStatus.PENDING and isinstance(t.status, TaskStatus) for t in run.tasks)

    def test_created_run_records_a_run_started_event(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))

        assert [e for _, e in store.events("r1")] == [run_started("r1")]

    def test_optional_fields_of_a_new_run_may_be_empty(self, store: RunStore) -> None:
        run_in = new_run("r1", tasks=[], variables={})
        run_in.version = None
        run_in.parent_run_id = None
        run_in.source = None
        store.create_run(run_in)

        run = store.get_run("r1")

        assert run is not None
        assert (run.version, run.parent_run_id, run.source, run.variables, run.tasks) == (None, None, None, {}, [])

    def test_get_run_without_tasks_leaves_them_out(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))

        run = store.get_run("r1", with_tasks=False)

        assert run is not None
        assert run.id == "r1"
        assert run.tasks == []

    def test_get_run_of_an_unknown_id_is_none(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))

        assert store.get_run("nope") is None
        assert store.get_run("") is None

    def test_json_values_round_trip_everywhere_a_store_keeps_them(self, store: RunStore) -> None:
        value = copy.deepcopy(ODD_VALUES)
        task = TaskRun(
            "extract",
            "s1",
            TaskStatus.SUCCEEDED,
            reason="needs x=success; x was skipped — 東京",
            error="Traceback…\n  ValueError: ünïcode 😀",
            metrics=value,
            saved=value,
            variables=value,
            attempts=[value, {"number": 2}],
        )
        run_in = new_run("r1", variables=value)
        run_in.overrides = value
        run_in.definition = {"name": "daily", "variables": value}
        store.create_run(run_in)
        store.record(
            Batch(
                "r1",
                tasks=[task],
                events=[Event("r1", T0 + 1, "task_status", "extract", "succeeded", value)],
                logs=[log("r1", "extract", INFO, value["text"])],
                run_variables={"saved": value},
            )
        )

        run = store.get_run("r1")

        assert run is not None
        assert run.overrides == ODD_VALUES
        assert run.definition == {"name": "daily", "variables": ODD_VALUES}
        assert run.variables == {"saved": ODD_VALUES}
        assert run.tasks[0] == task
        assert store.events("r1")[-1][1].data == ODD_VALUES
        assert store.logs("r1")[0].line.message == ODD_VALUES["text"]
        assert "null" in run.variables["saved"]  # a variable set to null is not an unset variable

    def test_a_nul_character_in_output_or_an_error_does_not_stop_the_record(self, store: RunStore) -> None:
        # a task may print any byte; PostgreSQL text cannot hold NUL, so a store may show it as U+FFFD
        store.create_run(new_run("r1"))
        task = finished_task("extract", "s1", TaskStatus.FAILED, error="bad\x00byte", reason="why\x00not")

        store.record(Batch("r1", tasks=[task], logs=[log("r1", "extract", INFO, "a\x00b")], run_status="failed"))

        run = must_get(store, "r1")
        stored = run.tasks[0]
        assert stored.error is not None
        assert stored.reason is not None
        assert stored.error.replace("\x00", "\ufffd") == "bad\ufffdbyte"
        assert stored.reason.replace("\x00", "\ufffd") == "why\ufffdnot"
        assert [s.line.message.replace("\x00", "\ufffd") for s in store.logs("r1")] == ["a\ufffdb"]
        assert run.status == "failed"

    def test_a_store_keeps_copies_not_the_callers_objects(self, store: RunStore) -> None:
        run_in = new_run("r1")
        store.create_run(run_in)
        run_in.variables["region"] = "US"
        run_in.tasks[0].status = TaskStatus.FAILED
        task = finished_task("extract", "s1")
        store.record(Batch("r1", tasks=[task], run_variables={"k": [1]}))
        task.metrics["rows_written"] = 999

        first = store.get_run("r1")
        assert first is not None
        first.variables["k"].append(2)
        first.tasks[0].saved["count"] = -1
        again = store.get_run("r1")

        assert again is not None
        assert again.variables == {"k": [1]}
        assert again.tasks[0] == finished_task("extract", "s1")
        assert again.tasks[1].status == TaskStatus.PENDING

    # ------------------------------------------------------------------ record
    def test_record_writes_tasks_events_logs_and_run_fields_of_a_batch(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        extract = finished_task("extract", "s1")
        transform = finished_task("transform", "s2", TaskStatus.FAILED, error="boom")
        events = [
            Event("r1", T0 + 2, "task_status", "extract", "succeeded", {"attempt": 1}),
            Event("r1", T0 + 2, "task_status", "transform", "failed", {"attempt": 1, "error": "boom"}),
            Event("r1", T0 + 3, "run_finished", None, "failed", {}),
        ]
        lines = [log("r1", "extract", INFO, "hi"), log("r1", "transform", ERROR, "boom"), log("r1", None, INFO, "done", None)]

        store.record(
            Batch(
                "r1",
                tasks=[extract, transform],
                events=events,
                logs=lines,
                run_status="failed",
                run_ended_at=T0 + 3,
                run_variables={"region": "EU", "count": 3},
            )
        )

        run = store.get_run("r1")
        assert run is not None
        assert (run.status, run.ended_at) == ("failed", T0 + 3)
        assert run.variables == {"region": "EU", "count": 3}
        assert run.tasks == [extract, transform, TaskRun("load", "s2")]
        assert [e for _, e in store.events("r1")] == [run_started("r1"), *events]
        assert [s.line for s in store.logs("r1")] == lines

    def test_a_later_batch_replaces_a_task_projection_and_leaves_the_others(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        running = TaskRun("transform", "s2", TaskStatus.RUNNING, started_at=T0 + 1, attempts=[{"number": 1}])
        store.record(Batch("r1", tasks=[running]))
        assert must_get(store, "r1").tasks[1] == running

        done = finished_task("transform", "s2")
        store.record(Batch("r1", tasks=[done]))

        run = store.get_run("r1")
        assert run is not None
        assert run.tasks == [TaskRun("extract", "s1"), done, TaskRun("load", "s2")]
        assert (run.status, run.ended_at) == ("running", None)

    def test_a_batch_without_run_fields_leaves_status_and_variables_alone(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        store.record(Batch("r1", run_variables={"count": 1}))
        store.record(Batch("r1", events=[Event("r1", T0 + 1, "task_status", "extract", "running")]))

        run = store.get_run("r1")

        assert run is not None
        assert (run.status, run.ended_at, run.variables) == ("running", None, {"count": 1})

    def test_a_run_status_without_variables_keeps_the_variables(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        store.record(Batch("r1", run_status="succeeded", run_ended_at=T0 + 9))

        run = store.get_run("r1")

        assert run is not None
        assert (run.status, run.ended_at, run.variables) == ("succeeded", T0 + 9, {"region": "EU", "campaign_id": None})

    def test_a_batch_that_cannot_be_written_whole_leaves_no_trace(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        batch = Batch(
            "r1",
            tasks=[finished_task("extract", "s1")],
            events=[Event("r1", T0 + 2, "task_status", "extract", "succeeded")],
            logs=[log("r1", "extract", INFO, "hi")],
            run_status="succeeded",
            run_ended_at=T0 + 3,
            run_variables={"bad": Unstorable()},
        )

        with pytest.raises(UnstorableError):
            store.record(batch)

        run = store.get_run("r1")
        assert run is not None
        assert (run.status, run.ended_at, run.variables) == ("running", None, {"region": "EU", "campaign_id": None})
        assert run.tasks == new_run().tasks
        assert [e for _, e in store.events("r1")] == [run_started("r1")]
        assert store.logs("r1") == []

    # ------------------------------------------------------------------ logs / events
    def test_logs_come_in_order_and_filter_by_task_level_cursor_and_limit(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        store.create_run(new_run("r2", started_at=T0 + 1))
        first = [
            log("r1", None, INFO, "run started", None),
            log("r1", "extract", DEBUG, "connecting"),
            log("r1", "extract", INFO, "rows: 3"),
        ]
        second = [
            log("r1", "load", WARNING, "slow"),
            log("r1", "load", ERROR, "Zürich ✓ 東京"),
            log("r1", "extract", NOTICE, "retrying", 2),
        ]
        store.record(Batch("r1", logs=first[:2]))
        store.record(Batch("r2", logs=[log("r2", "extract", ERROR, "other run")]))
        store.record(Batch("r1", logs=first[2:]))
        store.record(Batch("r1", logs=second))
        lines = first + second

        stored = store.logs("r1")
        ids = [s.id for s in stored]

        assert [s.line for s in stored] == lines
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        assert [s.line.message for s in store.logs("r1", task="extract")] == ["connecting", "rows: 3", "retrying"]
        assert [s.line.message for s in store.logs("r1", min_level=WARNING)] == ["slow", "Zürich ✓ 東京"]
        assert [s.line.message for s in store.logs("r1", task="extract", min_level=NOTICE)] == ["retrying"]
        assert [s.line for s in store.logs("r1", after=ids[2])] == lines[3:]
        assert [s.line for s in store.logs("r1", limit=2)] == lines[:2]
        assert [s.line for s in store.logs("r1", after=ids[-1])] == []
        assert [s.line.message for s in store.logs("r2")] == ["other run"]
        assert store.logs("unknown") == []

    def test_logs_page_through_with_the_id_cursor(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        lines = [log("r1", "extract", INFO, f"line {i}") for i in range(7)]
        store.record(Batch("r1", logs=lines))

        seen: list[LogLine] = []
        cursor = 0
        while page := store.logs("r1", after=cursor, limit=3):
            assert len(page) <= 3
            seen += [s.line for s in page]
            cursor = page[-1].id

        assert seen == lines

    def test_events_come_in_order_after_a_cursor(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        store.create_run(new_run("r2", started_at=T0 + 1))
        mine = [Event("r1", T0 + i, "task_status", "extract", s, {"attempt": 1}) for i, s in enumerate(["running", "succeeded"])]
        store.record(Batch("r1", events=mine[:1]))
        store.record(Batch("r2", events=[Event("r2", T0 + 5, "task_status", "extract", "running")]))
        store.record(Batch("r1", events=mine[1:]))

        stored = store.events("r1")
        ids = [i for i, _ in stored]

        assert [e for _, e in stored] == [run_started("r1"), *mine]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        assert [e for _, e in store.events("r1", after=ids[0])] == mine
        assert [e for _, e in store.events("r1", after=ids[1])] == mine[1:]
        assert store.events("r1", after=ids[-1]) == []
        assert [e for _, e in store.events("r1", limit=2)] == [run_started("r1"), mine[0]]
        assert [e.run_id for _, e in store.events("r2")] == ["r2", "r2"]
        assert store.events("unknown") == []

    # ------------------------------------------------------------------ list_runs
    def test_list_runs_newest_first_filtered_by_workflow_and_status_and_limited(self, store: RunStore) -> None:
        store.create_run(new_run("r1", workflow="a", started_at=T0))
        store.create_run(new_run("r2", workflow="b", started_at=T0 + 1))
        store.create_run(new_run("r3", workflow="a", started_at=T0 + 2))
        store.create_run(new_run("r4", workflow="a", started_at=T0 + 2))  # same start: the id breaks the tie
        store.create_run(new_run("r0", workflow="b", started_at=T0 + 3))
        store.record(Batch("r1", run_status="succeeded", run_ended_at=T0 + 1))
        store.record(Batch("r2", run_status="failed", run_ended_at=T0 + 2))

        def ids(**kwargs: Any) -> list[str]:
            return [r.id for r in store.list_runs(**kwargs)]

        assert ids() == ["r0", "r4", "r3", "r2", "r1"]
        assert ids(workflow="a") == ["r4", "r3", "r1"]
        assert ids(statuses=["succeeded", "failed"]) == ["r2", "r1"]
        assert ids(statuses=["running"]) == ["r0", "r4", "r3"]
        assert ids(statuses=[]) == ids()
        assert ids(workflow="a", statuses=["running"]) == ["r4", "r3"]
        assert ids(workflow="b", statuses=["succeeded"]) == []
        assert ids(workflow="nope") == []
        assert ids(limit=2) == ["r0", "r4"]
        assert ids(workflow="a", limit=1) == ["r4"]
        listed = {r.id: r for r in store.list_runs()}
        assert (listed["r1"].status, listed["r1"].ended_at, listed["r1"].workflow) == ("succeeded", T0 + 1, "a")
        assert listed["r2"].variables == {"region": "EU", "campaign_id": None}

    # ------------------------------------------------------------------ heartbeat / cancel
    def test_heartbeat_records_the_time_and_answers_whether_cancel_was_asked(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))

        assert store.heartbeat("r1", T0 + 5) is False
        assert must_get(store, "r1").heartbeat_at == T0 + 5

        assert store.request_cancel("r1", T0 + 6) is True

        assert store.heartbeat("r1", T0 + 7) is True
        run = store.get_run("r1")
        assert run is not None
        assert (run.heartbeat_at, run.cancel_requested_at, run.status) == (T0 + 7, T0 + 6, "running")
        assert store.events("r1")[-1][1] == Event("r1", T0 + 6, "cancel_requested")

    def test_cancel_is_refused_for_a_run_that_is_not_running(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        store.record(Batch("r1", run_status="succeeded", run_ended_at=T0 + 3))

        assert store.request_cancel("r1", T0 + 4) is False
        assert store.request_cancel("unknown", T0 + 4) is False

        run = store.get_run("r1")
        assert run is not None
        assert (run.status, run.cancel_requested_at) == ("succeeded", None)
        assert store.heartbeat("r1", T0 + 5) is False
        assert [e.kind for _, e in store.events("r1")] == ["run_started"]
        assert store.get_run("unknown") is None

    # ------------------------------------------------------------------ claim
    def test_claim_is_a_compare_and_set_on_status_and_heartbeat(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        store.record(Batch("r1", run_status="failed", run_ended_at=T0 + 3))
        take = {"pid": 99, "host": "other-host", "started": T0 + 9, "at": T0 + 10, "by": "ana@other-host"}

        assert store.claim("r1", expect_status="cancelled", expect_heartbeat=T0, **take) is False
        assert store.claim("r1", expect_status="failed", expect_heartbeat=T0 + 1, **take) is False
        assert store.claim("r1", expect_status="failed", expect_heartbeat=None, **take) is False
        assert store.claim("unknown", expect_status="failed", expect_heartbeat=T0, **take) is False
        untouched = store.get_run("r1")
        assert untouched is not None
        assert (untouched.status, untouched.ended_at, untouched.runner_pid, untouched.resumes) == ("failed", T0 + 3, 4321, [])

        assert store.claim("r1", expect_status="failed", expect_heartbeat=T0, **take) is True

        run = store.get_run("r1")
        assert run is not None
        assert (run.status, run.ended_at, run.cancel_requested_at) == ("running", None, None)
        assert (run.runner_pid, run.runner_host, run.runner_started, run.heartbeat_at) == (99, "other-host", T0 + 9, T0 + 10)
        assert run.resumes == [{"by": "ana@other-host", "at": T0 + 10}]
        assert store.events("r1")[-1][1] == Event("r1", T0 + 10, "run_resumed", None, "running", {"by": "ana@other-host"})
        # whoever read the run before the claim now loses
        assert store.claim("r1", expect_status="failed", expect_heartbeat=T0, **take) is False
        assert must_get(store, "r1").resumes == [{"by": "ana@other-host", "at": T0 + 10}]

    def test_claim_of_an_interrupted_run_clears_its_cancel_request_and_appends_a_resume(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        store.heartbeat("r1", T0 + 1)
        store.request_cancel("r1", T0 + 2)
        common = {"pid": 7, "host": "h", "started": T0 + 20}

        assert store.claim("r1", expect_status="running", expect_heartbeat=T0 + 1, at=T0 + 30, by="a@h", **common) is True
        assert store.claim("r1", expect_status="running", expect_heartbeat=T0 + 30, at=T0 + 40, by="b@h", **common) is True

        run = store.get_run("r1")
        assert run is not None
        assert run.cancel_requested_at is None
        assert store.heartbeat("r1", T0 + 41) is False
        assert run.resumes == [{"by": "a@h", "at": T0 + 30}, {"by": "b@h", "at": T0 + 40}]
        assert [e.kind for _, e in store.events("r1")] == ["run_started", "cancel_requested", "run_resumed", "run_resumed"]

    def test_only_one_of_many_simultaneous_claims_wins(self, store: RunStore) -> None:
        store.create_run(new_run("r1"))
        store.record(Batch("r1", run_status="failed", run_ended_at=T0 + 3))
        contenders = 6
        barrier = threading.Barrier(contenders)
        results: list[bool] = []
        errors: list[BaseException] = []

        def contend(n: int) -> None:
            try:
                barrier.wait(timeout=30)
                won = store.claim(
                    "r1", expect_status="failed", expect_heartbeat=T0, pid=n, host="h", started=T0, at=T0 + 10 + n, by=f"c{n}"
                )
                results.append(won)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

        assert errors == []
        assert sorted(results) == [False] * (contenders - 1) + [True]
        run = store.get_run("r1")
        assert run is not None
        assert len(run.resumes) == 1
        assert run.resumes[0]["by"] == f"c{run.runner_pid}"
        assert [e.kind for _, e in store.events("r1")].count("run_resumed") == 1

    # ------------------------------------------------------------------ finish_orphan
    @pytest.mark.parametrize("status", ["cancelled", "failed"])
    def test_finish_orphan_ends_the_run_and_cancels_its_unfinished_tasks(self, store: RunStore, status: str) -> None:
        names = ["done", "broken", "waiting", "busy", "again", "passed"]
        store.create_run(new_run("r1", tasks=[TaskRun(n, "s1") for n in names]))
        done = finished_task("done", "s1")
        broken = finished_task("broken", "s1", TaskStatus.FAILED, error="boom")
        busy = TaskRun("busy", "s1", TaskStatus.RUNNING, started_at=T0 + 1)
        again = TaskRun("again", "s1", TaskStatus.RETRYING, started_at=T0 + 1)
        passed = TaskRun("passed", "s1", TaskStatus.SKIPPED, reason="needs done=failure; done succeeded")
        store.record(Batch("r1", tasks=[done, broken, busy, again, passed]))

        store.finish_orphan("r1", status=status, at=T0 + 50, reason="run cancelled by ana@host")

        run = store.get_run("r1")
        assert run is not None
        assert (run.status, run.ended_at) == (status, T0 + 50)
        by_name = {t.name: t for t in run.tasks}
        assert by_name["done"] == done
        assert by_name["broken"] == broken
        assert by_name["passed"] == passed
        for name in ("waiting", "busy", "again"):
            task = by_name[name]
            assert (task.status, task.reason, task.ended_at) == (TaskStatus.CANCELLED, "run cancelled by ana@host", T0 + 50)
        assert by_name["busy"].started_at == T0 + 1
        assert store.events("r1")[-1][1] == Event(
            "r1", T0 + 50, "run_finished", None, status, {"reason": "run cancelled by ana@host"}
        )


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[RunStore]:
        store = MemoryRunStore()
        yield store
        store.close()


class SqlStoreContract(StoreContract):
    """The contract, plus what a SQL store adds: its schema is migrated once, on first open."""

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError("each SQL backend's test class gives its URL")

    @pytest.fixture
    def store(self, url: str) -> Iterator[RunStore]:
        store = SqlRunStore(url)
        yield store
        store.close()

    def test_a_second_store_on_a_migrated_database_runs_no_migration_and_shares_the_runs(
        self, url: str, store: SqlRunStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.create_run(new_run("r1"))

        def refuse(*_args: Any, **_kwargs: Any) -> None:
            raise AssertionError("migrations ran again on a database at the head revision")

        monkeypatch.setattr("alembic.command.upgrade", refuse)
        second = SqlRunStore(url)
        try:
            assert second.revision() == HEAD_REVISION
            assert second.get_run("r1") == store.get_run("r1")
            second.create_run(new_run("r2", started_at=T0 + 1))
            second.record(Batch("r2", logs=[log("r2", None, INFO, "from the second store")], run_status="succeeded"))
        finally:
            second.close()

        assert [r.id for r in store.list_runs()] == ["r2", "r1"]
        assert [s.line.message for s in store.logs("r2")] == ["from the second store"]

    def test_stores_opened_at_once_on_a_new_database_migrate_it_once(self, url: str) -> None:
        opened: list[SqlRunStore] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def open_store() -> None:
            try:
                barrier.wait(timeout=30)
                opened.append(SqlRunStore(url))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        try:
            assert errors == []
            assert len(opened) == 4
            for n, store in enumerate(opened):
                assert store.revision() == HEAD_REVISION
                store.create_run(new_run(f"r{n}", started_at=T0 + n))
            assert [r.id for r in opened[0].list_runs()] == ["r3", "r2", "r1", "r0"]
            assert count_rows(url, "alembic_version") == 1
        finally:
            for store in opened:
                store.close()


def count_rows(url: str, table: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


class TestSqliteStore(SqlStoreContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'runs.db'}"

    def test_the_database_file_is_where_the_url_says_with_its_folders_created(self, tmp_path: Path) -> None:
        path = tmp_path / "deep" / "er" / "runs.db"
        store = SqlRunStore(f"sqlite:///{path}")
        try:
            store.create_run(new_run("r1"))
        finally:
            store.close()

        assert read_sqlite(path, "SELECT id FROM runs") == [("r1",)]

    def test_a_relative_url_is_a_file_under_the_current_folder(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        store = SqlRunStore("sqlite:///state/here/runs.db")
        try:
            store.create_run(new_run("r1"))
        finally:
            store.close()

        assert read_sqlite(tmp_path / "state" / "here" / "runs.db", "SELECT id FROM runs") == [("r1",)]

    def test_the_database_is_in_wal_mode(self, tmp_path: Path, store: SqlRunStore) -> None:
        store.create_run(new_run("r1"))

        assert read_sqlite(tmp_path / "runs.db", "PRAGMA journal_mode") == [("wal",)]


def read_sqlite(path: Path, sql: str) -> list[tuple[Any, ...]]:
    assert path.is_file(), f"no database file at {path}"
    conn = sqlite3.connect(path)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


@pytest.mark.postgres
class TestPostgresStore(SqlStoreContract):
    @pytest.fixture
    def url(self, pg_schema_url: str) -> str:
        return pg_schema_url
