"""Ending a flowstage process: what the interpreter does at exit, but for taking every module apart.

The CLI and the server's runner processes end this way (see docs/adr/0012).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn


def exit_now(code: object) -> NoReturn:
    """End the process as the interpreter does, without taking every module apart first.

    At exit Python waits for the threads that are not daemons (the thread pools stopped first),
    runs the `atexit` functions (the terminal's echo put back, logging flushed), flushes stdout
    and stderr, and then frees every module and every object one by one: for the ~280 modules of
    a run that last step took 25 ms, a sixth of a whole one-task run, and it frees nothing the
    operating system does not take back at once. So the first three steps run here, in the
    interpreter's order, and the process ends without the fourth.
    """
    import atexit
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on stderr, status 1, as Python does
        sys.stderr.write(f"{code}\n")
        status = 1
    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter calls first at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(status)


__all__ = ["exit_now"]
