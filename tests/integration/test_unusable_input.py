"""A run store or a definition file that cannot be used says why in one line, with the exit code of
its kind: a URL or file that is wrong is bad input (2), a store that cannot be reached or written is
infrastructure (3)."""

from __future__ import annotations

import pytest

from tests.conftest import Project


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://app@127.0.0.1:notaport/db", "not a database URL"),
        ("mysql+pymysql://root:s3cret@127.0.0.1:3306/test", "runs are kept in SQLite (sqlite:///path) or PostgreSQL"),
        ("nosuchdb://h/x", "runs are kept in SQLite (sqlite:///path) or PostgreSQL"),
    ],
)
@pytest.mark.parametrize("command", [("runs",), ("run", "workflows/one.yaml")])
def test_a_store_url_that_cannot_hold_runs_is_bad_input(
    project: Project, url: str, message: str, command: tuple[str, ...]
) -> None:
    project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    result = project.cli(*command, env=project.env(FLOWSTAGE_STORE=url))
    assert result.code == 2, result.err
    assert message in result.err
    assert "internal error" not in result.err
    assert "Traceback" not in result.err
    assert "s3cret" not in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_store_that_cannot_be_created_names_the_file_in_one_line(project: Project) -> None:
    (project.root / ".flowstage" / "flowstage.db.migrate.lock").mkdir(parents=True)
    result = project.cli("runs")
    assert result.code == 3, result.err
    assert "cannot be created or brought to the current schema" in result.err
    assert "flowstage.db.migrate.lock" in result.err
    assert "internal error" not in result.err


@pytest.mark.parametrize(
    ("path", "content", "where"),
    [
        ("flowstage.yaml", b"store: \xff\xfe\n", "flowstage.yaml:1:8: cannot read: not UTF-8 text (byte 0xff)"),
        ("workflows/one.yaml", b"name: one\n# \xe9t\xe9\ntasks: []\n", "one.yaml:2:3: cannot read: not UTF-8 text (byte 0xe9)"),
    ],
)
def test_a_definition_file_that_is_not_utf8_is_bad_input_at_its_line(
    project: Project, path: str, content: bytes, where: str
) -> None:
    if path != "workflows/one.yaml":
        project.write("workflows/one.yaml", "name: one\ntasks:\n  - {name: a, shell: 'true'}\n")
    (project.root / path).parent.mkdir(parents=True, exist_ok=True)
    (project.root / path).write_bytes(content)
    result = project.cli("run", "workflows/one.yaml")
    assert result.code == 2, result.err
    assert where in result.err
    assert "internal error" not in result.err


def test_a_dataflow_package_without_end_is_refused_not_read_for_ever(project: Project) -> None:
    project.write("workflows/zero.yaml", "name: zero\ntasks:\n  - {name: a, dataflow: /dev/zero}\n")
    result = project.cli("run", "workflows/zero.yaml", "--json", timeout=60)
    assert result.code == 1, result.err
    assert "larger than 64 MiB: not a dataflow package" in result.out
