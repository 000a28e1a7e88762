"""A task's process does not inherit the run's secrets unless its `env:` asks (SPEC §1).

Withheld: `FLOWSTAGE_CONN_*`, `FLOWSTAGE_STORE`, and the variables flowstage.yaml substitutes into
connection or store URLs (`${PW}`). A shell task's `env:` hands one over by name:
`{connection: x}` (the URL as settings resolve it), `{env: PW}`, `{store: true}`. And every line
of a task's output is masked like an error: a task that echoes a secret it was given logs ``***``,
and the password reaches neither the CLI's output nor the bytes of the run store.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Project, Result
from tests.records import record_of, tasks_of

PASSWORD = "s3cret"
URL_X = f"postgresql://u:{PASSWORD}@127.0.0.1/db"
PW = "pw-Y-9z7"  # substituted into connection y's URL by flowstage.yaml

CONFIG = """
connections:
  y: postgresql://app:${PW}@127.0.0.1/shop
"""

TASKS_PY = """
import os

NAMES = ("FLOWSTAGE_CONN_X", "PW", "FLOWSTAGE_STORE", "PLAIN_SETTING")


def environment():
    return {name: os.environ.get(name) for name in NAMES}


def echo_file(path):
    with open(path) as fh:
        print("read:", fh.read().strip())
"""


@pytest.fixture
def secret_project(project: Project) -> Project:
    project.write("flowstage.yaml", CONFIG)
    project.write("tasks/env.py", TASKS_PY)
    return project


def env_of(project: Project) -> dict[str, str]:
    store = f"sqlite:///{project.root / '.flowstage' / 'flowstage.db'}"
    return project.env(FLOWSTAGE_CONN_X=URL_X, PW=PW, FLOWSTAGE_STORE=store, PLAIN_SETTING="kept")


def run(project: Project, workflow: str, *, code: int = 0) -> tuple[dict[str, Any], str]:
    """The run record of `flowstage run --json` and the run's logs (`flowstage logs`), both checked for leaks."""
    env = env_of(project)
    ran = project.cli("run", workflow, "--json", env=env)
    assert ran.code == code, ran
    record = record_of(ran)
    logs = project.cli("logs", record["id"], env=env)
    assert logs.code == 0, logs
    shown = project.cli("show", record["id"], "--json", env=env)
    assert_no_secret(ran, logs, shown)
    assert_store_clean(project)
    return record, logs.out


def assert_no_secret(*results: Result) -> None:
    for result in results:
        for secret in (PASSWORD, PW):
            assert secret not in result.out + result.err, f"{secret!r} leaked:\n{result.out}\n{result.err}"


def assert_store_clean(project: Project) -> None:
    files = sorted((project.root / ".flowstage").glob("flowstage.db*"))
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in (PASSWORD, PW):
            assert secret.encode() not in data, f"{secret!r} leaked into {path.name}"


def log_lines(logs: str, task: str) -> list[str]:
    """The messages of `task`'s log lines (`flowstage logs` prints `date time LEVEL task#n: message`)."""
    out = []
    for line in logs.splitlines():
        head, sep, message = line.partition(": ")
        if sep and head.split()[-1].startswith(f"{task}#"):
            out.append(message)
    return out


def test_a_shell_task_inherits_no_connection_store_or_substituted_secret(secret_project: Project) -> None:
    secret_project.write(
        "workflows/leak.yaml",
        """
        name: leak
        tasks:
          - name: show_env
            shell: 'echo "[$FLOWSTAGE_CONN_X] [$PW] [$FLOWSTAGE_STORE] [$PLAIN_SETTING]"'
        """,
    )

    _, logs = run(secret_project, "leak")

    assert "[] [] [] [kept]" in log_lines(logs, "show_env")


def test_a_python_task_child_gets_the_same_filtered_environment(secret_project: Project) -> None:
    secret_project.write(
        "workflows/pyenv.yaml",
        """
        name: pyenv
        tasks:
          - {name: look, python: "tasks/env.py:environment", save: seen}
        """,
    )

    record, _ = run(secret_project, "pyenv")

    seen = tasks_of(record)["look"]["saved"]["seen"]
    assert seen == {"FLOWSTAGE_CONN_X": None, "PW": None, "FLOWSTAGE_STORE": None, "PLAIN_SETTING": "kept"}


def test_a_connection_given_in_env_reaches_the_task_but_never_the_logs(secret_project: Project) -> None:
    secret_project.write(
        "workflows/given.yaml",
        """
        name: given
        tasks:
          - name: use_url
            shell: 'echo "$X_URL" > out.txt; echo "url is $X_URL"; echo "y is $Y_URL"; echo "pw is $THE_PW"'
            env:
              X_URL: {connection: x}
              Y_URL: {connection: y}
              THE_PW: {env: PW}
              PLAIN: not a secret
          - name: print_file
            after: [use_url]
            python: tasks/env.py:echo_file
            with: {path: out.txt}
        """,
    )

    _, logs = run(secret_project, "given")

    assert (secret_project.root / "out.txt").read_text().strip() == URL_X  # the task saw the password
    lines = log_lines(logs, "use_url")
    assert "url is postgresql://u:***@127.0.0.1/db" in lines
    assert "y is postgresql://app:***@127.0.0.1/shop" in lines
    assert "pw is ***" in lines
    assert "read: postgresql://u:***@127.0.0.1/db" in log_lines(logs, "print_file")


def test_the_store_url_is_given_by_env_store(secret_project: Project) -> None:
    secret_project.write(
        "workflows/store.yaml",
        """
        name: store
        tasks:
          - name: where
            shell: 'printf "%s" "$RUN_STORE" > store.txt'
            env: {RUN_STORE: {store: true}}
        """,
    )

    run(secret_project, "store")

    assert (secret_project.root / "store.txt").read_text() == env_of(secret_project)["FLOWSTAGE_STORE"]


def test_variables_substituted_into_the_store_url_are_withheld_too(project: Project) -> None:
    project.write("flowstage.yaml", "store: sqlite:///${STATE_DIR}/runs.db\n")
    project.write(
        "workflows/state.yaml",
        """
        name: state
        tasks:
          - {name: look, shell: 'echo "[$STATE_DIR] [$OTHER]"'}
        """,
    )
    env = project.env(STATE_DIR=str(project.root), OTHER="visible")

    ran = project.cli("run", "state", "--json", env=env)

    assert ran.code == 0, ran
    logs = project.cli("logs", record_of(ran)["id"], "--json", env=env)
    messages = [entry["message"] for entry in json.loads(logs.out)]
    assert "[] [visible]" in messages


def test_an_unknown_connection_in_env_fails_the_task_clearly(secret_project: Project) -> None:
    secret_project.write(
        "workflows/unknown.yaml",
        """
        name: unknown
        tasks:
          - {name: t, shell: "true", env: {U: {connection: nope}}}
        """,
    )

    record, _ = run(secret_project, "unknown", code=1)

    error = tasks_of(record)["t"]["error"]
    assert "unknown connection 'nope'" in error
