"""`flowstage validate` warns of a template reading a variable nothing defines (a run would fail on it).

A warning leaves the exit code 0 (a run may be given `--var x=...`); `validate --strict` exits 2.
"""

from __future__ import annotations

import json

from tests.conftest import Project

UNDECLARED = """
name: wf
variables: {region: EU}
tasks:
  - name: a
    shell: "echo {{ var.region }} {{ var.regoin }}"
  - name: b
    if: var.rows > 0
    shell: "true"
  - name: c
    http: {url: "http://127.0.0.1:9/{{ var['path'] }}"}
"""


def warning(name: str) -> str:
    return f"warning: var.{name} is not declared in variables: and no task saves it; a run fails unless --var {name}=... is given"


def test_validate_warns_at_each_undeclared_variable_and_exits_0(project: Project) -> None:
    project.write("workflows/wf.yaml", UNDECLARED)

    result = project.cli("validate", "workflows/wf.yaml")

    assert result.code == 0, result
    assert result.err.splitlines() == [
        f"workflows/wf.yaml:5:5: {warning('regoin')}",
        f"workflows/wf.yaml:7:5: {warning('rows')}",
        f"workflows/wf.yaml:10:12: {warning('path')}",
    ]
    assert result.out.strip() == "1 file valid (3 warnings)"


def test_validate_strict_fails_on_an_undeclared_variable(project: Project) -> None:
    project.write("workflows/wf.yaml", UNDECLARED)

    result = project.cli("validate", "--strict", "workflows/wf.yaml")

    assert result.code == 2, result
    assert len(result.err.splitlines()) == 3
    assert "valid" not in result.out
    assert "Traceback" not in result.err


def test_validate_json_marks_warnings_by_level(project: Project) -> None:
    project.write("workflows/wf.yaml", UNDECLARED)

    result = project.cli("validate", "--json", "workflows/wf.yaml")

    assert result.code == 0, result
    found = json.loads(result.out)
    assert [(p["line"], p["level"]) for p in found] == [(5, "warning"), (7, "warning"), (10, "warning")]
    assert found[0]["message"] == warning("regoin")


def test_every_way_of_defining_a_variable_is_known_to_validate(project: Project) -> None:
    project.write(
        "packages/orders.yaml", "name: orders\nvariables: {min_amount: 0}\nsources: {o: {file: o.csv}}\nsteps: [{from: o}]\n"
    )
    project.write(
        "workflows/wf.yaml",
        """
        name: wf
        variables: {region: EU, campaign: null}
        trigger: {schedule: "0 1 * * *", variables: {zone: north}}
        tasks:
          - {name: count, sql: "SELECT 1", save: rows}
          - {name: pair, sql: "SELECT 1 AS a, 2 AS b", save: {first: a, second: b}}
          - {name: every, sql: "SELECT 1", save_rows: lines}
          - name: load
            dataflow: packages/orders.yaml
            variables: {min_amount: "{{ var.min_amount }}"}
          - name: inline
            dataflow: {name: p, variables: {limit_to: 3}, sources: {o: {file: o.csv}}, steps: [{from: o}]}
          - name: use
            after: [count, pair, every, load, inline]
            if: var.rows > 0 and var.campaign is none or var.optional is defined
            shell: >-
              echo {{ var.region }} {{ var.zone }} {{ var.first }} {{ var.second }} {{ var.lines }}
              {{ var.limit_to }} {{ var.own }} {{ var.maybe | default('x') }} {{ var.get('other') }}
            variables: {own: 1}
        """,
    )

    result = project.cli("validate", "--strict", "workflows/wf.yaml")

    assert result.code == 0, result
    assert result.err == ""
    assert result.out.strip() == "1 file valid"


def test_validate_of_the_example_project_has_no_warning(project: Project) -> None:
    made = project.cli("init", "demo")
    assert made.code == 0, made

    result = project.cli("validate", "--strict", "demo")

    assert result.code == 0, result
    assert "warning" not in result.err
