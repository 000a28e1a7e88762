"""`flowstage validate` says each mistake in the words of a workflow file, never in a library's.

One deliberate mistake per case: `validate` exits 2 with one line, ``file:line:col: message``,
that holds the expected words and none of what pydantic, cronsim or libyaml would have said.
"""

from __future__ import annotations

import pytest

from tests.conftest import Project

#: what the libraries underneath say, which a user should never have to read
RAW_WORDS = (
    "Input should",
    "String should",
    "should match pattern",
    "valid integer",
    "valid dictionary",
    "unable to",
    "after validation",
    "Value error",
    "Bad minute",
    "Bad hour",
    "Bad day-of-week",
    "cannot start any token",
    "while scanning",
    "while parsing",
    "end of template",
    "chunk after expression",
    "end of print statement",
    "Jinja",
    "No filter named",
    "No test named",
    "Traceback",
)

TASK = '  - {name: a, shell: "true"}\n'

# (case id, file text, line, column, words the message must hold)
MISTAKES: list[tuple[str, str, int, int, str]] = [
    (
        "cron minute out of range",
        'name: w\ntrigger:\n  schedule: "61 * * * *"\ntasks:\n' + TASK,
        3,
        3,
        'trigger.schedule: "61 * * * *" is not a cron expression: minute 61 is out of range 0-59',
    ),
    (
        "cron hour out of range",
        'name: w\ntrigger: {schedule: "0 24 * * *"}\ntasks:\n' + TASK,
        2,
        11,
        "hour 24 is out of range 0-23",
    ),
    (
        "cron with a word for a number",
        'name: w\ntrigger: {schedule: "0 9 * * someday"}\ntasks:\n' + TASK,
        2,
        11,
        'day-of-week "someday" is not a number; use numbers 0-7 or sun-sat',
    ),
    (
        "cron with six fields",
        'name: w\ntrigger: {schedule: "0 0 9 * * *"}\ntasks:\n' + TASK,
        2,
        11,
        "it has 6 fields; a cron expression has 5 fields: minute hour day-of-month month day-of-week",
    ),
    (
        "workflow name with a capital and a space",
        "name: Bad Name\ntasks:\n" + TASK,
        1,
        1,
        'name: "Bad Name" must start with a lowercase letter and use only a-z, 0-9, _ and -',
    ),
    (
        "task name with a space",
        'name: w\ntasks:\n  - {name: "a b", shell: "true"}\n',
        3,
        6,
        'tasks[0].name: "a b" must start with a letter or _ and use only letters, digits, _ and -',
    ),
    (
        "an event trigger naming a workflow that cannot exist",
        "name: w\ntrigger:\n  after: {workflows: [Ingest A]}\ntasks:\n" + TASK,
        3,
        23,
        'trigger.after.workflows[0]: "Ingest A" must start with a lowercase letter',
    ),
    (
        "tab used for indentation",
        'name: w\ntasks:\n\t- {name: a, shell: "true"}\n',
        3,
        1,
        "tab character used for indentation: YAML indents with spaces",
    ),
    (
        "a quote never closed",
        'name: w\ntasks:\n  - name: a\n    shell: "true\n',
        4,
        12,
        "a quoted value is never closed",
    ),
    (
        "a line indented too little",
        'name: w\ntasks:\n  - name: a\n   shell: "true"\n',
        4,
        4,
        "this line is not indented like the list items above it",
    ),
    (
        "a flow mapping never closed",
        'name: w\ntasks:\n  - {name: a, shell: "true"\n',
        3,
        5,
        "a {...} mapping is not closed",
    ),
    (
        "an at sign starting a value",
        "name: @w\ntasks:\n" + TASK,
        1,
        7,
        "'@' cannot start a value: put the value in quotes",
    ),
    (
        "a condition misspelt",
        'name: w\ntasks:\n  - {name: a, shell: "true"}\n  - {name: b, shell: "true", after: {a: succes}}\n',
        4,
        38,
        "tasks[1].after.a: \"succes\" is not one of success, failure, completion, skipped (did you mean 'success'?)",
    ),
    (
        "when neither all nor any",
        'name: w\ntasks:\n  - {name: a, shell: "true", when: some}\n',
        3,
        30,
        'tasks[0].when: "some" is not one of all, any',
    ),
    (
        "a log level that does not exist",
        "name: w\npreferences: {log_level: verbose}\ntasks:\n" + TASK,
        2,
        15,
        'preferences.log_level: "verbose" is not one of debug, info, notice, warning, error, critical',
    ),
    (
        "a word where a number goes",
        "name: w\npreferences: {max_parallel: many}\ntasks:\n" + TASK,
        2,
        15,
        'preferences.max_parallel: expected a whole number, got "many"',
    ),
    (
        "a negative retry count",
        'name: w\ntasks:\n  - {name: a, shell: "true", retries: -1}\n',
        3,
        30,
        "tasks[0].retries: must be at least 0, got -1",
    ),
    (
        "a word where true or false goes",
        "name: w\ntrigger: {catch_up: maybe}\ntasks:\n" + TASK,
        2,
        11,
        'trigger.catch_up: expected true or false, got "maybe"',
    ),
    (
        "save given a list",
        'name: w\ntasks:\n  - {name: a, shell: "true", save: [x]}\n',
        3,
        30,
        "tasks[0].save: expected text or a mapping (key: value), got a list",
    ),
    (
        "notify given one name instead of a list",
        "name: w\nalerts:\n  - {on: failed, notify: ops}\ntasks:\n" + TASK,
        3,
        18,
        'alerts[0].notify: expected a list, got "ops"',
    ),
    (
        "a duration in words",
        'name: w\ntasks:\n  - {name: a, shell: "true", timeout: 10 minutes}\n',
        3,
        30,
        "tasks[0].timeout: not a duration: '10 minutes' (write e.g. 30s, 5m, 1h30m)",
    ),
    (
        "a stage without tasks",
        "name: w\nstages:\n  - name: s\n    tasks: []\n",
        4,
        5,
        "stages[0].tasks: must not be empty",
    ),
    (
        "a stage without a name",
        'name: w\nstages:\n  - tasks: [{name: a, shell: "true"}]\n',
        3,
        5,
        "stages[0]: missing required key 'name'",
    ),
    (
        "an http method that does not exist",
        'name: w\ntasks:\n  - {name: a, http: {url: "http://127.0.0.1/", method: FETCH}}\n',
        3,
        48,
        'tasks[0].http.method: "FETCH" is not an HTTP method: one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS',
    ),
    (
        "a key misspelt inside a task kind",
        'name: w\ntasks:\n  - {name: a, http: {ur: "http://127.0.0.1/"}}\n',
        3,
        22,
        "unknown key 'ur' (did you mean 'url'?)",
    ),
    (
        "a task key put inside the kind's mapping",
        'name: w\ntasks:\n  - {name: a, wait_for: {file: "*.csv", poke: 5s}}\n',
        3,
        41,
        "unknown key 'poke' under tasks[0].wait_for; known keys: file, sql, connection",
    ),
    (
        "a crawler format that does not exist",
        'name: w\ntasks:\n  - {name: a, crawl: {path: "d/*.xls", table: raw.x, format: xls}}\n',
        3,
        54,
        'tasks[0].crawl.format: "xls" is not a file format: one of csv, parquet, json',
    ),
    (
        "an if: that is not an expression",
        'name: w\ntasks:\n  - {name: a, shell: "true", if: "var.x >"}\n',
        3,
        30,
        "invalid expression 'var.x >': the expression ends where a value is expected",
    ),
    (
        "an if: comparing with a single =",
        'name: w\ntasks:\n  - {name: a, shell: "true", if: "var.x = 1"}\n',
        3,
        30,
        "invalid expression 'var.x = 1': something follows the expression: compare with == (not =)",
    ),
    (
        "an if: written in braces",
        'name: w\ntasks:\n  - {name: a, shell: "true", if: "{{ var.x }}"}\n',
        3,
        30,
        "if: is an expression without braces (write var.x, not {{ var.x }})",
    ),
    (
        "an if: with a test that does not exist",
        'name: w\ntasks:\n  - {name: a, shell: "true", if: "var.x is nonee"}\n',
        3,
        30,
        "unknown test 'nonee' (did you mean 'none'?)",
    ),
    (
        "a template never closed",
        'name: w\ntasks:\n  - {name: a, shell: "echo {{ var.x"}\n',
        3,
        15,
        "template syntax error: {{ is never closed: add }}",
    ),
    (
        "a template block never closed",
        'name: w\ntasks:\n  - {name: a, shell: "echo {% if var.x %}yes"}\n',
        3,
        15,
        "template syntax error: {% if %} is never closed: add {% endif %}",
    ),
    (
        "a filter misspelt",
        'name: w\nvariables: {x: a}\ntasks:\n  - {name: a, shell: "echo {{ var.x | uper }}"}\n',
        4,
        15,
        "template syntax error: unknown filter 'uper' (did you mean 'upper'?)",
    ),
]


@pytest.mark.parametrize(("text", "line", "column", "words"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_one_line_in_the_words_of_a_workflow_file(
    project: Project, text: str, line: int, column: int, words: str
) -> None:
    (project.root / "workflows").mkdir()
    (project.root / "workflows" / "wf.yaml").write_text(text, encoding="utf-8")

    result = project.cli("validate", "workflows/wf.yaml")

    assert result.code == 2, result
    assert result.out == ""
    [said] = result.err.splitlines()
    assert said.startswith(f"workflows/wf.yaml:{line}:{column}: "), said
    assert words in said, said
    for raw in RAW_WORDS:
        assert raw not in said, f"{raw!r} in {said!r}"
