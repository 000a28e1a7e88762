"""The listings people read: headers, columns that never shift, times with their zone, short numbers."""

from __future__ import annotations

import json

from tests.conftest import Project


def test_runs_is_a_table_whose_columns_hold_with_long_names_and_whose_times_name_their_zone(project: Project) -> None:
    long_name = "a_workflow_with_a_name_far_longer_than_the_column_would_be"
    project.write(f"workflows/{long_name}.yaml", f"name: {long_name}\ntasks:\n  - {{name: a, shell: 'true'}}\n")
    project.write("workflows/short.yaml", "name: short\ntasks:\n  - {name: a, shell: 'exit 1'}\n")
    assert project.cli("run", long_name).code == 0
    assert project.cli("run", "short").code == 1
    table = project.cli("runs", env=project.env(TZ="Europe/Paris")).out.splitlines()
    assert table[0].split() == ["ID", "WORKFLOW", "VERSION", "STATUS", "STARTED", "DURATION"]
    rows = [line for line in table[2:] if line.strip()]
    assert len(rows) == 2
    column = table[0].index("STATUS")
    assert {row[column:].split()[0] for row in rows} == {"succeeded", "failed"}, table
    assert all(" CET " in row or " CEST " in row for row in rows), table
    utc = project.cli("runs", "--utc").out
    assert " UTC " in utc


def test_show_prints_metrics_short_and_long_values_cut(project: Project) -> None:
    project.write("tasks/t.py", "def big():\n    return 'x' * 500\n\n\ndef slow():\n    return 1 / 3\n")
    project.write(
        "workflows/w.yaml",
        """
        name: w
        tasks:
          - {name: big, python: "tasks/t.py:big", in_process: true, save: long_text}
          - {name: third, python: "tasks/t.py:slow", in_process: true, save: third}
        """,
    )
    run_id = json.loads(project.cli("run", "w", "--json").out)["id"]
    out = project.cli("show", run_id).out
    assert "(502 chars)" in out
    assert "x" * 200 not in out
    runtime = next(line for line in out.splitlines() if line.startswith("metrics: runtime_seconds="))
    digits = runtime.split("=")[1].split(",")[0]
    assert len(digits.replace(".", "").lstrip("0")) <= 4, runtime


def test_versions_has_a_header(project: Project) -> None:
    project.write("workflows/v.yaml", "name: v\ntasks:\n  - {name: a, shell: 'true'}\n")
    assert project.cli("deploy", "workflows/v.yaml").code == 0
    lines = project.cli("versions", "v").out.splitlines()
    assert lines[0].split() == ["CURRENT", "VERSION", "DEPLOYED", "HASH", "BY", "SOURCE", "FILES"]
    assert lines[2].split()[:2] == ["*", "1"]


def test_every_json_option_says_what_it_prints(project: Project) -> None:
    from click.testing import CliRunner

    from flowstage.cli.main import cli

    missing = []
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None
        commands = list(getattr(command, "commands", {}).values()) or [command]
        for sub in commands:
            for param in sub.params:
                if "--json" in getattr(param, "opts", ()) and not getattr(param, "help", None):
                    missing.append(f"{name} {sub.name}")
    assert missing == [], f"--json without help text: {missing}"
    assert CliRunner().invoke(cli, ["runs", "--help"]).exit_code == 0
