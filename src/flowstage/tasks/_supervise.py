"""Runs one command for a task and takes its whole process group down with the runner.

Standalone (no flowstage imports) and started as ``python -S -E _supervise.py CMD...`` at the head of
its own process group. The kernel sends it SIGTERM when the runner dies (parent-death signal);
it then kills its group with SIGKILL: the command and everything the command started, which a
parent-death signal on the command alone would miss.
"""

import ctypes
import os
import signal
import sys


def _reap(_signum, _frame):
    # type: (int, object) -> None
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(137)


def main():
    # type: () -> None
    argv = sys.argv[1:]
    runner = int(os.environ.get("FLOWSTAGE_RUNNER_PID", "0") or 0)
    signal.signal(signal.SIGTERM, _reap)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if runner and os.getppid() != runner:
        _reap(0, None)  # the runner died before the signal was armed
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            sys.stderr.write("cannot run %s: %s\n" % (argv[0], exc))
            os._exit(127)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
