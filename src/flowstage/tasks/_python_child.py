"""Runs one python task in a child interpreter. Standalone: imports nothing from flowstage.

Reads ``{"target", "kwargs", "root", "result_fd"}`` as JSON on stdin, calls the target with the
keyword arguments, and writes ``{"ok": true, "value": ...}`` or ``{"ok": false, "error",
"traceback"}`` to the result file descriptor. Any interpreter (3.8+) can run it.

It runs under the task supervisor (`_supervise.py`), which measures it, and kills it and all it
started when the runner dies; so nothing here watches the runner.
"""

import importlib
import importlib.util
import json
import os
import sys
import traceback


def _load(target, root):
    # type: (str, str) -> object
    where, _, func = target.rpartition(":")
    if where.endswith(".py"):
        path = where if os.path.isabs(where) else os.path.join(root, where)
        name = "flowstage_task_" + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError("cannot load " + where)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    try:
        return getattr(module, func)
    except AttributeError:
        raise AttributeError("%s has no function %r" % (where, func)) from None


def main():
    # type: () -> None
    request = json.loads(sys.stdin.read())
    out = os.fdopen(request["result_fd"], "w")
    root = request["root"]
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        fn = _load(request["target"], root)
        value = fn(**request["kwargs"])  # type: ignore[operator]
        try:
            text = json.dumps({"ok": True, "value": value})
        except (TypeError, ValueError):
            text = json.dumps({"ok": True, "value": value}, default=str)
    except BaseException as exc:  # the error boundary: report, never crash silently
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None  # drop this file's frame
        text = json.dumps(
            {
                "ok": False,
                "error": "%s: %s" % (type(exc).__name__, exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
            }
        )
    sys.stdout.flush()
    sys.stderr.flush()
    out.write(text)
    out.close()


if __name__ == "__main__":
    # this file's folder (flowstage/tasks: http.py, sql.py, ...) must not shadow the standard library
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    main()
