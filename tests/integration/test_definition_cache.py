"""Validated definitions and flowstage.yaml kept under `.flowstage/cache/`: a shortcut that never changes an answer.

A run of an unchanged workflow file reads the kept definition instead of validating it again; a
changed file, a changed notifier list or a damaged entry is validated again, and a project whose
cache folder cannot be written runs as well.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Project

CACHE = Path(".flowstage/cache/definitions")


def entries(project: Project) -> list[Path]:
    folder = project.root / CACHE
    return sorted(folder.glob("*.pickle")) if folder.is_dir() else []


def show(project: Project, run_id: str) -> dict[str, object]:
    result = project.cli("show", run_id, "--json")
    assert result.code == 0, result.err
    record: dict[str, object] = json.loads(result.out)
    return record


def run_json(project: Project, *args: str) -> dict[str, object]:
    result = project.cli("run", *args, "--json")
    assert result.code == 0, (result.out, result.err)
    record: dict[str, object] = json.loads(result.out)
    return record


def test_a_second_run_of_an_unchanged_file_reads_the_kept_definition_and_records_the_same(project: Project) -> None:
    project.write(
        "workflows/one.yaml", "name: one\nvariables: {who: world}\ntasks:\n  - {name: hi, shell: 'echo {{ var.who }}'}\n"
    )
    first = run_json(project, "workflows/one.yaml")
    kept = entries(project)
    assert len(kept) == 1
    mtime = kept[0].stat().st_mtime_ns
    second = run_json(project, "workflows/one.yaml")
    assert entries(project) == kept
    assert kept[0].stat().st_mtime_ns == mtime, "read, not written again"
    assert first["status"] == second["status"] == "succeeded"
    from flowstage.stores.sql.store import SqlRunStore

    store = SqlRunStore(f"sqlite:///{project.root / '.flowstage' / 'flowstage.db'}")
    try:
        one, two = store.get_run(str(first["id"])), store.get_run(str(second["id"]))
        assert one is not None
        assert two is not None
        assert one.definition == two.definition
        assert one.definition["tasks"][0]["shell"] == "echo {{ var.who }}"
    finally:
        store.close()


def test_a_changed_file_is_validated_again(project: Project) -> None:
    path = project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    assert run_json(project, "workflows/one.yaml")["status"] == "succeeded"
    path.write_text("name: one\ntasks:\n  - {name: a, shell: 'true', after: [nope]}\n")
    result = project.cli("run", "workflows/one.yaml")
    assert result.code == 2
    assert "unknown task 'nope'" in result.err
    path.write_text("name: one\ntasks:\n  - {name: b, shell: 'true'}\n")
    record = run_json(project, "workflows/one.yaml")
    assert [t["name"] for t in record["tasks"]] == ["b"]  # type: ignore[index,union-attr]


def test_a_notifier_removed_from_flowstage_yaml_is_seen_by_the_next_run(project: Project) -> None:
    project.write("flowstage.yaml", "notifiers:\n  ops: {command: 'true'}\n")
    project.write(
        "workflows/one.yaml", "name: one\nalerts: [{on: failed, notify: [ops]}]\ntasks:\n  - {name: a, shell: 'true'}\n"
    )
    assert run_json(project, "workflows/one.yaml")["status"] == "succeeded"
    project.write("flowstage.yaml", "notifiers:\n  team: {command: 'true'}\n")
    result = project.cli("run", "workflows/one.yaml")
    assert result.code == 2
    assert "unknown notifier 'ops'" in result.err


def test_a_damaged_entry_is_validated_again_and_replaced(project: Project) -> None:
    project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    run_json(project, "workflows/one.yaml")
    (entry,) = entries(project)
    entry.write_bytes(b"not a pickle")
    assert run_json(project, "workflows/one.yaml")["status"] == "succeeded"
    assert entry.read_bytes() != b"not a pickle"


def test_a_cache_folder_that_cannot_be_made_only_loses_the_shortcut(project: Project) -> None:
    project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    blocker = project.write(".flowstage/cache", "a file where the cache folder would be\n")
    for _ in range(2):
        assert run_json(project, "workflows/one.yaml")["status"] == "succeeded"
    assert blocker.read_text() == "a file where the cache folder would be\n"


def test_an_entry_that_cannot_be_written_leaves_nothing_half_written(project: Project) -> None:
    """A folder where the entry's name is taken by a directory: the write fails, the run goes on."""
    project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    run_json(project, "workflows/one.yaml")
    (entry,) = entries(project)
    entry.unlink()
    entry.mkdir()
    assert run_json(project, "workflows/one.yaml")["status"] == "succeeded"
    assert [p.name for p in entry.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_deployed_version_is_kept_too_and_a_new_version_runs_its_own_definition(project: Project) -> None:
    path = project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    assert project.cli("deploy", "workflows/one.yaml").code == 0
    assert [t["name"] for t in run_json(project, "one")["tasks"]] == ["a"]  # type: ignore[index,union-attr]
    before = set(entries(project))
    assert [t["name"] for t in run_json(project, "one")["tasks"]] == ["a"]  # type: ignore[index,union-attr]
    assert set(entries(project)) == before
    path.write_text("name: one\ntasks:\n  - {name: b, shell: 'true'}\n")
    assert project.cli("deploy", "workflows/one.yaml").code == 0
    assert [t["name"] for t in run_json(project, "one")["tasks"]] == ["b"]  # type: ignore[index,union-attr]
    assert project.cli("rollback", "one", "1").code == 0
    assert [t["name"] for t in run_json(project, "one")["tasks"]] == ["a"]  # type: ignore[index,union-attr]


def test_flowstage_yaml_is_kept_and_a_problem_found_later_still_points_at_its_line(project: Project) -> None:
    project.write("flowstage.yaml", "# the project\nconnections:\n  shop: ${SHOP_URL}\n")
    project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    env = project.env(SHOP_URL="sqlite:///shop.db")
    for _ in range(2):  # the first run makes the state folder, the second keeps the file read
        result = project.cli("run", "workflows/one.yaml", env=env)
        assert result.code == 0, result.err
    assert len(list((project.root / ".flowstage/cache/config").glob("*.marshal"))) == 1
    result = project.cli("run", "workflows/one.yaml")  # SHOP_URL unset: read from the kept document
    assert result.code == 2
    assert "flowstage.yaml:3:" in result.err
    assert "environment variable SHOP_URL is not set" in result.err
    project.write("flowstage.yaml", "# the project\nconnections:\n  shop: sqlite:///shop.db\nstorre: x\n")
    result = project.cli("run", "workflows/one.yaml")
    assert result.code == 2
    assert "flowstage.yaml:4:" in result.err
    assert "unknown key 'storre'" in result.err


def test_a_damaged_kept_flowstage_yaml_is_read_again(project: Project) -> None:
    project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    for _ in range(2):
        assert project.cli("run", "workflows/one.yaml").code == 0
    (kept,) = (project.root / ".flowstage/cache/config").glob("*.marshal")
    kept.write_bytes(b"\xff damaged")
    assert project.cli("run", "workflows/one.yaml").code == 0
    assert kept.read_bytes() != b"\xff damaged"
