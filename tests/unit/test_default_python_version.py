"""The default interpreter of python tasks (SPEC §4), as the workflow decides it: a pure function of the definition."""

from __future__ import annotations

import textwrap

import pytest

from flowstage.model.loader import load_text


def _workflow(preferences: str, *interpreters: str | None) -> str:
    tasks = "\n".join(
        f"  - {{name: t{i}, python: 'tasks/x.py:f'" + (f", interpreter: '{v}'" if v is not None else "") + "}"
        for i, v in enumerate(interpreters)
    )
    return f"name: w\n{preferences}\ntasks:\n{tasks}\n  - {{name: s, shell: 'true'}}\n"


@pytest.mark.parametrize(
    ("preferences", "interpreters", "default"),
    [
        ("", (None, None), None),  # nothing asked: the runner's own
        ("", ("3.12", None), "3.12"),
        ("", ("3.11", "3.12", None), "3.12"),
        ("", ("3.9", "3.12", None), "3.12"),  # by number: 3.12 is newer than 3.9
        ("", ("3.12", "3.9"), "3.12"),
        ("", ("3", "3.10"), "3.10"),
        ("", ("venvs/old", None), None),  # a path is no version
        ("", ("/usr/bin/python3", "3.11", None), "3.11"),
        ("preferences: {python: '3.11'}", ("3.13", None), "3.11"),  # the preference wins
        ("preferences: {python: 3.12}", (None,), "3.12"),  # a number in YAML reads as its text
        ("preferences: {python: venvs/etl}", ("3.13",), "venvs/etl"),
    ],
)
def test_the_default_python_is_the_preference_else_the_newest_version_the_tasks_ask_for(
    preferences: str, interpreters: tuple[str | None, ...], default: str | None
) -> None:
    workflow = load_text(textwrap.dedent(_workflow(preferences, *interpreters)), "w.yaml")
    assert workflow.default_python() == default


def test_the_default_python_counts_the_tasks_of_every_stage() -> None:
    text = """
    name: w
    stages:
      - name: one
        tasks: [{name: a, python: "tasks/x.py:f"}]
      - name: two
        tasks: [{name: b, python: "tasks/x.py:f", interpreter: "3.13"}]
    """
    assert load_text(textwrap.dedent(text), "w.yaml").default_python() == "3.13"
