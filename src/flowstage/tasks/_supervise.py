"""Runs one command for a task, measures its process tree, and takes the tree down with the runner.

Standalone (no flowstage imports, any Python 3.8+), started by the runner as
``python -S -E _supervise.py [--report-fd N] [--] CMD...`` at the head of its own process group.

Why a separate process: the runner cannot measure a child it forks itself. A forked child starts
as a copy of the runner, and at exec the kernel records that copy's high-water mark into the
child's ``ru_maxrss`` (vfork and posix_spawn too: the shared mm's mark is recorded). So every
task would show the runner's memory. This supervisor is a tiny interpreter (no site, a few MB);
it forks and execs the real command, and reports what the command's own tree used:

- ``memory_mb``: the peak resident memory of the command and every process it starts, the
  largest of (a) the summed RSS of the supervisor's descendants, sampled from /proc every
  ``INTERVAL`` seconds or so (processes alive at the same time add up), (b) the largest single
  process's own high-water mark (``VmHWM``, exact between samples), and (c) the ``ru_maxrss``
  of the reaped children (the command and the grandchildren it or this supervisor waited for).
  (c) includes the pages the command's pre-exec copy of this supervisor held (about 6 MB): the
  least any task shows, and what a command shorter than one sample shows.
- ``cpu_seconds``: user + system time of the reaped children (the command and its waited-for
  descendants; orphans are reaped here too: the supervisor is their subreaper).
- ``exit_code``: the command's exit code, ``128 + n`` when signal ``n`` ended it.

They are written as one JSON object to file descriptor ``N`` (not inherited by the command).

The kernel sends this process SIGTERM when the runner dies (parent-death signal); it then kills
its group with SIGKILL: the command and everything the command started, which a parent-death
signal on the command alone would miss.
"""

import os
import select
import signal
import sys
import time

INTERVAL = 0.02  # seconds between two samples of the tree (longer for a tree slow to sample)
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _reap(_signum, _frame):
    # type: (int, object) -> None
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(137)


def _read(path):
    # type: (str) -> bytes
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _children(pid):
    # type: (int) -> list[int]
    """The children of `pid` (each thread keeps its own list)."""
    found = []  # type: list[int]
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return found
    for tid in tids:
        found.extend(int(x) for x in _read("/proc/%d/task/%s/children" % (pid, tid)).split())
    return found


def _children_by_scan():
    # type: () -> dict[int, list[int]]
    """Every process's children, from /proc/*/stat (kernels without the `children` files)."""
    tree = {}  # type: dict[int, list[int]]
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _read("/proc/%s/stat" % name)
        try:
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(name))
    return tree


_HAS_CHILDREN_FILES = os.path.exists("/proc/%d/task/%d/children" % (os.getpid(), os.getpid()))


def _descendants(root):
    # type: (int) -> list[int]
    if _HAS_CHILDREN_FILES:
        lookup = _children
    else:
        tree = _children_by_scan()

        def lookup(pid):
            # type: (int) -> list[int]
            return tree.get(pid, [])

    seen = set()
    todo = lookup(root)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(lookup(pid))
    return list(seen)


def _sample(root):
    # type: (int) -> int
    """kB: the larger of the tree's summed RSS now and its largest process's own peak so far."""
    total = largest = 0
    for pid in _descendants(root):
        rss = hwm = 0
        for line in _read("/proc/%d/status" % pid).splitlines():
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith(b"VmHWM:"):
                hwm = int(line.split()[1])
        total += rss
        largest = max(largest, hwm)
    return max(total, largest)


def _which(name):
    # type: (str) -> str
    """`name` found on PATH as execvp would find it (looked up before the fork, not after)."""
    if "/" in name:
        return name
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return name  # not found: execv fails with the right error


def _exit_code(status):
    # type: (int) -> int
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 1


def _arm(libc, option, value):
    # type: (object, int, int) -> None
    try:
        libc.prctl(option, value, 0, 0, 0)  # type: ignore[attr-defined]
    except Exception:
        pass


def main():
    # type: () -> None
    argv = sys.argv[1:]
    report_fd = -1
    if argv[:1] == ["--report-fd"]:
        report_fd = int(argv[1])
        argv = argv[2:]
        os.set_inheritable(report_fd, False)  # the command must not hold it
    if argv[:1] == ["--"]:
        argv = argv[1:]
    runner = int(os.environ.get("FLOWSTAGE_RUNNER_PID", "0") or 0)
    signal.signal(signal.SIGTERM, _reap)
    # a child's end wakes the sampling loop at once: SIGCHLD writes a byte to this pipe
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    signal.set_wakeup_fd(wake_w)
    # Fork before anything else is loaded, and let the child do as little as it can before exec:
    # the command's ru_maxrss starts from the pages its pre-exec copy of this process holds.
    # It waits on `go` until the signals below are armed.
    path = _which(argv[0])
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        if not os.read(go_r, 1):
            os._exit(137)  # the supervisor died before it was ready
        try:
            os.execv(path, argv)
        except OSError as exc:
            os.write(2, ("cannot run %s: %s\n" % (argv[0], exc)).encode())
            os._exit(127)
    os.close(go_r)
    import ctypes

    try:
        libc = ctypes.CDLL(None)
    except Exception:
        libc = None
    if libc is not None:
        _arm(libc, _PR_SET_PDEATHSIG, signal.SIGTERM)
        _arm(libc, _PR_SET_CHILD_SUBREAPER, 1)  # orphaned descendants are reaped (and counted) here
    if runner and os.getppid() != runner:
        _reap(0, None)  # the runner died before the signal was armed
    try:
        os.write(go_w, b"x")
    except OSError:
        pass  # the child is gone already: its status tells
    os.close(go_w)
    me = os.getpid()
    peak_kb = 0
    code = None
    while True:
        while True:  # reap the command and any orphan that ended
            try:
                done, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                done = 0
            except InterruptedError:
                continue
            if not done:
                break
            if done == pid:
                code = _exit_code(status)
        if code is not None:
            break
        began = time.monotonic()
        peak_kb = max(peak_kb, _sample(me))
        # a large tree is sampled less often: sampling takes at most a tenth of one CPU
        select.select([wake_r], [], [], max(INTERVAL, 10 * (time.monotonic() - began)))
        try:
            while os.read(wake_r, 512):
                pass
        except OSError:
            pass
    if report_fd >= 0:
        import json
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_kb = max(peak_kb, usage.ru_maxrss)
        report = {
            "memory_mb": round(peak_kb / 1024.0, 3),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "exit_code": code,
        }
        try:
            os.write(report_fd, json.dumps(report).encode())
            os.close(report_fd)
        except OSError:
            pass
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
