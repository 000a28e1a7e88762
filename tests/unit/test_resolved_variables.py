"""An attempt may say which variables it bound (`Outcome.resolved`, a dataflow package's layer):
the task's record shows those, whether the attempt succeeded, is retried or failed for good."""

from __future__ import annotations

import pytest

from flowstage.engine.ports import Outcome
from flowstage.model import TaskStatus
from tests.unit.test_runner import FakeExecutor, execute

S = TaskStatus
WORKFLOW = """
name: w
variables: {min_amount: 0, region: EU}
tasks:
  - {name: flow, shell: "true", retries: RETRIES, retry_delay: 0s, variables: {region: US}}
"""


@pytest.mark.parametrize("resolved", [None, {"min_amount": 10, "region": "US"}, {}])
def test_an_outcome_carries_its_resolved_variables_across_processes(resolved: dict | None) -> None:
    outcome = Outcome(S.FAILED, error="x", resolved=resolved)
    assert Outcome.from_message(outcome.to_message()) == outcome


@pytest.mark.parametrize(
    ("retries", "outcomes", "status"),
    [
        (0, [Outcome(S.SUCCEEDED, resolved={"min_amount": 10, "region": "US"})], S.SUCCEEDED),
        (0, [Outcome(S.FAILED, error="boom", resolved={"min_amount": 10, "region": "US"})], S.FAILED),
        (0, [Outcome(S.TIMED_OUT, error="late", resolved={"min_amount": 10, "region": "US"})], S.TIMED_OUT),
        (
            1,
            [
                Outcome(S.FAILED, error="boom", resolved={"min_amount": 10, "region": "US"}),
                Outcome(S.SUCCEEDED, resolved={"min_amount": 10, "region": "US"}),
            ],
            S.SUCCEEDED,
        ),
    ],
)
def test_the_record_shows_the_variables_the_attempt_bound(retries: int, outcomes: list, status: TaskStatus) -> None:
    result = execute(WORKFLOW.replace("RETRIES", str(retries)), FakeExecutor({"flow": outcomes}))
    flow = result.tasks["flow"]
    assert flow.status is status
    assert flow.variables == {"min_amount": 10, "region": "US"}


def test_without_resolved_variables_the_record_shows_the_scope_the_attempt_was_given() -> None:
    result = execute(WORKFLOW.replace("RETRIES", "0"), FakeExecutor({"flow": "succeeded"}))
    assert result.tasks["flow"].variables == {"min_amount": 0, "region": "US"}


def test_a_retried_attempt_that_said_what_it_bound_shows_it_while_it_waits_and_the_next_attempt_speaks_for_itself() -> None:
    bound = {"min_amount": 10, "region": "US"}
    result = execute(
        WORKFLOW.replace("RETRIES", "1"),
        FakeExecutor({"flow": [Outcome(S.FAILED, error="boom", resolved=bound), Outcome(S.FAILED, error="again")]}),
    )
    retrying = [e for e in result.events if e.kind == "task_status" and e.status == "retrying"]
    assert retrying[0].data["set"]["variables"] == bound
    # the second attempt said nothing: the scope it was given stands, not what the first one bound
    assert result.tasks["flow"].variables == {"min_amount": 0, "region": "US"}
