"""Which Python a python task runs on when it names none (SPEC §4): `preferences.python`, else the
newest version the workflow's tasks ask for, else the runner's own; `in_process` tasks stay in the runner.

The tasks return `sys.version_info[:2]` of the interpreter that ran them. The other versions are
found as `python3.X` on PATH; behind a pyenv shim with no version selected, the interpreter pyenv
has installed is put on PATH as `python3.X` for the run. Without them the test skips locally and
fails in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CI, Project
from tests.records import record_of, tasks_of

TASKS_PY = """
import sys


def version():
    return list(sys.version_info[:2])
"""
RUNNER = list(sys.version_info[:2])


def _find_python(version: str) -> str | None:
    """The real executable of a working `python{version}`, or None."""
    command = shutil.which(f"python{version}") or f"python{version}"
    tries: list[dict[str, str]] = [{}]
    pyenv = shutil.which("pyenv")
    if pyenv:  # a shim answers only for the versions selected: select an installed one for the probe
        listed = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, timeout=30, check=False)
        tries += [{"PYENV_VERSION": v} for v in listed.stdout.split() if v == version or v.startswith(version + ".")]
    for extra in tries:
        try:
            probe = subprocess.run(
                [command, "-c", "import sys; print(sys.executable)"],
                env={**os.environ, **extra},
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip():
            return probe.stdout.strip()
    return None


@pytest.fixture
def pythons(tmp_path: Path, project: Project) -> Callable[..., dict[str, str]]:
    """An environment for the CLI whose PATH has a working `python3.X` of each version asked for."""

    def env(*versions: str) -> dict[str, str]:
        folder = tmp_path / "bin"
        folder.mkdir(exist_ok=True)
        for version in versions:
            found = _find_python(version)
            if found is None:
                if CI:
                    pytest.fail(f"python{version} is not on PATH, and CI=true: this test must run in CI")
                pytest.skip(f"python{version} is not on PATH")
            link = folder / f"python{version}"
            if not link.exists():
                link.symlink_to(found)
        return project.env(PATH=f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")

    return env


def _versions(project: Project, workflow: str, env: dict[str, str]) -> dict[str, list[int]]:
    result = project.cli("run", workflow, "--json", env=env)
    assert result.code == 0, result
    record = record_of(result)
    assert all(t["status"] == "succeeded" for t in tasks_of(record).values()), record
    return {k: v for k, v in record["variables"].items() if isinstance(v, list)}


def test_a_python_task_without_interpreter_runs_on_the_version_its_siblings_ask_for(
    project: Project, pythons: Callable[..., dict[str, str]]
) -> None:
    project.write("tasks/ver.py", TASKS_PY)
    project.write(
        "workflows/versions.yaml",
        """
        name: versions
        tasks:
          - {name: a, python: "tasks/ver.py:version", interpreter: "3.12", save: a}
          - {name: b, python: "tasks/ver.py:version", save: b}
          - {name: c, python: "tasks/ver.py:version", in_process: true, save: c}
        """,
    )

    saved = _versions(project, "versions", pythons("3.12"))

    assert saved == {"a": [3, 12], "b": [3, 12], "c": RUNNER}


def test_the_newest_of_the_versions_asked_for_is_the_default(project: Project, pythons: Callable[..., dict[str, str]]) -> None:
    project.write("tasks/ver.py", TASKS_PY)
    project.write(
        "workflows/newest.yaml",
        """
        name: newest
        tasks:
          - {name: old, python: "tasks/ver.py:version", interpreter: "3.12", save: old}
          - {name: new, python: "tasks/ver.py:version", interpreter: "3.13", save: new}
          - {name: plain, python: "tasks/ver.py:version", save: plain}
        """,
    )

    saved = _versions(project, "newest", pythons("3.12", "3.13"))

    assert saved == {"old": [3, 12], "new": [3, 13], "plain": [3, 13]}


def test_preferences_python_is_the_default_over_what_the_tasks_ask_for(
    project: Project, pythons: Callable[..., dict[str, str]]
) -> None:
    project.write("tasks/ver.py", TASKS_PY)
    project.write(
        "workflows/preferred.yaml",
        """
        name: preferred
        preferences: {python: "3.12"}
        tasks:
          - {name: own, python: "tasks/ver.py:version", interpreter: "3.13", save: own}
          - {name: plain, python: "tasks/ver.py:version", save: plain}
        """,
    )

    saved = _versions(project, "preferred", pythons("3.12", "3.13"))

    assert saved == {"own": [3, 13], "plain": [3, 12]}


def test_an_interpreter_given_as_a_path_is_no_version_and_leaves_the_default_alone(
    project: Project, pythons: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = pythons("3.12")
    real = (tmp_path / "bin" / "python3.12").resolve()
    project.write("tasks/ver.py", TASKS_PY)
    project.write(
        "workflows/by_path.yaml",
        f"""
        name: by_path
        tasks:
          - {{name: own, python: "tasks/ver.py:version", interpreter: "{real}", save: own}}
          - {{name: plain, python: "tasks/ver.py:version", save: plain}}
        """,
    )

    saved = _versions(project, "by_path", env)

    assert saved == {"own": [3, 12], "plain": RUNNER}
