"""Runs one spark task in a child interpreter: its own SparkSession, the script's function, its result.

Reads ``{"script", "function", "kwargs", "root", "result_fd", "app_name", "spark": {"master",
"conf"}, "log_config"}`` as JSON on stdin. It checks the script compiles (before a JVM starts for
nothing), builds the session with `flowstage.data.spark_session.build_session`, runs the script as
a module (so a top-level ``SparkSession.builder.getOrCreate()`` in it gets this session), calls
``function(spark, **kwargs)``, stops the session and waits for its JVM to end, then writes
``{"ok": true, "value": ...}`` or ``{"ok": false, "error", "traceback"}`` to the result descriptor.

py4j starts the driver's JVM as a child of this process, in the task's process group: the task
supervisor's kill (timeout, cancel, the runner's death) takes it down with this process. The JVM's
Python workers lead a group of their own, and leave when the JVM's end closes their stdin.
"""

import importlib.util
import json
import os
import sys
import traceback
from typing import Any

#: the JVM's end after the session stopped (it exits when its stdin closes, in well under a second)
_JVM_EXIT_SECONDS = 30.0
#: what a driver shows by default: no console progress bar (a log is not a terminal)
_DEFAULT_CONF = {"spark.ui.showConsoleProgress": "false"}


def _compile(path: str) -> Any:
    with open(path, "rb") as fh:
        source = fh.read()
    return compile(source, path, "exec", dont_inherit=True)


def _module(path: str, code: Any) -> Any:
    name = "flowstage_spark_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ImportError("cannot load " + path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Python workers cannot import the script by this name: its UDFs travel by value (the
    # function is untyped in pyspark)
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]
    exec(code, module.__dict__)  # the script's top level, as an import would run it
    return module


def _conf(request: dict[str, Any]) -> dict[str, str]:
    """flowstage.yaml's conf over the driver's defaults, with flowstage's log profile unless it has one."""
    conf = {**_DEFAULT_CONF, **request["spark"]["conf"]}
    profile = request.get("log_config")
    options = conf.get("spark.driver.extraJavaOptions", "")
    has_own = "log4j" in options or os.path.exists(
        os.path.join(os.environ.get("SPARK_CONF_DIR", "/nonexistent"), "log4j2.properties")
    )
    if profile and not has_own:
        conf["spark.driver.extraJavaOptions"] = (options + " -Dlog4j2.configurationFile=file:" + profile).strip()
    return conf


def _jsonable(value: Any) -> Any:
    """Rows become mappings (`save: {var: column}` picks from them); the rest as JSON takes it."""
    as_dict = getattr(value, "asDict", None)
    if isinstance(value, tuple) and callable(as_dict):
        return {k: _jsonable(v) for k, v in as_dict().items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _message(exc: BaseException) -> str:
    """One line that says what went wrong, not the header of a longer message.

    py4j's ``An error occurred while calling o42.count.`` is followed by the Java error's own line;
    a Python worker's error (a UDF that raised) ends with the worker's ``ValueError: ...``.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if first.startswith("An error occurred while calling") and len(lines) > 1:
        first = lines[1].lstrip(": ")
    elif first.startswith("An exception was thrown from the Python worker") and len(lines) > 1:
        first = lines[-1]
    if len(first) > 500:
        first = first[:500] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _stop(spark: Any) -> None:
    """Stop the session, then end the JVM and wait for it: the attempt ends with its whole tree."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    try:
        spark.stop()
    finally:
        if gateway is not None:
            gateway.shutdown()
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()  # PythonGatewayServer exits when its stdin closes
            try:
                proc.wait(timeout=_JVM_EXIT_SECONDS)
            except Exception:
                proc.kill()
                proc.wait()


def _run(request: dict[str, Any]) -> dict[str, Any]:
    from flowstage.data.spark_session import build_session
    from flowstage.settings import SparkSettings

    root = request["root"]
    script = request["script"]
    path = script if os.path.isabs(script) else os.path.join(root, script)
    code = _compile(path)
    folders = [os.path.dirname(os.path.abspath(path)), root]
    sys.path[:0] = [folder for folder in folders if folder not in sys.path]
    settings = SparkSettings(master=request["spark"]["master"], conf=_conf(request))
    if settings.master.startswith("local"):
        # Python workers of a local master run this interpreter (the one with pyspark), not
        # `python3`, and import what the script imports from its folder or the project's
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ["PYTHONPATH"] = os.pathsep.join([*folders, *filter(None, [os.environ.get("PYTHONPATH")])])
    spark = build_session(settings, app_name=request["app_name"])
    try:
        try:
            module = _module(path, code)
            fn = getattr(module, request["function"], None)
            if fn is None or not callable(fn):
                raise AttributeError(f"{script} has no function {request['function']!r}")
            return _success(fn(spark, **request["kwargs"]))
        except BaseException as exc:
            return _failure(exc)  # while the JVM runs: a Spark error reads its message from it
    finally:
        try:
            _stop(spark)
        except Exception as exc:  # the script's own answer or error is what the task reports
            sys.stderr.write(f"stopping the Spark session failed: {type(exc).__name__}: {exc}\n")


def _success(value: Any) -> dict[str, Any]:
    value = _jsonable(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = json.loads(json.dumps(value, default=str))
    return {"ok": True, "value": value}


def _failure(exc: BaseException) -> dict[str, Any]:
    try:
        return {"ok": False, "error": _message(exc), "traceback": _traceback(exc)}
    except Exception:  # an error whose text cannot be had (its JVM is gone)
        return {"ok": False, "error": type(exc).__name__, "traceback": "".join(traceback.format_exception_only(type(exc), None))}


def _traceback(exc: BaseException) -> str:
    """The traceback from the first frame outside this file (the script's, or flowstage's)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def main() -> None:
    from flowstage.errors import FlowstageError

    request = json.loads(sys.stdin.read())
    out = os.fdopen(request["result_fd"], "w")
    try:
        answer = _run(request)
    except FlowstageError as exc:  # Spark cannot start here: one line says why
        answer = {"ok": False, "error": str(exc)}
    except BaseException as exc:  # the error boundary: report, never crash silently
        answer = _failure(exc)
    sys.stdout.flush()
    sys.stderr.flush()
    out.write(json.dumps(answer))
    out.close()


if __name__ == "__main__":
    # A script's own folder comes first on sys.path, and this one holds modules named like the
    # standard library's (http.py): put the folder that holds the flowstage package there instead.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
