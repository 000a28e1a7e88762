"""A warm python worker: runs python tasks one at a time in one interpreter. Standalone: imports nothing from flowstage.

Started by the runner's supervisor (`_forkserver.py`) as ``python -u _python_worker.py FD``, with
its control socket on file descriptor FD; any interpreter (3.8+) can run it. For each task the
runner sends a frame (an 8-byte header: payload length and number of file descriptors, carrying
the task's stdout and stderr pipes; then ``{"target", "kwargs", "root", "env"}`` as JSON). The
worker:

1. puts the pipes on file descriptors 1 and 2, the task's environment in `os.environ`, the
   project root as its working directory and on `sys.path`;
2. resets its own peak resident memory (``/proc/self/clear_refs``), so the task's `memory_mb` is
   what this interpreter held while the task ran (the interpreter included, as for a process of
   its own), and the processes the task started, sampled while it runs;
3. calls the target with the keyword arguments, inside an error boundary;
4. puts /dev/null back on 1 and 2 (the runner's pipes see their end), goes back to ``/``, and
   answers ``{"ok": true, "value"}`` or ``{"ok": false, "error", "traceback"}`` with
   ``memory_mb``, ``cpu_seconds`` and ``rss_mb`` (what it holds now: the runner retires a worker
   that grew too large).

Modules a task imports stay imported for the next task of this worker; a ``path/file.py`` target
is executed again only when the file changed. The worker ends at the end of its socket, and dies
with the supervisor (parent-death signal), so a killed runner leaves none behind. A task that
must not share a process asks for a fresh worker (``fresh_process: true``).
"""

import array
import importlib
import importlib.util
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback

_HEADER = struct.Struct("!II")
_MAX_FDS = 4
_SAMPLE_SECONDS = 0.02
_files = {}  # type: dict[str, tuple[tuple[int, int], object]]  # path -> ((mtime_ns, size), module)


def _load(target, root):
    # type: (str, str) -> object
    where, _, func = target.rpartition(":")
    if where.endswith(".py"):
        path = os.path.abspath(where if os.path.isabs(where) else os.path.join(root, where))
        stat = os.stat(path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = _files.get(path)
        if cached is not None and cached[0] == stamp:
            module = cached[1]
        else:
            name = "flowstage_task_" + os.path.splitext(os.path.basename(path))[0]
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ImportError("cannot load " + where)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            folder = os.path.dirname(path)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            spec.loader.exec_module(module)
            _files[path] = (stamp, module)
    else:
        module = importlib.import_module(where)
    try:
        return getattr(module, func)
    except AttributeError:
        raise AttributeError("%s has no function %r" % (where, func)) from None


def _status_kb(pid, key):
    # type: (str, bytes) -> int
    try:
        with open("/proc/%s/status" % pid, "rb") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _descendants():
    # type: () -> list[int]
    found = []  # type: list[int]
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as fh:
                    kids = [int(x) for x in fh.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


class _Sampler(object):
    """While a task runs: the peak of this process's RSS plus its descendants', every few ms."""

    def __init__(self):
        # type: () -> None
        self.peak_kb = 0
        self._running = threading.Event()
        self._lock = threading.Lock()
        thread = threading.Thread(target=self._loop, name="flowstage-memory", daemon=True)
        thread.start()

    def start(self):
        # type: () -> None
        with self._lock:
            self.peak_kb = 0
        self._running.set()

    def stop(self):
        # type: () -> int
        self._running.clear()
        with self._lock:
            return self.peak_kb

    def _loop(self):
        # type: () -> None
        while True:
            self._running.wait()
            kids = _descendants()
            if kids:
                total = _status_kb("self", b"VmRSS:") + sum(_status_kb(str(pid), b"VmRSS:") for pid in kids)
                with self._lock:
                    if self._running.is_set():
                        self.peak_kb = max(self.peak_kb, total)
            time.sleep(_SAMPLE_SECONDS)


def _stat(pid):
    # type: (int) -> list[bytes]
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return []


def _command(pid):
    # type: (int) -> str
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            words = fh.read().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(w.decode("utf-8", "replace") for w in words if w)
    if not text:  # between its fork and its exec: the name of what it was copied from
        try:
            with open("/proc/%d/comm" % pid, "rb") as fh:
                text = fh.read().decode("utf-8", "replace").strip()
        except OSError:
            text = "?"
    return text[:120] + ("..." if len(text) > 120 else "")


def _end_leftovers():
    # type: () -> list[str]
    """Kill what the task left running (this worker is a subreaper: a daemon that forked twice comes
    back here as its parent ends), reap it; the commands killed, for the task's log."""
    killed = []  # type: list[str]
    named = set()  # type: set[int]
    for _round in range(5):  # a process forking while it is killed: look again
        found = _descendants()
        if not found:
            break
        for pid in found:
            fields = _stat(pid)
            if fields and fields[0] != b"Z" and pid not in named:  # a zombie holds nothing: it is only reaped
                named.add(pid)
                killed.append("%s (pid %d)" % (_command(pid), pid))
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.001)
    return killed


def _subreaper():
    # type: () -> None
    """Orphans of a task's processes come back to this worker, so that the task's end finds them."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def _reset_peak():
    # type: () -> None
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass  # kernels without it: the peak is then the worker's peak so far


def _recv_frame(sock):
    # type: (socket.socket) -> tuple[dict[str, object], list[int]] | None
    fds = array.array("i")
    head, ancdata, _flags, _addr = sock.recvmsg(_HEADER.size, socket.CMSG_SPACE(_MAX_FDS * fds.itemsize))
    if not head:
        return None
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    while len(head) < _HEADER.size:
        more = sock.recv(_HEADER.size - len(head))
        if not more:
            return None
        head += more
    size, _count = _HEADER.unpack(head)
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return json.loads(b"".join(chunks)), list(fds)


def _send_frame(sock, message):
    # type: (socket.socket, dict[str, object]) -> None
    try:
        text = json.dumps(message)
    except (TypeError, ValueError):
        text = json.dumps(message, default=str)
    body = text.encode("utf-8", "surrogatepass")
    sock.sendall(_HEADER.pack(len(body), 0) + body)


def _run(request):
    # type: (dict[str, object]) -> dict[str, object]
    root = str(request["root"])
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        fn = _load(str(request["target"]), root)
        value = fn(**request["kwargs"])  # type: ignore[operator,arg-type]
        return {"ok": True, "value": value}
    except BaseException as exc:  # the error boundary: report, never crash silently
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None  # drop this file's frame
        return {
            "ok": False,
            "error": "%s: %s" % (type(exc).__name__, exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
        }


def main():
    # type: () -> None
    sock = socket.socket(fileno=int(sys.argv[1]))
    devnull = os.open(os.devnull, os.O_RDWR)
    _subreaper()
    sampler = _Sampler()
    while True:
        frame = _recv_frame(sock)
        if frame is None:
            os._exit(0)
        request, fds = frame
        if len(fds) >= 2:
            os.dup2(fds[0], 1)
            os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update(dict(request["env"]))  # type: ignore[call-overload]
        os.chdir(str(request["root"]))
        before = os.times()
        _reset_peak()
        sampler.start()
        answer = _run(request)
        tree_kb = sampler.stop()
        after = os.times()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        left = _end_leftovers()  # before the pipes are let go: a process left holding them is gone
        if left:
            answer["left"] = left
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.chdir("/")
        peak_kb = max(_status_kb("self", b"VmHWM:"), tree_kb)
        answer["memory_mb"] = round(peak_kb / 1024.0, 3)
        answer["cpu_seconds"] = round(sum(after[:4]) - sum(before[:4]), 3)
        answer["rss_mb"] = round(_status_kb("self", b"VmRSS:") / 1024.0, 3)
        _send_frame(sock, answer)


if __name__ == "__main__":
    # this file's folder (flowstage/tasks: http.py, sql.py, ...) must not shadow the standard library
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    main()
