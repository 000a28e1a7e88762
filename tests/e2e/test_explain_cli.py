"""`flowstage explain RUN TASK`: why a task ran, waited or was skipped — back to the root cause —
and where each of its variables came from, its templates rendered."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Project
from tests.records import record_of

CHAIN = """
name: chain
variables: {region: EU, limit: 5}
stages:
  - name: extract
    tasks:
      - name: fetch
        shell: "exit 3"
      - name: count
        python: tasks/t.py:count
        in_process: true
        save: rows
  - name: load
    tasks:
      - name: load_orders
        shell: "echo {{ var.region }}"
  - name: finish
    tasks:
      - name: report
        after: {load_orders: success}
        shell: "echo done"
      - name: on_fail
        after: {fetch: failure}
        shell: "echo caught {{ task.name }} in {{ var.region }}"
      - name: big
        after: [count]
        if: var.rows > var.limit
        shell: "echo big"
"""


def _run(project: Project, workflow: str, *args: str) -> str:
    result = project.cli("run", workflow, "--json", *args)
    assert result.code in (0, 1), result
    return str(record_of(result)["id"])


def _explain(project: Project, run_id: str, task: str) -> dict[str, Any]:
    result = project.cli("explain", run_id, task, "--json")
    assert result.code == 0, result
    import json

    found: dict[str, Any] = json.loads(result.out)
    return found


def _chain_project(project: Project) -> str:
    project.write("tasks/t.py", "def count():\n    return 3\n")
    project.write("workflows/chain.yaml", CHAIN)
    return _run(project, "chain", "--var", "region=US")


def test_a_skip_chain_is_traced_back_through_each_skipped_task_to_the_failure_that_began_it(project: Project) -> None:
    run_id = _chain_project(project)

    found = _explain(project, run_id, "report")

    decision = found["decision"]
    assert (decision["task"], decision["verdict"]) == ("report", "skipped")
    assert decision["checks"] == [
        {"task": "load_orders", "condition": "success", "status": "skipped", "held": False, "caught": False}
    ]
    (load,) = decision["causes"]
    assert (load["task"], load["verdict"]) == ("load_orders", "skipped")
    assert "stage 'extract'" in load["because"]
    (fetch,) = load["causes"]
    assert (fetch["task"], fetch["status"], fetch["root_cause"]) == ("fetch", "failed", True)
    assert "command exited with code 3" in fetch["because"]
    assert [r["task"] for r in found["root_causes"]] == ["fetch"]

    text = project.cli("explain", run_id, "report")
    assert text.code == 0, text
    assert "<- load_orders: skipped" in text.out
    assert "<- fetch: ran (failed)" in text.out
    assert "root cause: fetch (failed)" in text.out


def test_a_failure_caught_later_still_explains_a_stage_default_decided_before_the_catch(project: Project) -> None:
    run_id = _chain_project(project)

    load = _explain(project, run_id, "load_orders")["decision"]

    # when load's stage opened, on_fail (a later stage) had not run: fetch was an uncaught failure then
    by_task = {c["task"]: c for c in load["checks"]}
    assert by_task["fetch"] == {"task": "fetch", "condition": "stage", "status": "failed", "held": False, "caught": False}
    assert by_task["count"]["held"] is True
    on_fail = _explain(project, run_id, "on_fail")["decision"]
    assert on_fail["verdict"] == "ran"
    assert on_fail["checks"][0]["held"] is True
    assert "fetch=failure" in on_fail["because"]
    fetch = _explain(project, run_id, "fetch")["decision"]
    assert "caught by on_fail" in fetch["because"]


def test_an_if_that_was_false_is_the_root_cause_and_shows_the_values_it_read(project: Project) -> None:
    run_id = _chain_project(project)

    found = _explain(project, run_id, "big")

    assert found["decision"]["verdict"] == "skipped"
    assert found["decision"]["root_cause"] is True
    assert found["if"] == {"expression": "var.rows > var.limit", "value": False}
    sources = {v["name"]: (v["value"], v["source"]) for v in found["variables"]}
    assert sources["rows"] == (3, "saved by task count")
    assert sources["limit"] == (5, "the workflow's variables:")
    assert sources["region"][0] == "US"
    assert sources["region"][1].startswith("--var")


@pytest.mark.parametrize(
    ("when", "fail_a", "verdict", "held"),
    [
        # b starts once a ended, so each decision's moment is certain: `any` waits for b when a
        # failed and runs at once when a succeeded; `all` is skipped the moment a failed
        ("any", True, "ran", [False, True]),
        ("all", True, "skipped", [False, None]),
        ("any", False, "ran", [True, None]),
        ("all", False, "ran", [True, True]),
    ],
)
def test_any_and_all_show_which_conditions_held_when_the_task_was_decided(
    project: Project, when: str, fail_a: bool, verdict: str, held: list[bool | None]
) -> None:
    project.write("tasks/t.py", "import time\n\ndef slow():\n    time.sleep(0.3)\n")
    project.write(
        "workflows/join.yaml",
        f"""
        name: join
        tasks:
          - {{name: a, shell: "{"exit 1" if fail_a else "true"}"}}
          - {{name: b, after: {{a: completion}}, python: tasks/t.py:slow, in_process: true}}
          - name: joined
            after: [a, b]
            when: {when}
            shell: "true"
          - {{name: catch_a, after: {{a: failure}}, shell: "true"}}
        """,
    )
    run_id = _run(project, "join")

    decision = _explain(project, run_id, "joined")["decision"]

    assert decision["verdict"] == verdict
    assert decision["when"] == when
    assert [c["held"] for c in decision["checks"]] == held
    if verdict == "skipped":
        assert [c["task"] for c in decision["causes"]] == ["a"]


def test_each_variable_names_its_scope_and_templates_are_shown_rendered(project: Project) -> None:
    project.write("data/orders.csv", "id,amount\n1,5\n2,12\n3,25\n")
    project.write(
        "packages/orders.yaml",
        """
        name: orders
        variables: {min_amount: 10}
        sources: {orders: {file: data/orders.csv}}
        steps:
          - from: orders
          - filter: "amount >= :min_amount"
        sink: {file: out/orders.csv}
        """,
    )
    project.write("tasks/t.py", "def seven():\n    return 7\n\ndef echo(campaign, region):\n    return [campaign, region]\n")
    project.write(
        "workflows/scopes.yaml",
        """
        name: scopes
        variables: {region: EU, min_amount: 0, label: plain}
        stages:
          - name: first
            tasks:
              - {name: find, python: tasks/t.py:seven, in_process: true, save: campaign_id}
          - name: second
            tasks:
              - name: use
                python: tasks/t.py:echo
                in_process: true
                variables: {campaign: "c-{{ var.campaign_id }}"}
                with: {campaign: "{{ var.campaign }}", region: "{{ var.region }}"}
              - name: flow
                dataflow: packages/orders.yaml
        """,
    )
    run_id = _run(project, "scopes", "--var", "region=US")

    use = _explain(project, run_id, "use")
    sources = {v["name"]: (v["value"], v["source"]) for v in use["variables"]}
    assert sources["campaign"][0] == "c-7"
    assert sources["campaign"][1].startswith("the task's variables:")
    assert sources["campaign_id"] == (7, "saved by task find")
    assert sources["region"] == ("US", "--var (or the API's run variables)")
    assert sources["label"] == ("plain", "the workflow's variables:")
    rendered = {t["key"]: t["rendered"] for t in use["templates"]}
    assert rendered == {"with.campaign": "c-7", "with.region": "US"}

    flow = _explain(project, run_id, "flow")
    sources = {v["name"]: (v["value"], v["source"]) for v in flow["variables"]}
    assert sources["min_amount"][0] == 10
    assert sources["min_amount"][1].startswith("the dataflow package's variables:")


def test_a_sub_runs_variables_are_said_to_come_from_the_parent_task(project: Project) -> None:
    project.write(
        "workflows/child.yaml", "name: child\nvariables: {who: nobody}\ntasks:\n  - {name: hello, shell: 'echo {{ var.who }}'}\n"
    )
    project.write(
        "workflows/parent.yaml",
        "name: parent\ntasks:\n  - {name: call, workflow: child, variables: {who: parent}}\n",
    )
    _run(project, "parent")
    runs = project.cli("runs", "child", "--json")
    assert runs.code == 0, runs
    import json

    child_id = json.loads(runs.out)[0]["id"]

    found = _explain(project, child_id, "hello")

    (who,) = found["variables"]
    assert who["value"] == "parent"
    assert who["source"].startswith("the parent run ")
    assert found["templates"] == [{"key": "shell", "template": "echo {{ var.who }}", "rendered": "echo parent"}]


def test_an_unknown_run_or_task_is_exit_2_with_one_clear_line(project: Project) -> None:
    run_id = _chain_project(project)

    unknown_task = project.cli("explain", run_id, "nope")
    unknown_run = project.cli("explain", "no-such-run", "fetch")

    assert unknown_task.code == 2, unknown_task
    assert "has no task 'nope'" in unknown_task.err
    assert "fetch" in unknown_task.err
    assert unknown_run.code == 2, unknown_run
    assert "no run 'no-such-run'" in unknown_run.err
    for result in (unknown_task, unknown_run):
        assert "Traceback" not in result.err
        assert len(result.err.strip().splitlines()) == 1


def test_a_scheduled_runs_overrides_are_said_to_come_from_the_trigger(project: Project) -> None:
    import time

    from flowstage.app.runs import open_store
    from flowstage.settings import load_project
    from flowstage.stores.deployments import Fire

    project.write(
        "workflows/nightly.yaml",
        """
        name: nightly
        variables: {region: EU}
        trigger: {schedule: "0 3 * * *", variables: {region: APAC}}
        tasks:
          - {name: hello, shell: "echo {{ var.region }}"}
        """,
    )
    assert project.cli("deploy", "workflows").code == 0
    run_id = _run(project, "nightly", "--var", "region=APAC")
    store = open_store(load_project(root=project.root))
    try:  # the fire the scheduler records for the run it starts
        fire = Fire("nightly", 1_700_000_000.0, "schedule", 1, run_id, time.time())
        assert store.deployments.claim_fire(fire, max_active=10, alive=lambda _: False) == "claimed"  # type: ignore[attr-defined]
    finally:
        store.close()

    found = _explain(project, run_id, "hello")

    assert found["variables"] == [{"name": "region", "value": "APAC", "source": "the trigger's variables (a scheduled run)"}]
