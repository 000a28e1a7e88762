"""Values that could take the runner down — a template that computes for ever or builds a huge
number — make their task fail with a clear error; the run goes on and ends, and can be cancelled."""

from __future__ import annotations

import time

from tests.conftest import Project
from tests.records import record_of, tasks_of


def test_a_huge_power_in_a_template_fails_its_task_at_once_and_the_run_goes_on(project: Project) -> None:
    project.write(
        "workflows/poison.yaml",
        """
        name: poison
        tasks:
          - {name: bad, shell: "echo {{ 9999999 ** 9999999 }}"}
          - {name: spin, shell: "echo {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"}
          - {name: good, shell: "echo fine"}
          - {name: after, shell: "echo after", after: {bad: failure, spin: failure}}
        """,
    )
    started = time.monotonic()
    result = project.cli("run", "poison", "--json", timeout=60)
    assert result.code == 0, result.err  # both failures are caught by `after`
    assert "Traceback" not in result.err
    tasks = tasks_of(record_of(result))
    assert tasks["bad"]["status"] == "failed"
    assert "may not build a value this large" in tasks["bad"]["error"]
    assert tasks["spin"]["status"] == "failed"
    assert "took longer than 5s to evaluate" in tasks["spin"]["error"]
    assert tasks["good"]["status"] == tasks["after"]["status"] == "succeeded"
    assert time.monotonic() - started < 45


def test_a_result_that_cannot_be_stored_fails_its_task_and_the_run_ends(project: Project) -> None:
    project.write("tasks/big.py", "def number():\n    return 10**5000\n\n\ndef inside():\n    return [1, 10**5000]\n")
    project.write(
        "workflows/huge.yaml",
        """
        name: huge
        tasks:
          - {name: number, python: "tasks/big.py:number", in_process: true, save: x}
          - {name: inside, python: "tasks/big.py:inside", in_process: true, save: y}
          - {name: caught, shell: "true", after: {number: failure, inside: failure}, when: all}
        """,
    )
    for _ in range(2):  # twice: the runner is never taken down, so it never poisons the next run
        result = project.cli("run", "huge", "--json", timeout=60)
        assert result.code == 0, result.err
        assert "internal error" not in result.err
        tasks = tasks_of(record_of(result))
        assert "more than 4,300 digits" in tasks["number"]["error"]
        assert "cannot be stored" in tasks["inside"]["error"]
        assert tasks["caught"]["status"] == "succeeded"
