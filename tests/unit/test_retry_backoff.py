"""Retry delays: `retry_delay` grown by `retry_backoff` with jitter, capped by `retry_delay_max` (SPEC §2, §4).

The delay function is pure (the jitter's draw is an argument), so it is checked by a table and by
properties over every draw; the runner is checked to use it, with a seeded random source, and the
loader to refuse what makes no sense, at the key's line.
"""

from __future__ import annotations

import math
import random
import textwrap
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowstage.engine.plan import compile_plan
from flowstage.engine.ports import TaskRun
from flowstage.engine.retries import JITTER_FLOOR, retry_delay
from flowstage.engine.runner import RunInfo, Runner
from flowstage.errors import DefinitionError
from flowstage.model import RunStatus
from flowstage.model.loader import load_text
from flowstage.stores.base import NewRun
from flowstage.stores.memory import MemoryRunStore
from tests.unit.test_runner import FakeExecutor

# retry, delay, backoff, cap, draw -> seconds
TABLE = [
    # no backoff: every retry waits retry_delay exactly, whatever the draw
    (1, 30.0, None, None, 0.0, 30.0),
    (5, 30.0, None, None, 0.3, 30.0),
    (3, 30.0, None, 20.0, 0.0, 20.0),
    # backoff, full draw: the computed delay itself
    (1, 10.0, 2.0, None, 1.0, 10.0),
    (2, 10.0, 2.0, None, 1.0, 20.0),
    (3, 10.0, 2.0, None, 1.0, 40.0),
    (4, 10.0, 3.0, None, 1.0, 270.0),
    (3, 10.0, 1.0, None, 1.0, 10.0),
    # the cap: min(delay * backoff ** (n - 1), cap)
    (6, 10.0, 2.0, 100.0, 1.0, 100.0),
    (4, 10.0, 2.0, 100.0, 1.0, 80.0),
    (40, 1.0, 10.0, 600.0, 1.0, 600.0),
    # jitter: draw 0 keeps half, draw 0.5 three quarters
    (1, 10.0, 2.0, None, 0.0, 5.0),
    (2, 10.0, 2.0, None, 0.5, 15.0),
    (9, 10.0, 2.0, 60.0, 0.0, 30.0),
    # a zero delay stays zero
    (3, 0.0, 2.0, None, 0.7, 0.0),
]


@pytest.mark.parametrize(("retry", "delay", "backoff", "cap", "draw", "expected"), TABLE)
def test_retry_delay_grows_by_the_backoff_up_to_the_cap_with_jitter(
    retry: int, delay: float, backoff: float | None, cap: float | None, draw: float, expected: float
) -> None:
    assert retry_delay(retry=retry, delay=delay, backoff=backoff, cap=cap, draw=draw) == pytest.approx(expected)


def test_a_backoff_past_what_a_float_holds_waits_the_cap_or_stays_a_finite_number() -> None:
    assert retry_delay(retry=1000, delay=10.0, backoff=1000.0, cap=600.0, draw=1.0) == 600.0
    uncapped = retry_delay(retry=1000, delay=10.0, backoff=1000.0, draw=1.0)
    assert math.isfinite(uncapped)  # a JSON number, for the record


@pytest.mark.parametrize(("retry", "draw"), [(0, 0.5), (1, -0.1), (1, 1.5)])
def test_retry_delay_refuses_a_retry_number_or_draw_out_of_range(retry: int, draw: float) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked by the callers' texts
        retry_delay(retry=retry, delay=1.0, backoff=2.0, draw=draw)


delays = st.floats(min_value=0, max_value=3600, allow_nan=False)
backoffs = st.floats(min_value=1, max_value=10, allow_nan=False)
draws = st.floats(min_value=0, max_value=1)
retry_numbers = st.integers(min_value=1, max_value=60)


@given(retry=retry_numbers, delay=delays, backoff=backoffs, extra=delays, draw=draws)
def test_a_jittered_delay_never_exceeds_the_cap_nor_falls_below_half_the_computed_delay(
    retry: int, delay: float, backoff: float, extra: float, draw: float
) -> None:
    cap = delay + extra  # the loader keeps retry_delay_max >= retry_delay
    computed = min(delay * backoff ** (retry - 1), cap)
    wait = retry_delay(retry=retry, delay=delay, backoff=backoff, cap=cap, draw=draw)
    assert wait <= cap
    assert wait <= computed * (1 + 1e-12)
    assert wait >= computed * JITTER_FLOOR * (1 - 1e-12)


@given(retry=retry_numbers, delay=delays, backoff=backoffs, cap=st.none() | delays, draw=draws)
def test_with_the_same_draw_each_retry_waits_at_least_as_long_as_the_one_before(
    retry: int, delay: float, backoff: float, cap: float | None, draw: float
) -> None:
    if cap is not None:
        cap = max(cap, delay)
    this = retry_delay(retry=retry, delay=delay, backoff=backoff, cap=cap, draw=draw)
    after = retry_delay(retry=retry + 1, delay=delay, backoff=backoff, cap=cap, draw=draw)
    assert after >= this


@given(retry=retry_numbers, delay=delays, backoff=st.floats(min_value=2, max_value=10), draw=draws, later=draws)
def test_without_a_cap_a_backoff_of_two_or_more_makes_every_retry_wait_at_least_the_one_before_at_its_longest(
    retry: int, delay: float, backoff: float, draw: float, later: float
) -> None:
    # half of the next computed delay is at least this whole one: growth shows through any jitter
    this = retry_delay(retry=retry, delay=delay, backoff=backoff, draw=draw)
    after = retry_delay(retry=retry + 1, delay=delay, backoff=backoff, draw=later)
    assert after >= this * (1 - 1e-12)


# --------------------------------------------------------------------------- the runner


def _run(text: str, executor: FakeExecutor, rng: random.Random) -> tuple[RunStatus, MemoryRunStore]:
    workflow = load_text(textwrap.dedent(text), "test.yaml")
    plan = compile_plan(workflow)
    store = MemoryRunStore()
    now = 1_700_000_000.0
    store.create_run(
        NewRun(
            id="run-1",
            workflow=workflow.name,
            version=None,
            definition=workflow.to_dict(),
            variables={},
            overrides={},
            root="/nonexistent",
            logical_time=now,
            started_at=now,
            runner_pid=0,
            runner_host="test",
            runner_started=now,
            tasks=[TaskRun(name=n.name, stage=plan.stage_names[n.stage]) for n in plan.nodes.values()],
        )
    )
    info = RunInfo("run-1", workflow.name, None, datetime(2026, 3, 1, tzinfo=UTC), "/nonexistent")
    runner = Runner(plan=plan, info=info, store=store, executor=executor, variables={}, rng=rng)
    return runner.run(), store


def _waits(store: MemoryRunStore, task: str) -> list[float]:
    return [
        e.data["retry_in"]
        for _, e in store.events("run-1")
        if e.kind == "task_status" and e.task == task and e.status == "retrying"
    ]


def test_the_runner_waits_the_jittered_backed_off_delay_drawn_from_its_random_source() -> None:
    status, store = _run(
        """
        name: w
        preferences: {retries: 4, retry_delay: 1ms, retry_backoff: 3, retry_delay_max: 20ms}
        tasks:
          - {name: flaky, shell: "false"}
        """,
        FakeExecutor({"flaky": ["failed", "failed", "timed_out", "failed", "succeeded"]}),
        random.Random(42),
    )
    assert status is RunStatus.SUCCEEDED
    draws = random.Random(42)
    expected = [retry_delay(retry=n, delay=0.001, backoff=3.0, cap=0.02, draw=draws.random()) for n in (1, 2, 3, 4)]
    assert _waits(store, "flaky") == pytest.approx(expected)
    for wait, computed in zip(_waits(store, "flaky"), (0.001, 0.003, 0.009, 0.02), strict=True):
        assert computed / 2 <= wait <= computed


def test_a_tasks_own_backoff_and_cap_win_over_the_preferences() -> None:
    status, store = _run(
        """
        name: w
        preferences: {retries: 3, retry_delay: 1ms, retry_backoff: 10, retry_delay_max: 1s}
        tasks:
          - {name: own, shell: "false", retry_delay: 2ms, retry_backoff: 2, retry_delay_max: 5ms}
          - {name: plain, shell: "false", retry_backoff: 1}
        """,
        FakeExecutor({"own": "failed", "plain": "failed"}),
        random.Random(7),
    )
    assert status is RunStatus.FAILED
    own, plain = _waits(store, "own"), _waits(store, "plain")
    for wait, computed in zip(own, (0.002, 0.004, 0.005), strict=True):
        assert computed / 2 <= wait <= computed
    for wait in plain:
        assert 0.0005 <= wait <= 0.001


def test_without_a_backoff_every_retry_waits_the_retry_delay_exactly() -> None:
    status, store = _run(
        """
        name: w
        tasks:
          - {name: flaky, shell: "false", retries: 3, retry_delay: 2ms}
        """,
        FakeExecutor({"flaky": "failed"}),
        random.Random(1),
    )
    assert status is RunStatus.FAILED
    assert _waits(store, "flaky") == [0.002, 0.002, 0.002]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            """
            name: w
            preferences:
              retry_backoff: 0.5
            tasks: [{name: a, shell: "true"}]
            """,
            "test.yaml:3:3",
            "preferences.retry_backoff: a number of at least 1",
        ),
        (
            """
            name: w
            tasks:
              - name: a
                shell: "true"
                retry_backoff: "fast"
            """,
            "test.yaml:5:5",
            "tasks[0].retry_backoff: a number of at least 1",
        ),
        (
            """
            name: w
            tasks:
              - name: a
                shell: "true"
                retry_backoff: true
            """,
            "test.yaml:5:5",
            "tasks[0].retry_backoff: a number of at least 1",
        ),
        (
            """
            name: w
            preferences:
              retry_delay: 5m
              retry_delay_max: 1m
            tasks: [{name: a, shell: "true"}]
            """,
            "test.yaml:4:3",
            "retry_delay_max (1m) is shorter than retry_delay (5m)",
        ),
        (
            """
            name: w
            tasks:
              - name: a
                shell: "true"
                retry_delay: 30s
                retry_delay_max: 10s
            """,
            "test.yaml:6:5",
            "retry_delay_max (10s) is shorter than retry_delay (30s)",
        ),
        (
            """
            name: w
            tasks:
              - name: a
                shell: "true"
                retry_delay_max: soon
            """,
            "test.yaml:5:5",
            "tasks[0].retry_delay_max: not a duration: 'soon'",
        ),
    ],
)
def test_a_backoff_below_one_or_a_cap_below_the_delay_is_refused_at_its_line(text: str, where: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        load_text(textwrap.dedent(text).lstrip("\n"), "test.yaml")
    shown = str(caught.value)
    assert shown.startswith(where), shown
    assert message in shown
    assert "\n" not in shown


def test_a_cap_alone_may_be_shorter_than_the_default_delay_and_the_keys_read_back() -> None:
    workflow = load_text(
        textwrap.dedent(
            """
            name: w
            preferences: {retry_delay_max: 5s, retry_backoff: 2}
            tasks:
              - {name: a, shell: "true", retry_backoff: 1.5, retry_delay_max: 10m}
            """
        ),
        "test.yaml",
    )
    assert workflow.preferences.retry_delay_max == 5.0
    assert workflow.preferences.retry_backoff == 2.0
    task = workflow.all_tasks()[0][1]
    assert (task.retry_backoff, task.retry_delay_max) == (1.5, 600.0)
    assert load_text(workflow.to_yaml()) == workflow
