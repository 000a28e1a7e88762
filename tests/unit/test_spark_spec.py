"""The `spark:` task kind: what a `spark:` value may be, the keys it takes, its schema and its message,
and how the child process tells an error in one line and hands back rows (no JVM here)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError

from flowstage.engine.ports import AttemptSpec
from flowstage.errors import DefinitionError
from flowstage.model.kinds import kind_spec
from flowstage.model.kinds.spark import SparkSpec
from flowstage.model.loader import load_text
from flowstage.model.schema import workflow_schema
from flowstage.tasks import TASK_KINDS
from flowstage.tasks._spark_child import _jsonable, _message
from tests.conftest import CI


@pytest.mark.parametrize(
    ("value", "script", "function"),
    [
        ("jobs/count.py", "jobs/count.py", "main"),
        ("count.py", "count.py", "main"),
        ("./jobs/count.py", "./jobs/count.py", "main"),
        ("jobs/count.py:summarize", "jobs/count.py", "summarize"),
        ("/srv/project/jobs/count.py:_private", "/srv/project/jobs/count.py", "_private"),
        ("jobs/v2.1/count.py", "jobs/v2.1/count.py", "main"),
    ],
)
def test_a_spark_value_names_a_script_and_the_function_called_main_by_default(value: str, script: str, function: str) -> None:
    spec = SparkSpec(spark=value)
    assert (spec.script, spec.function) == (script, function)


@pytest.mark.parametrize(
    "value",
    ["jobs/count.sql", "jobs.count:main", "jobs/count.py:", "jobs/count.py:1st", "jobs/count.py:a:b", ".py", "jobs/.py", ""],
)
def test_a_spark_value_that_is_not_a_py_script_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match=r"expected a PySpark script: path/file\.py or path/file\.py:function"):
        SparkSpec(spark=value)


def test_the_spark_kind_is_found_by_its_key_and_has_a_runner() -> None:
    assert kind_spec("spark") is SparkSpec
    assert SparkSpec.isolated
    assert "spark" in TASK_KINDS.names()


def test_a_spark_task_takes_the_common_keys_and_round_trips_losslessly() -> None:
    text = """
name: w
tasks:
  - name: count
    spark: jobs/count.py:summarize
    with: {n: "{{ var.n }}", region: EU}
    save: {rows: rows}
    timeout: 10m
    retries: 2
    for_each: [a, b]
"""
    workflow = load_text(text, "w.yaml")
    task = workflow.all_tasks()[0][1]
    assert task.kind == "spark"
    assert isinstance(task.spec, SparkSpec)
    assert task.with_ == {"n": "{{ var.n }}", "region": "EU"}
    assert task.timeout == 600
    assert load_text(workflow.to_yaml(), "again.yaml") == workflow


def test_a_key_of_another_kind_on_a_spark_task_is_refused_at_its_line() -> None:
    text = "name: w\ntasks:\n  - name: count\n    spark: jobs/count.py\n    interpreter: '3.11'\n"
    with pytest.raises(DefinitionError, match=r"w\.yaml:5:5: unknown key 'interpreter' for a spark task"):
        load_text(text, "w.yaml")


def test_the_schema_has_a_spark_task_that_refuses_other_keys() -> None:
    schema = workflow_schema()
    titles = [variant["title"] for variant in schema["$defs"]["Task"]["oneOf"]]
    assert "spark task" in titles
    good = {"name": "x", "tasks": [{"name": "a", "spark": "jobs/a.py", "with": {"n": 1}, "save": "out"}]}
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "tasks": [{"name": "a", "spark": "jobs/a.py", "connection": "shop"}]}, schema)


def test_a_spark_attempt_survives_its_message() -> None:
    spec = AttemptSpec(
        run_id="r1",
        workflow="w",
        task="count",
        attempt=1,
        spec=SparkSpec(spark="jobs/count.py:summarize"),
        kwargs={"n": 3},
        variables={},
        root="/srv/project",
        log_level=0,
        timeout=30.0,
        save="rows",
    )
    back = AttemptSpec.from_message(json.loads(json.dumps(spec.to_message())))
    assert back == spec
    assert isinstance(back.spec, SparkSpec)


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("bad input 42"), "ValueError: bad input 42"),
        (RuntimeError(""), "RuntimeError"),
        (
            Exception(
                'An error occurred while calling o42.count.\n: java.lang.NumberFormatException: For input string: "x"\n\tat java.base/...'
            ),
            'Exception: java.lang.NumberFormatException: For input string: "x"',
        ),
        (
            Exception(
                "\n  An exception was thrown from the Python worker. Please see the stack trace below.\n"
                'Traceback (most recent call last):\n  File "jobs/count.py", line 3, in boom\nValueError: boom 0\n'
            ),
            "Exception: ValueError: boom 0",
        ),
        (Exception("x" * 600 + "\nmore"), "Exception: " + "x" * 500 + "..."),
    ],
)
def test_a_failed_attempt_tells_its_error_in_one_line(exc: BaseException, line: str) -> None:
    assert _message(exc) == line


def test_rows_a_script_returns_come_back_as_mappings() -> None:
    try:
        from pyspark.sql import Row
    except ImportError:
        if CI:
            raise
        pytest.skip("pyspark is not installed (pip install 'flowstage[spark]')")
    value = {"first": Row(id=1, name="a"), "all": [Row(id=1, nested=Row(x=2))], "n": 3}
    assert _jsonable(value) == {"first": {"id": 1, "name": "a"}, "all": [{"id": 1, "nested": {"x": 2}}], "n": 3}
