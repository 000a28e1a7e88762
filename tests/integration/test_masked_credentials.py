"""Passwords written in URLs outside `flowstage.yaml`: given with ``--var``, or written in a deployed
workflow. The run uses them as given; the store, `show`, `runs` and `logs` hold them masked
(``user:***@``). A resume needs a ``--var`` password again; a run of a deployed version takes the
password back from the project's workflow file.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Project

PASSWORD = "s3cr3t-Pw"
URL = f"postgresql://app:{PASSWORD}@db.example.com/shop"


def _store_bytes(project: Project) -> bytes:
    state = project.root / ".flowstage"
    return b"".join(p.read_bytes() for p in sorted(state.iterdir()) if p.name.startswith("flowstage.db") and p.is_file())


def _outputs(project: Project, run_id: str) -> str:
    parts = [
        project.cli("show", run_id).out,
        project.cli("show", run_id, "--json").out,
        project.cli("logs", run_id).out,
        project.cli("runs", "--json").out,
    ]
    return "\n".join(parts)


def test_a_password_given_with_var_is_used_but_never_stored_and_resume_asks_for_it_again(project: Project) -> None:
    project.write(
        "workflows/load.yaml",
        """
        name: load
        variables: {target: none}
        tasks:
          - name: check
            shell: "echo target {{ var.target }}; test {{ var.target }} = 'URL' && test -e ready"
        """.replace("URL", URL),
    )

    first = project.cli("run", "load", "--var", f"target={URL}", "--json")

    assert first.code == 1, first.err  # the real value reached the task: only `ready` was missing
    run_id = json.loads(first.out)["id"]
    record = json.loads(project.cli("show", run_id, "--json").out)
    assert record["variables"]["target"] == "postgresql://app:***@db.example.com/shop"
    assert "target postgresql://app:***@db.example.com/shop" in project.cli("logs", run_id).out
    assert PASSWORD not in first.out + first.err + _outputs(project, run_id)
    assert PASSWORD.encode() not in _store_bytes(project)
    (project.root / "ready").write_text("")

    refused = project.cli("resume", run_id)

    assert refused.code == 2, refused
    assert f"run {run_id}: variable target holds a password written in a URL" in refused.err
    assert "--var target=postgresql://app:PASSWORD@db.example.com/shop" in refused.err
    other = project.cli("resume", run_id, "--var", "target=postgresql://app:x@elsewhere/shop")
    assert other.code == 2
    assert "not the value the run started with" in other.err

    resumed = project.cli("resume", run_id, "--var", f"target={URL}", "--json")

    assert resumed.code == 0, resumed.err
    assert json.loads(resumed.out)["status"] == "succeeded"
    assert PASSWORD not in resumed.out + _outputs(project, run_id)
    assert PASSWORD.encode() not in _store_bytes(project)


def test_a_deployed_version_keeps_no_password_and_its_runs_take_it_back_from_the_file(project: Project) -> None:
    workflow = project.write(
        "workflows/sync.yaml",
        """
        name: sync
        variables: {source: "URL"}
        tasks:
          - name: check
            shell: "test {{ var.source }} = 'URL' && touch matched && test -e ready"
        """.replace("URL", URL),
    )
    assert project.cli("deploy", "workflows/sync.yaml").code == 0
    assert PASSWORD.encode() not in _store_bytes(project)
    assert PASSWORD not in project.cli("diff", "sync", "1", "1").out

    ran = project.cli("run", "sync", "--json")

    assert ran.code == 1, ran.err
    assert (project.root / "matched").exists()  # the task had the password the file holds
    run_id = json.loads(ran.out)["id"]
    (project.root / "ready").write_text("")
    resumed = project.cli("resume", run_id, "--json")  # the default's password comes from the file too
    assert resumed.code == 0, resumed.err
    assert PASSWORD not in _outputs(project, run_id)
    assert PASSWORD.encode() not in _store_bytes(project)
    _change_host(workflow)  # the file no longer explains the version: what the deploy kept here does
    assert project.cli("run", "sync").code == 0
    kept = project.root / ".flowstage" / "credentials.json"
    assert kept.stat().st_mode & 0o077 == 0
    kept.unlink()  # as on another machine sharing the store

    refused = project.cli("run", "sync")

    assert refused.code == 2, refused
    assert "workflow 'sync': variables.source" in refused.err
    assert "holds a password written in a URL, which is not stored" in refused.err
    assert PASSWORD not in refused.err


def test_a_resumed_parent_gives_its_sub_run_the_password_again(project: Project) -> None:
    project.write(
        "workflows/parent.yaml",
        """
        name: parent
        variables: {target: none}
        tasks:
          - name: child
            workflow: child
            variables: {target: "{{ var.target }}"}
        """,
    )
    project.write(
        "workflows/child.yaml",
        """
        name: child
        variables: {target: none}
        tasks:
          - name: check
            shell: "test {{ var.target }} = 'URL' && test -e ready"
        """.replace("URL", URL),
    )
    first = project.cli("run", "parent", "--var", f"target={URL}", "--json")
    assert first.code == 1, first.err
    run_id = json.loads(first.out)["id"]
    (project.root / "ready").write_text("")

    resumed = project.cli("resume", run_id, "--var", f"target={URL}", "--json")

    assert resumed.code == 0, resumed.out + resumed.err
    assert PASSWORD.encode() not in _store_bytes(project)


def _change_host(path: Path) -> None:
    path.write_text(path.read_text().replace("db.example.com", "db2.example.com"))


def test_a_fan_out_copy_that_returned_a_password_is_run_again_on_resume_never_stored(project: Project) -> None:
    project.write(
        "tasks/urls.py",
        """
        import os


        def url(item):
            with open("ledger.txt", "a") as fh:
                fh.write(item + "\\n")
            if item == "bad" and not os.path.exists("ready"):
                raise RuntimeError("not yet")
            return "postgresql://app:PASSWORD@db/" + item if item == "secret" else item
        """.replace("PASSWORD", PASSWORD),
    )
    project.write(
        "workflows/urls.yaml",
        """
        name: urls
        preferences: {max_parallel: 1}
        tasks:
          - name: copies
            for_each: "{{ ['plain', 'secret', 'bad'] }}"
            python: tasks/urls.py:url
            with: {item: "{{ task.item }}"}
            save: urls
          - name: use
            after: {copies: success}
            shell: "test '{{ var.urls[1] }}' = 'postgresql://app:PASSWORD@db/secret'"
        """.replace("PASSWORD", PASSWORD),
    )
    first = project.cli("run", "urls", "--json")
    assert first.code == 1, first.err
    run_id = json.loads(first.out)["id"]
    (project.root / "ready").write_text("")

    resumed = project.cli("resume", run_id, "--json")

    assert resumed.code == 0, resumed.out + resumed.err
    ledger = (project.root / "ledger.txt").read_text().split()
    assert ledger.count("plain") == 1  # its kept result holds no password: used as kept
    assert ledger.count("secret") == 2  # the store kept it masked: run again for the real one
    assert PASSWORD.encode() not in _store_bytes(project)


def test_a_password_from_a_var_url_printed_alone_by_a_task_is_masked_in_its_logs(project: Project) -> None:
    project.write(
        "tasks/leak.py",
        "from urllib.parse import urlsplit\n\ndef leak(url):\n    print('the password is', urlsplit(url).password)\n",
    )
    project.write(
        "workflows/leaky.yaml",
        """
        name: leaky
        variables: {target: none}
        tasks:
          - {name: in_worker, python: tasks/leak.py:leak, with: {url: "{{ var.target }}"}}
          - {name: in_runner, python: tasks/leak.py:leak, in_process: true, with: {url: "{{ var.target }}"}}
          - name: in_shell
            shell: "python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).password)' {{ var.target }}"
          - {name: failing, shell: "echo {{ var.target }} | cut -d: -f3 | cut -d@ -f1 >&2; exit 1"}
        """,
    )

    result = project.cli("run", "leaky", "--var", f"target={URL}", "--json")

    assert result.code == 1, result.err
    run_id = json.loads(result.out)["id"]
    logs = project.cli("logs", run_id).out
    assert logs.count("the password is ***") == 2, logs
    assert PASSWORD not in result.out + result.err + _outputs(project, run_id)
    assert PASSWORD.encode() not in _store_bytes(project)
