"""`spark:` tasks through the CLI: a PySpark script's main(spark, **with) on a real local[2] master.

Every attempt of a spark task starts a driver JVM in its own child process (5-15 s on two cores),
so the JVM tests are few and each checks several things. Without pyspark or Java they skip with
the reason; with CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from flowstage.app.code import pin
from flowstage.deploy import referenced_files
from flowstage.model.kinds.spark import SparkSpec
from flowstage.model.loader import load_text
from tests.conftest import CI, Project
from tests.records import record_of, tasks_of, wait_until

SPARK_YAML = """
spark:
  master: "local[2]"
  conf:
    spark.sql.shuffle.partitions: 2
    spark.ui.enabled: false
    # a driver of a short test job starts faster with the client compiler only
    spark.driver.extraJavaOptions: "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
"""

JOBS = """
import sys

from pyspark.sql import functions as F

from helpers import square  # beside the script: Python workers import it too


def squared(x):
    return square(x)


def main(spark, n, label):
    print(f"counting {n} rows for {label}")
    print("a note on stderr", file=sys.stderr)
    # a UDF of the script itself, run by Python workers
    df = spark.range(n).withColumn("sq", F.udf(squared, "long")("id"))
    row = df.agg(F.sum("sq").alias("total"), F.count("*").alias("rows")).first()
    return {
        "rows": row["rows"],
        "total": row["total"],
        "label": label,
        "master": spark.sparkContext.master,
        "partitions": spark.conf.get("spark.sql.shuffle.partitions"),
        # relative paths are the project's: the driver runs in its root
        "csv_rows": spark.read.option("header", True).csv("data/*.csv").count(),
    }


def broken(spark, limit):
    spark.sparkContext.setLogLevel("INFO")
    spark.range(3).count()
    raise ValueError(f"bad input {limit}")
"""

SLOW = """
import time
from pathlib import Path

from pyspark.sql import functions as F


def main(spark, workers):
    print("session up", flush=True)
    if not workers:
        time.sleep(600)
    # Python workers that hold still: the JVM's pyspark daemon and its forked workers
    hold = F.udf(lambda x: time.sleep(600) or x, "long")
    spark.range(2).repartition(2).select(hold("id")).collect()
"""


@pytest.fixture(scope="module")
def spark_ready() -> None:
    from flowstage.data.spark_session import missing

    reason = missing()
    if reason is not None:
        if CI:
            pytest.fail(f"{reason}, and CI=true: spark tasks must be tested in CI")
        pytest.skip(reason)


@pytest.fixture
def spark_project(project: Project) -> Project:
    project.write("flowstage.yaml", SPARK_YAML)
    project.write("jobs/count.py", JOBS)
    project.write("jobs/helpers.py", "def square(x):\n    return x * x\n")
    project.write("jobs/slow.py", SLOW)
    return project


def env(project: Project) -> dict[str, str]:
    return project.env(SPARK_LOCAL_IP="127.0.0.1")


def processes_of(run_id: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process of `run_id`'s tasks, found by their environment."""
    marker = f"FLOWSTAGE_RUN_ID={run_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone, or not ours to read
            continue
        if marker in environ and b"FLOWSTAGE_TASK=" in b"\0".join(environ):
            found.append((int(name), cmdline))
    return found


def java_of(run_id: str) -> list[tuple[int, str]]:
    return [p for p in processes_of(run_id) if "org.apache.spark.deploy.SparkSubmit" in p[1]]


def workers_of(run_id: str) -> list[tuple[int, str]]:
    return [p for p in processes_of(run_id) if "pyspark.daemon" in p[1]]


def logs(project: Project, run_id: str, task: str) -> str:
    result = project.cli("logs", run_id, task, "--level", "debug", env=env(project))
    assert result.code == 0, result.err
    return result.out


def show(project: Project, run_id: str) -> dict[str, Any]:
    result = project.cli("show", run_id, "--json", env=env(project))
    assert result.code == 0, result.err
    record: dict[str, Any] = json.loads(result.out)
    return record


def test_main_gets_the_session_and_with_values_its_result_is_saved_and_a_raising_main_fails_with_its_traceback(
    spark_ready: None, spark_project: Project
) -> None:
    project = spark_project
    project.write(
        "workflows/spark_jobs.yaml",
        """
        name: spark_jobs
        variables: {n: 1000, limit: 42}
        tasks:
          - name: count
            spark: jobs/count.py
            with: {n: "{{ var.n }}", label: "run of {{ run.workflow }}"}
            save: result
          - {name: broken, spark: "jobs/count.py:broken", with: {limit: "{{ var.limit }}"}}
          - {name: double, python: tasks/double.py:double, with: {result: "{{ var.result }}"}, after: [count], save: doubled}
        """,
    )
    project.write("tasks/double.py", "def double(result):\n    return result['rows'] * 2\n")
    project.write("data/orders-1.csv", "id,amount\n1,10\n2,20\n")
    project.write("data/orders-2.csv", "id,amount\n3,30\n")

    result = project.cli("run", "spark_jobs", "--json", timeout=300, env=env(project))

    assert result.code == 1, result.err  # `broken` failed and nothing caught it
    record = record_of(result)
    tasks = tasks_of(record)
    count, broken, double = tasks["count"], tasks["broken"], tasks["double"]
    assert count["status"] == "succeeded", count
    assert count["saved"] == {
        "result": {
            "rows": 1000,
            "total": 332833500,
            "label": "run of spark_jobs",
            "master": "local[2]",
            "partitions": "2",
            "csv_rows": 3,
        }
    }
    assert double["status"] == "succeeded"
    assert double["saved"] == {"doubled": 2000}
    # the task's own tree is measured: the driver's JVM is in it
    assert count["metrics"]["memory_mb"] > 150
    assert count["metrics"]["cpu_seconds"] > 1

    assert broken["status"] == "failed"
    assert broken["error"] == "ValueError: bad input 42"
    assert [a["status"] for a in broken["attempts"]] == ["failed"]

    count_log = logs(project, record["id"], "count")
    assert re.search(r" INFO +count#1: counting 1000 rows for run of spark_jobs$", count_log, re.M), count_log
    assert re.search(r" WARNING +count#1: a note on stderr$", count_log, re.M), count_log
    # drivers log at WARN through flowstage's profile: no INFO flood, no banner of Spark's own profile
    assert "INFO SparkContext" not in count_log
    assert "Using Spark's default log4j profile" not in count_log
    assert "[Stage " not in count_log  # no console progress bar
    assert "Assume no metadata directory" not in count_log  # a warning of every glob read, quieted
    broken_log = logs(project, record["id"], "broken")
    assert "Traceback (most recent call last):" in broken_log
    assert re.search(r'File ".*/jobs/count\.py", line \d+, in broken', broken_log), broken_log
    assert "_spark_child.py" not in broken_log  # the traceback starts in the script
    assert "task broken failed: ValueError: bad input 42" in broken_log
    # a script that asks for Spark's INFO lines gets them, logged as info (WARN and above as warnings)
    assert re.search(r" INFO +broken#1: INFO DAGScheduler: ", broken_log), broken_log
    # each attempt waited for its JVM; its Python workers leave when the JVM's end closes their stdin
    wait_until(lambda: not processes_of(record["id"]), 30, "every process of the run to end")


def test_a_spark_task_that_times_out_leaves_no_process_of_its_attempt(spark_ready: None, spark_project: Project) -> None:
    project = spark_project
    project.write(
        "workflows/slow_spark.yaml",
        """
        name: slow_spark
        tasks:
          - {name: slow, spark: jobs/slow.py, with: {workers: false}, timeout: 3s}
        """,
    )

    result = project.cli("run", "slow_spark", "--json", timeout=120, env=env(project))

    assert result.code == 1, result.err
    record = record_of(result)
    slow = tasks_of(record)["slow"]
    assert slow["status"] == "timed_out"
    assert slow["error"] == "timed out after 3s"
    assert [a["status"] for a in slow["attempts"]] == ["timed_out"]
    # the kill reached the supervisor's whole group: the child and the JVM py4j started in it
    assert processes_of(record["id"]) == []


def test_cancel_kills_a_running_spark_task_with_its_jvm_and_python_workers(spark_ready: None, spark_project: Project) -> None:
    project = spark_project
    project.write(
        "workflows/held_spark.yaml",
        """
        name: held_spark
        tasks:
          - {name: held, spark: jobs/slow.py, with: {workers: true}}
        """,
    )
    started = project.cli("run", "held_spark", "--detach", "--json", env=env(project))
    assert started.code == 0, started.err
    run_id = json.loads(started.out)["id"]
    try:
        wait_until(
            lambda: tasks_of(show(project, run_id))["held"]["status"] == "running" and java_of(run_id) and workers_of(run_id),
            180,
            "the spark task to run its Python workers",
        )
        assert "session up" in logs(project, run_id, "held")

        result = project.cli("cancel", run_id, env=env(project))

        assert result.code == 0, result.err
        wait_until(lambda: show(project, run_id)["status"] == "cancelled", 60, "the run to end cancelled")
        held = tasks_of(show(project, run_id))["held"]
        assert held["status"] == "cancelled"
        assert held["attempts"][-1]["status"] == "cancelled"
        # the JVM died with the task's group; its Python workers (a group of their own) leave
        # when the JVM's end closes their stdin
        wait_until(lambda: not processes_of(run_id), 30, "every process of the cancelled attempt to end")
    finally:
        for pid, _ in processes_of(run_id):
            os.kill(pid, 9)


def test_a_missing_script_or_a_missing_java_fails_the_task_in_one_line_without_starting_spark(project: Project) -> None:
    project.write("flowstage.yaml", SPARK_YAML)
    project.write("jobs/count.py", JOBS)
    project.write(
        "workflows/no_spark.yaml",
        """
        name: no_spark
        tasks:
          - {name: missing_script, spark: jobs/nope.py}
          - {name: no_java, spark: jobs/count.py, with: {n: 1, label: x}}
        """,
    )
    no_java = {k: v for k, v in env(project).items() if k != "JAVA_HOME"}
    no_java["PATH"] = str(project.root / "no-java-here")

    result = project.cli("run", "no_spark", "--json", env=no_java)

    assert result.code == 1, result.err
    tasks = tasks_of(record_of(result))
    assert tasks["missing_script"]["status"] == "failed"
    assert tasks["missing_script"]["error"] == "spark: no such file jobs/nope.py"
    assert tasks["no_java"]["status"] == "failed"
    assert tasks["no_java"]["error"].startswith("Spark is not available: ")
    assert "\n" not in tasks["no_java"]["error"]
    assert "Traceback" not in result.err
    assert "Traceback" not in logs(project, record_of(result)["id"], "no_java")


def test_a_spark_value_that_is_not_a_py_script_is_refused_at_its_line_and_column(project: Project) -> None:
    path = project.write(
        "workflows/bad_spark.yaml",
        """
        name: bad_spark
        tasks:
          - name: query
            spark: jobs/count.sql
          - {name: module_form, spark: "jobs.count:main"}
          - {name: other_keys, spark: jobs/count.py, connection: shop}
        """,
    )

    result = project.cli("validate", str(path))

    assert result.code == 2
    assert "Traceback" not in result.err
    expected = "expected a PySpark script: path/file.py or path/file.py:function"
    assert f"bad_spark.yaml:4:5: tasks[0].spark: {expected}, got 'jobs/count.sql'" in result.err, result.err
    assert re.search(rf"bad_spark\.yaml:5:\d+: tasks\[1\]\.spark: {re.escape(expected)}, got 'jobs.count:main'", result.err)
    assert re.search(r"bad_spark\.yaml:6:\d+: unknown key 'connection' for a spark task", result.err), result.err


def test_a_deployed_version_keeps_the_script_and_its_runs_read_the_kept_copy(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "count.py").write_text("def summarize(spark):\n    return 1\n")
    workflow = load_text(
        "name: w\ntasks:\n  - {name: a, spark: jobs/count.py:summarize}\n  - {name: b, spark: jobs/count.py}\n", "w.yaml"
    )
    files = referenced_files(workflow, tmp_path)
    assert list(files) == ["jobs/count.py"]
    pinned = pin(workflow, 1, files, tmp_path / ".flowstage")
    a, b = (task.spec for _, task in pinned.workflow.all_tasks())
    assert isinstance(a, SparkSpec)
    assert isinstance(b, SparkSpec)
    assert a.function == "summarize"
    assert Path(a.script).read_text() == files["jobs/count.py"]
    assert Path(a.script).is_relative_to(tmp_path / ".flowstage" / "code")
    assert b.script == a.script
    assert b.function == "main"
