"""``spark:`` tasks: a PySpark script's ``main(spark, **with)`` in a child process with its own session.

The child (`_spark_child.py`) runs under the task supervisor like a python task's: it builds a
SparkSession from flowstage.yaml's `spark:` settings, calls the script's function, stops the
session, and answers on a pipe of its own. The driver's JVM is the child's own child, in the
task's process group, so a timeout or a cancel (the handle kills the group) ends driver and JVM
together, and the task's peak memory and CPU are those of the whole tree, JVM included.

The script's stdout is logged as info, its stderr as warnings; so is Spark's log4j output, through
flowstage's log profile for drivers (`LOG_PROFILE`): WARN and above on stderr, lower levels on
stdout. Drivers log at WARN; ``spark: {conf: {spark.log.level: INFO}}`` in flowstage.yaml, or
``spark.sparkContext.setLogLevel("INFO")`` in the script, shows more. A driver whose
``spark.driver.extraJavaOptions`` names a log4j configuration, or whose ``SPARK_CONF_DIR`` holds a
``log4j2.properties``, keeps that one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path

from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import DefinitionError, RunError
from flowstage.logging import ERROR
from flowstage.model.kinds.spark import SparkSpec
from flowstage.model.statuses import TaskStatus
from flowstage.settings import STATE_DIR
from flowstage.tasks import TaskContext
from flowstage.tasks._process import run_process, task_env

_CHILD = str(Path(__file__).with_name("_spark_child.py"))

#: the driver's log4j2 profile: Spark's own defaults at WARN, one line per record with no timestamp
#: of its own (every log line has one); records below WARN go to stdout, so they are logged as info
LOG_PROFILE = """\
# written by flowstage for the drivers of spark: tasks (see flowstage.tasks.spark)
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
rootLogger.appenderRef.err.ref = err
appender.out.type = Console
appender.out.name = out
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = %p %c{1}: %m%n%ex
appender.out.filter.below.type = ThresholdFilter
appender.out.filter.below.level = warn
appender.out.filter.below.onMatch = DENY
appender.out.filter.below.onMismatch = ACCEPT
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %c{1}: %m%n%ex
appender.err.filter.atleast.type = ThresholdFilter
appender.err.filter.atleast.level = warn
appender.err.filter.atleast.onMatch = ACCEPT
appender.err.filter.atleast.onMismatch = DENY
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
logger.jetty2.name = org.sparkproject.jetty.util.component.AbstractLifeCycle
logger.jetty2.level = error
logger.hadoop.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop.level = error
logger.parquet.name = org.apache.parquet.CorruptStatistics
logger.parquet.level = error
# "Assume no metadata directory", with a stack trace, on every read of a glob of files
logger.filesink.name = org.apache.spark.sql.execution.streaming.sinks.FileStreamSink
logger.filesink.level = error
logger.filesink3.name = org.apache.spark.sql.execution.streaming.FileStreamSink
logger.filesink3.level = error
"""


def log_profile(state_dir: Path) -> str | None:
    """The driver log profile's file under the project's state folder, or None where it cannot be written."""
    path = state_dir / "spark" / "driver-log4j2.properties"
    try:
        if not path.is_file() or path.read_text(encoding="utf-8") != LOG_PROFILE:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(LOG_PROFILE, encoding="utf-8")
            os.replace(tmp, path)
    except OSError:
        return None  # a read-only project: Spark's own profile then
    return str(path)


def run(job: AttemptSpec, ctx: TaskContext) -> Outcome:
    from flowstage.data.spark_session import missing

    spec = job.spec
    assert isinstance(spec, SparkSpec)
    script = Path(spec.script) if os.path.isabs(spec.script) else Path(job.root) / spec.script
    if not script.is_file():
        raise DefinitionError(f"spark: no such file {spec.script}")
    reason = missing()  # told here in one line, before a child starts for nothing
    if reason is not None:
        raise RunError(f"Spark is not available: {reason}")
    settings = ctx.resources.spark
    env = task_env(job, ctx.resources, {"PYTHONUNBUFFERED": "1"})
    profile = log_profile(Path(ctx.resources.root) / STATE_DIR)
    read_fd, write_fd = os.pipe()
    request = json.dumps(
        {
            "script": spec.script,
            "function": spec.function,
            "kwargs": job.kwargs,
            "root": job.root,
            "app_name": f"flowstage {job.workflow}.{job.task}",
            "spark": {"master": settings.master, "conf": dict(settings.conf)},
            "log_config": profile,
            "result_fd": write_fd,
        },
        default=str,
    )
    chunks: list[bytes] = []

    def read_result() -> None:
        with os.fdopen(read_fd, "rb") as fh:
            chunks.append(fh.read())

    reader = threading.Thread(target=read_result, daemon=True)
    reader.start()
    try:
        ended = run_process(
            [sys.executable, _CHILD],
            cwd=job.root,
            env=env,
            log=ctx.log,
            handle=ctx.handle,
            stdin_data=request.encode(),
            pass_fds=(write_fd,),
            on_process=ctx.process,
        )
    finally:
        with contextlib.suppress(OSError):
            os.close(write_fd)
    reader.join(timeout=10)
    metrics = ended.metrics()
    raw = b"".join(chunks)
    if not raw:
        return Outcome(
            TaskStatus.FAILED, error=f"spark process exited with code {ended.exit_code} and no result", metrics=metrics
        )
    answer = json.loads(raw)
    if not answer.get("ok"):
        if answer.get("traceback"):
            ctx.log(ERROR, answer["traceback"].rstrip())
        return Outcome(TaskStatus.FAILED, error=answer.get("error"), metrics=metrics)
    return Outcome(TaskStatus.SUCCEEDED, value=answer.get("value"), metrics=metrics)
