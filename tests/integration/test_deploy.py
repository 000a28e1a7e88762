"""Deploy, versions, diff and rollback through the real CLI; runs by name use the current version.

A version holds the workflow file and the project files its tasks name; a deploy that changes
nothing makes no version, and a rollback makes an older version current again, so `run NAME`
runs the old tasks and records that version.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flowstage.deploy import deploy
from flowstage.settings import load_project
from flowstage.stores.sql.deployments import SqlDeploymentStore
from flowstage.stores.sql.store import SqlRunStore
from tests.conftest import Project, Result

V1 = """
name: nightly
description: the first version
trigger: {schedule: "30 23 * * *", timezone: Europe/Paris}
tasks:
  - name: old_step
    shell: echo old
  - name: query
    sql_file: sql/count.sql
"""

V2 = """
name: nightly
description: the second version
trigger: {schedule: "30 23 * * *", timezone: Europe/Paris}
tasks:
  - name: new_step
    shell: echo new
  - name: query
    sql_file: sql/count.sql
"""


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}\nstdout:\n{result.out}\nstderr:\n{result.err}"
    return result


def as_json(result: Result) -> Any:
    ok(result)
    return json.loads(result.out)


def has_offset(text: str) -> bool:
    return datetime.fromisoformat(text).utcoffset() is not None


@pytest.fixture
def nightly(project: Project) -> Project:
    project.write("sql/count.sql", "SELECT 1 AS one\n")
    project.write("workflows/nightly.yaml", V1)
    return project


def test_unchanged_deploy_makes_no_version(nightly: Project) -> None:
    first = as_json(nightly.cli("deploy", "workflows", "--json"))
    assert first == [{"name": "nightly", "version": 1, "previous": None, "created": True, "activated": True}]
    again = as_json(nightly.cli("deploy", "workflows/nightly.yaml", "--json"))
    assert again == [{"name": "nightly", "version": 1, "previous": 1, "created": False, "activated": False}]
    assert "unchanged, version 1" in ok(nightly.cli("deploy", "workflows")).out
    versions = as_json(nightly.cli("versions", "nightly", "--json"))
    assert [v["version"] for v in versions] == [1]


def test_a_changed_workflow_or_referenced_file_makes_a_new_version(nightly: Project) -> None:
    ok(nightly.cli("deploy", "workflows"))
    nightly.write("workflows/nightly.yaml", V2)
    assert "version 2 deployed (was 1)" in ok(nightly.cli("deploy", "workflows")).out
    nightly.write("sql/count.sql", "SELECT 2 AS two\n")  # only the SQL file changes
    assert "version 3 deployed (was 2)" in ok(nightly.cli("deploy", "workflows")).out
    versions = as_json(nightly.cli("versions", "nightly", "--json"))
    assert [v["version"] for v in versions] == [3, 2, 1]  # newest first
    assert [v["current"] for v in versions] == [True, False, False]
    assert versions[0]["files"] == ["sql/count.sql"]
    assert len({v["hash"] for v in versions}) == 3
    assert all(has_offset(v["deployed_at"]) for v in versions)
    assert versions[0]["source"] == "workflows/nightly.yaml"


def test_diff_is_a_unified_diff_of_the_file_and_the_files_it_references(nightly: Project) -> None:
    ok(nightly.cli("deploy", "workflows"))
    nightly.write("workflows/nightly.yaml", V2)
    nightly.write("sql/count.sql", "SELECT 2 AS two\n")
    ok(nightly.cli("deploy", "workflows"))
    text = ok(nightly.cli("diff", "nightly", "1", "2")).out
    assert "--- nightly v1/workflows/nightly.yaml\n+++ nightly v2/workflows/nightly.yaml\n" in text
    assert "-  - name: old_step\n" in text
    assert "+  - name: new_step\n" in text
    assert "--- nightly v1/sql/count.sql\n+++ nightly v2/sql/count.sql\n" in text
    assert "-SELECT 1 AS one\n+SELECT 2 AS two\n" in text
    assert " trigger:" in text  # context lines
    assert "identical" in ok(nightly.cli("diff", "nightly", "2", "2")).out
    missing = nightly.cli("diff", "nightly", "1", "9")
    assert missing.code == 2
    assert missing.err.strip() == "error: workflow 'nightly' has no version 9"


def test_rollback_then_run_by_name_runs_the_old_tasks_and_records_the_version(nightly: Project) -> None:
    ok(nightly.cli("deploy", "workflows"))
    nightly.write("workflows/nightly.yaml", V2)
    ok(nightly.cli("deploy", "workflows"))

    latest = as_json(nightly.cli("run", "nightly", "--json"))
    assert latest["version"] == 2
    assert {t["name"] for t in latest["tasks"]} == {"new_step", "query"}

    assert ok(nightly.cli("rollback", "nightly", "1")).out.strip() == "nightly: version 1 is current (was 2)"
    old = as_json(nightly.cli("run", "nightly", "--json"))
    assert old["status"] == "succeeded"
    assert old["version"] == 1
    assert {t["name"] for t in old["tasks"]} == {"old_step", "query"}
    runs = as_json(nightly.cli("runs", "nightly", "--json"))
    assert [r["version"] for r in runs] == [1, 2]

    # the history stays complete: both versions are kept, the current one marked
    versions = as_json(nightly.cli("versions", "nightly", "--json"))
    assert [(v["version"], v["current"]) for v in versions] == [(2, False), (1, True)]
    assert "already current" in ok(nightly.cli("rollback", "nightly", "1")).out
    workflows = as_json(nightly.cli("workflows", "--json"))
    assert workflows[0]["name"] == "nightly"
    assert workflows[0]["version"] == 1
    assert workflows[0]["versions"] == 2
    assert workflows[0]["last_run"]["id"] == old["id"]


def test_deploying_an_older_content_again_makes_that_version_current_without_a_new_one(nightly: Project) -> None:
    ok(nightly.cli("deploy", "workflows"))
    nightly.write("workflows/nightly.yaml", V2)
    ok(nightly.cli("deploy", "workflows"))
    nightly.write("workflows/nightly.yaml", V1)
    out = ok(nightly.cli("deploy", "workflows")).out
    assert out.strip() == "nightly: version 1 is current again, same content (was 2)"
    assert [v["version"] for v in as_json(nightly.cli("versions", "nightly", "--json"))] == [2, 1]


def test_a_name_never_deployed_runs_from_the_workflows_folder_without_a_version(project: Project) -> None:
    project.write("workflows/adhoc.yaml", "name: adhoc\ntasks:\n  - {name: hi, shell: echo hi}\n")
    record = as_json(project.cli("run", "adhoc", "--json"))
    assert record["version"] is None
    assert record["status"] == "succeeded"
    assert as_json(project.cli("workflows", "--json")) == []


def test_rollback_and_versions_of_unknown_names_or_versions_are_invalid_input(nightly: Project) -> None:
    ok(nightly.cli("deploy", "workflows"))
    for args, message in [
        (("rollback", "nightly", "7"), "error: workflow 'nightly' has no version 7 (versions 1 to 1)"),
        (("rollback", "ghost", "1"), "error: workflow 'ghost' was never deployed"),
        (("versions", "ghost"), "error: workflow 'ghost' was never deployed"),
    ]:
        result = nightly.cli(*args)
        assert result.code == 2, result
        assert result.err.strip() == message
        assert "Traceback" not in result.err


def test_an_invalid_file_deploys_nothing_and_says_where(nightly: Project) -> None:
    nightly.write("workflows/broken.yaml", "name: broken\ntasks:\n  - name: a\n    shell: echo\n    colour: red\n")
    result = nightly.cli("deploy", "workflows")
    assert result.code == 2
    assert "broken.yaml:5:5: unknown key 'colour'" in result.err
    assert "Traceback" not in result.err
    assert as_json(nightly.cli("workflows", "--json")) == []


def test_a_workflow_cannot_be_triggered_by_its_own_runs(project: Project) -> None:
    project.write(
        "workflows/loop.yaml",
        "name: loop\ntrigger: {after: {workflows: [loop]}}\ntasks:\n  - {name: a, shell: echo}\n",
    )
    result = project.cli("deploy", "workflows")
    assert result.code == 2
    assert "cannot be triggered by its own runs" in result.err


def test_schedule_prints_the_next_times_in_the_trigger_zone(nightly: Project) -> None:
    times = as_json(nightly.cli("schedule", "nightly", "--next", "3", "--json"))  # not deployed: read from the file
    assert len(times) == 3
    parsed = [datetime.fromisoformat(t) for t in times]
    assert all(t.utcoffset() is not None for t in parsed)
    assert all((t.hour, t.minute) == (23, 30) for t in parsed)
    assert parsed == sorted(parsed)
    ok(nightly.cli("deploy", "workflows"))
    text = ok(nightly.cli("schedule", "nightly")).out.splitlines()
    assert text[0] == "nightly v1: 30 23 * * * (Europe/Paris)"
    assert len(text) == 6
    nightly.write("workflows/manual.yaml", "name: manual\ntasks:\n  - {name: a, shell: echo}\n")
    result = nightly.cli("schedule", "manual")
    assert result.code == 2
    assert result.err.strip() == "error: workflow 'manual' has no schedule (it starts on demand)"


@pytest.mark.postgres
def test_concurrent_deploys_of_one_content_on_postgres_make_one_version(pg_schema_url: str, tmp_path: Path) -> None:
    (tmp_path / "flowstage.yaml").write_text(f"store: {pg_schema_url}\n")
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "w.yaml").write_text("name: w\ntasks:\n  - {name: a, shell: echo}\n")
    project = load_project(root=tmp_path)
    SqlRunStore(pg_schema_url).close()  # migrate once, before the race
    outcomes: list[Any] = []
    errors: list[BaseException] = []

    def one() -> None:
        store = SqlRunStore(pg_schema_url)
        try:
            outcomes.extend(deploy(project, [tmp_path / "workflows"], store=store))
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(o.created for o in outcomes) == 1
    store = SqlRunStore(pg_schema_url)
    try:
        assert [v.version for v in SqlDeploymentStore(store).versions("w")] == [1]
    finally:
        store.close()


def test_deploy_text_as_the_api_receives_it(project: Project) -> None:
    from flowstage.deploy import deploy_text
    from flowstage.errors import DefinitionError

    store = SqlRunStore(f"sqlite:///{project.root}/.flowstage/flowstage.db")
    proj = load_project(root=project.root)
    try:
        text = "name: posted\ntasks:\n  - {name: a, shell: echo}\n"
        first = deploy_text(proj, text, store=store)
        assert (first.name, first.version, first.created) == ("posted", 1, True)
        assert deploy_text(proj, text, store=store).created is False
        with pytest.raises(DefinitionError, match=r"<api>:3:5: unknown key 'colour'"):
            deploy_text(proj, "name: posted\ntasks:\n  - colour: red\n    name: a\n    shell: echo\n", store=store)
        version = SqlDeploymentStore(store).version("posted", 1)
        assert version is not None
        assert version.source == "<api>"
    finally:
        store.close()
