"""Every user mistake ends with the exit code SPEC §5.1 gives it and one line on stderr.

0 success, 1 the run failed, 2 invalid input (file, arguments), 3 infrastructure (a store or an
executor that cannot be reached). Each case is one deliberate mistake, typed as a user would, in a
project of its own; the answer is a single line that names what is wrong, never a traceback.
"""

from __future__ import annotations

import pytest

from tests.conftest import Project

OK = 'name: ok\ntasks:\n  - {name: a, shell: "true"}\n'
UNREACHABLE = "postgresql+psycopg://flowstage@127.0.0.1:1/none"  # port 1: refused at once

# (case id, files written first, the command's arguments, extra environment, exit code, words on stderr)
MISTAKES: list[tuple[str, dict[str, str], list[str], dict[str, str], int, str]] = [
    ("validate a missing file", {}, ["validate", "workflows/none.yaml"], {}, 2, "workflows/none.yaml: no such file"),
    ("validate bad YAML", {"workflows/bad.yaml": "name: [x\n"}, ["validate", "workflows/bad.yaml"], {}, 2, "invalid YAML"),
    ("run a missing file", {}, ["run", "workflows/none.yaml"], {}, 2, "no such file"),
    ("run an unknown workflow", {}, ["run", "nope"], {}, 2, "no workflow named 'nope'"),
    (
        "run an invalid workflow",
        {"workflows/bad.yaml": 'name: bad\ntasks:\n  - {name: a, shell: "true", retries: lots}\n'},
        ["run", "bad"],
        {},
        2,
        'tasks[0].retries: expected a whole number, got "lots"',
    ),
    ("run with --var lacking =", {"workflows/ok.yaml": OK}, ["run", "ok", "--var", "x"], {}, 2, "--var 'x': expected NAME=VALUE"),
    ("run with --var lacking a name", {"workflows/ok.yaml": OK}, ["run", "ok", "--var", "=1"], {}, 2, "is not a variable name"),
    ("run with an unknown option", {"workflows/ok.yaml": OK}, ["run", "ok", "--frob"], {}, 2, "no such option '--frob'"),
    (
        "run on an unknown executor",
        {"workflows/ok.yaml": OK},
        ["run", "ok", "--executor", "bogus://x"],
        {},
        2,
        "no executor 'bogus'",
    ),
    ("show an unknown run", {}, ["show", "20000101000000abcdef"], {}, 2, "no run '20000101000000abcdef'"),
    ("logs of an unknown run", {}, ["logs", "20000101000000abcdef"], {}, 2, "no run '20000101000000abcdef'"),
    ("resume an unknown run", {}, ["resume", "20000101000000abcdef"], {}, 2, "no run '20000101000000abcdef'"),
    ("cancel an unknown run", {}, ["cancel", "20000101000000abcdef"], {}, 2, "no run '20000101000000abcdef'"),
    ("logs without a run id", {}, ["logs"], {}, 2, "missing argument 'RUN_ID'"),
    ("logs at an unknown level", {}, ["logs", "x", "--level", "loud"], {}, 2, "invalid value for '--level': 'loud'"),
    ("runs of an unknown status", {}, ["runs", "--status", "weird"], {}, 2, "invalid value for '--status': 'weird'"),
    ("runs with a limit of 0", {}, ["runs", "--limit", "0"], {}, 2, "invalid value for '--limit': 0"),
    ("runs with a limit in words", {}, ["runs", "--limit", "ten"], {}, 2, "invalid value for '--limit': 'ten'"),
    ("graph in an unknown format", {"workflows/ok.yaml": OK}, ["graph", "ok", "--format", "png"], {}, 2, "'png' is not one of"),
    ("graph of an unknown workflow", {}, ["graph", "nope"], {}, 2, "no workflow named 'nope'"),
    (
        "graph into a missing folder",
        {"workflows/ok.yaml": OK},
        ["graph", "ok", "-o", "no/such/folder/g.txt"],
        {},
        2,
        "-o no/such/folder/g.txt: cannot write it",
    ),
    ("an unknown command", {}, ["frobnicate"], {}, 2, "no such command 'frobnicate'"),
    ("versions of a workflow never deployed", {}, ["versions", "nope"], {}, 2, "workflow 'nope' was never deployed"),
    ("rollback of a workflow never deployed", {}, ["rollback", "nope", "1"], {}, 2, "workflow 'nope' was never deployed"),
    ("schedule of no times", {"workflows/ok.yaml": OK}, ["schedule", "ok", "--next", "0"], {}, 2, "invalid value for '--next'"),
    ("a catalog table that does not exist", {}, ["catalog", "raw.nope"], {}, 2, "no catalog table 'raw.nope'"),
    ("a token of an unknown role", {}, ["token", "create", "--role", "god"], {}, 2, "invalid value for '--role': 'god'"),
    ("revoke an unknown token", {}, ["token", "revoke", "nope"], {}, 2, "no token 'nope'"),
    ("test an unknown notifier", {}, ["notify", "test", "nope"], {}, 2, "no notifier 'nope'"),
    ("a misspelt key in flowstage.yaml", {"flowstage.yaml": "stor: sqlite:///x.db\n"}, ["runs"], {}, 2, "unknown key 'stor'"),
    ("a store of an unknown kind", {}, ["runs"], {"FLOWSTAGE_STORE": "bogus://x"}, 2, "run store bogus://x"),
    ("a store that cannot be reached", {}, ["runs"], {"FLOWSTAGE_STORE": UNREACHABLE}, 3, "is unreachable"),
    (
        "a run on a store that cannot be reached",
        {"workflows/ok.yaml": OK},
        ["run", "ok"],
        {"FLOWSTAGE_STORE": UNREACHABLE},
        3,
        "is unreachable",
    ),
    (
        "a connection that cannot be reached fails its task",
        {"workflows/db.yaml": "name: db\ntasks:\n  - {name: q, sql: SELECT 1, connection: shop}\n"},
        ["run", "db"],
        {"FLOWSTAGE_CONN_SHOP": UNREACHABLE},
        1,
        "q: connection 'shop'",
    ),
    (
        "a task that fails fails the run",
        {"workflows/fails.yaml": 'name: fails\ntasks:\n  - {name: a, shell: "exit 3"}\n'},
        ["run", "fails"],
        {},
        1,
        "a: command exited with code 3",
    ),
]


@pytest.mark.parametrize(("files", "args", "env", "code", "words"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_a_user_mistake_exits_with_its_code_and_one_line(
    project: Project, files: dict[str, str], args: list[str], env: dict[str, str], code: int, words: str
) -> None:
    for rel, text in files.items():
        path = project.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    result = project.cli(*args, env=project.env(**env), timeout=60)

    assert result.code == code, result
    assert "Traceback" not in result.out + result.err, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert words in lines[0], lines[0]
    assert "internal error" not in lines[0]
