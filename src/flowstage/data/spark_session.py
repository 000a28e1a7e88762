"""The SparkSession of a process, built from flowstage.yaml's `spark:` settings.

Spark dataflows share one session per runner process (a JVM starts once, in seconds, not per
dataflow); a `spark:` task builds its own in the task's child process, so a kill takes its driver
and JVM down with the task's process group. Both take their settings from `session_conf`.

Defaults flowstage adds (the file's `conf:` wins): UTC session time zone and ANSI SQL (the same
answers as DuckDB for arithmetic and casts), no console progress bar, and for a local master no web UI and a driver bound to
``SPARK_LOCAL_IP`` (127.0.0.1 unless set) — nothing listens beyond loopback.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from typing import Any

from flowstage.errors import RunError
from flowstage.settings import SparkSettings

_lock = threading.Lock()
_sessions: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}


def missing() -> str | None:
    """Why Spark cannot run here (pyspark or Java missing), or None when it can."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install 'flowstage[spark]')"
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and os.path.exists(os.path.join(java_home, "bin", "java"))) and shutil.which("java") is None:
        return "Java is not installed (Spark needs Java 17 or newer on PATH or in JAVA_HOME)"
    return None


def session_conf(settings: SparkSettings) -> dict[str, str]:
    """The Spark conf of a session for `settings`: flowstage's defaults under the file's own."""
    # no console progress bar: it would draw over the terminal of the runner (or a task's log)
    conf = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "true", "spark.ui.showConsoleProgress": "false"}
    if settings.master.startswith("local"):
        host = os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")
        conf.update({"spark.ui.enabled": "false", "spark.driver.host": host, "spark.driver.bindAddress": host})
    conf.update(settings.conf)
    return conf


def build_session(settings: SparkSettings, app_name: str = "flowstage") -> Any:
    """A new (or the JVM's current) SparkSession for `settings`."""
    reason = missing()
    if reason is not None:
        raise RunError(f"Spark is not available: {reason}")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(settings.master).appName(app_name)
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def shared_session(settings: SparkSettings) -> Any:
    """The process's session for `settings`, started on first use and kept (a JVM per process)."""
    key = (settings.master, tuple(sorted(settings.conf.items())))
    with _lock:
        found = _sessions.get(key)
        if found is None:
            found = build_session(settings)
            _sessions[key] = found
        return found


__all__ = ["build_session", "missing", "session_conf", "shared_session"]
