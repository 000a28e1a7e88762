"""The runner's supervisor: one small long-lived process that starts, measures and reaps every task process.

Standalone (no flowstage imports, any Python 3.8+), started once per runner process by
`flowstage.tasks._supervisor` as ``python -S -E _forkserver.py FD`` with its control socket on file
descriptor FD. Why a process of its own, and why one for all tasks:

- The runner cannot measure a child it starts itself: at exec the kernel records the memory the
  child started from into its ``ru_maxrss`` (the pages of its pre-exec copy for a fork, the
  whole parent's peak for a vfork), so every task would show the runner's memory. This process
  is a tiny interpreter (no site): a measured child is forked from it and its copy holds about
  6 MB, the least any measured task shows. Children it does not measure (the warm python
  workers, which measure each task themselves) start by posix_spawn, a vfork and an exec.
- One interpreter start per runner, not per task: a shell task costs a fork and an exec here.

The protocol, on a Unix stream socket. The runner sends frames: an 8-byte header (payload
length, number of file descriptors) carrying the descriptors (SCM_RIGHTS), then a JSON payload:

- ``{"op": "spawn", "id", "argv", "cwd", "env", "fds": [target, ...], "measure": bool}``: fork a
  child that leads a session (and process group) of its own, places the received descriptors at
  the target numbers (0, 1, 2, ...), and execs ``argv``. Answered ``{"op": "started", "id",
  "pid"}``, and when the child ends ``{"op": "exited", "id", "code", "memory_mb",
  "cpu_seconds"}`` (newline-delimited JSON).
- ``{"op": "kill", "id"}``: SIGKILL to the child's whole process group.

A child ends when its own process ends: what it started and left running (background commands,
daemons, a setsid escapee) is killed then, and named in ``"left"`` of the ``exited`` answer.

What is measured, for a child spawned with ``measure``:
- ``memory_mb``: the peak resident memory of the child and every process it starts, the largest
  of (a) the summed RSS of its tree (descendants found through /proc, and orphans of its
  session this process adopted as subreaper), sampled a few times in its first milliseconds and
  then every ``INTERVAL`` seconds or so, (b) the largest single process's own high-water mark (``VmHWM``,
  exact between samples), and (c) the ``ru_maxrss`` of the child and the descendants it waited
  for, from ``wait4`` (which includes the pages of its pre-exec copy of this process).
- ``cpu_seconds``: user + system time of the child and the descendants it waited for.
- ``code``: the exit code, ``128 + n`` when signal ``n`` ended it; 127 when it could not start.

Nothing outlives the runner: this process arms a parent-death signal (SIGTERM) and treats the
end of its control socket the same way; either takes down every group it started, and every
descendant it adopted (a process that left its group with setsid included), with SIGKILL.
"""

import array
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import time

INTERVAL = 0.02  # seconds between two samples of a tree (longer for trees slow to sample)
_EARLY = (0.001, 0.003, 0.01)  # seconds from one sample to the next in a child's first moments
_HEADER = struct.Struct("!II")
_MAX_FDS = 16
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_MAXFD = 1 << 16

_libc = None  # type: object


class _Child(object):
    __slots__ = ("id", "pid", "measure", "peak_kb", "done", "next_at", "samples")

    def __init__(self, ident, pid, measure):
        # type: (object, int, bool) -> None
        self.id = ident
        self.pid = pid
        self.measure = measure
        self.peak_kb = 0
        self.done = False
        self.next_at = time.monotonic() + _EARLY[0]
        self.samples = 0


_children = {}  # type: dict[int, _Child]  # by pid, until reaped
_by_id = {}  # type: dict[object, _Child]  # until reaped
_groups = set()  # type: set[int]  # every group started here whose members may live on


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


def _kids(pid):
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


def _kids_by_scan():
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


def _tree(roots):
    # type: (list[int]) -> list[int]
    """`roots` and all their descendants."""
    if _HAS_CHILDREN_FILES:
        lookup = _kids
    else:
        scanned = _kids_by_scan()

        def lookup(pid):
            # type: (int) -> list[int]
            return scanned.get(pid, [])

    seen = set()  # type: set[int]
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(lookup(pid))
    return list(seen)


def _session(pid):
    # type: (int) -> int
    stat = _read("/proc/%d/stat" % pid)
    try:
        return int(stat[stat.rindex(b")") + 2 :].split()[4])
    except (ValueError, IndexError):
        return 0


def _stat_fields(pid):
    # type: (int) -> list[bytes]
    """The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    stat = _read("/proc/%d/stat" % pid)
    try:
        return stat[stat.rindex(b")") + 2 :].split()
    except ValueError:
        return []


def _command(pid):
    # type: (int) -> str
    words = _read("/proc/%d/cmdline" % pid).split(b"\0")
    text = " ".join(w.decode("utf-8", "replace") for w in words if w)
    if not text:  # between its fork and its exec: the name of what it was copied from
        text = _read("/proc/%d/comm" % pid).decode("utf-8", "replace").strip() or "?"
    return text[:120] + ("..." if len(text) > 120 else "")


def _token(ident):
    # type: (object) -> str
    """The value of `TOKEN_VAR` in the environment of a child and everything it starts."""
    return "%d:%s" % (os.getpid(), ident)


TOKEN_VAR = "FLOWSTAGE_SPAWN"


def _leftovers(child):
    # type: (_Child) -> list[str]
    """Kill what `child` left running when it ended; the commands killed, for the task's log.

    A task ends when its main process ends. What it started and left behind — in its process
    group, in its session, or escaped from both with setsid (then found by the environment
    variable every process it starts inherits) — is reparented to this process (the subreaper)
    as its parent ends, so it is found among this process's own children.
    """
    me = os.getpid()
    mark = ("%s=%s" % (TOKEN_VAR, _token(child.id))).encode()
    roots = []  # type: list[int]
    for pid in _kids(me) if _HAS_CHILDREN_FILES else []:
        if pid in _children:
            continue
        fields = _stat_fields(pid)
        in_group = len(fields) > 3 and str(child.pid).encode() in (fields[2], fields[3])  # its group or session
        if in_group or mark in _read("/proc/%d/environ" % pid).split(b"\0"):
            roots.append(pid)
    killed = []  # type: list[str]
    for pid in _tree(roots) if roots else []:
        fields = _stat_fields(pid)
        if fields and fields[0] != b"Z":  # a zombie holds nothing: it is only reaped
            killed.append("%s (pid %d)" % (_command(pid), pid))
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:
        pass
    return killed


def _sample(pids):
    # type: (list[int]) -> int
    """kB: the larger of the processes' summed RSS now and the largest one's own peak so far."""
    total = largest = 0
    for pid in pids:
        rss = hwm = 0
        for line in _read("/proc/%d/status" % pid).splitlines():
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith(b"VmHWM:"):
                hwm = int(line.split()[1])
        total += rss
        largest = max(largest, hwm)
    return max(total, largest)


def _sample_due(now):
    # type: (float) -> float
    """Sample the measured children whose time came; the time of the next sample (0: none is due)."""
    due = [c for c in _children.values() if c.measure and c.next_at <= now]
    if due:
        adopted = {}  # type: dict[int, list[int]]  # session -> orphans this process adopted
        if _HAS_CHILDREN_FILES:
            for pid in _kids(os.getpid()):
                if pid not in _children:
                    adopted.setdefault(_session(pid), []).append(pid)
        for child in due:
            child.peak_kb = max(child.peak_kb, _sample(_tree([child.pid, *adopted.get(child.pid, ())])))
        took = time.monotonic() - now
        for child in due:
            # young children are sampled sooner (most commands are short); a large tree less often:
            # sampling takes at most a tenth of one CPU
            early = _EARLY[child.samples] if child.samples < len(_EARLY) else INTERVAL
            child.samples += 1
            child.next_at = now + max(early, 10 * took)
    return min([c.next_at for c in _children.values() if c.measure] or [0.0])


def _which(name, env):
    # type: (str, dict[str, str]) -> str
    """`name` found on the child's PATH as execvp would find it (looked up before the fork)."""
    if "/" in name:
        return name
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return name  # not found: execve fails with the right error


def _exit_code(status):
    # type: (int) -> int
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 1


def _prctl(option, value):
    # type: (int, int) -> None
    if _libc is None:
        return
    try:
        _libc.prctl(option, value, 0, 0, 0)  # type: ignore[attr-defined]
    except Exception:
        pass


def _send(ctl, message):
    # type: (socket.socket, dict[str, object]) -> None
    try:
        ctl.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        _shutdown()


def _fork_exec(path, argv, env, fds, targets):
    # type: (str, list[str], dict[str, str], list[int], list[int]) -> int
    """Fork and exec a measured child (see the module docstring for why a fork, not a vfork)."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: as little as it can before exec, so its copy of this process stays small
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        for fd, target in zip(fds, targets):  # noqa: B905 (3.8)
            os.dup2(fd, target, inheritable=True)
        os.execve(path, argv, env)
    except BaseException as exc:
        try:
            os.write(2, ("cannot run %s: %s\n" % (argv[0], exc)).encode())
        finally:
            os._exit(127)
    return 0  # never reached


def _spawn(ctl, request, fds):
    # type: (socket.socket, dict[str, object], list[int]) -> None
    """Start the child in a session of its own: forked when measured, else by posix_spawn (vfork and exec)."""
    # first in the block, so that a read of the first bytes of /proc/PID/environ finds it
    env = {TOKEN_VAR: _token(request["id"])}
    env.update(request["env"])  # type: ignore[call-overload]
    argv = list(request["argv"])  # type: ignore[call-overload]
    targets = list(request["fds"])  # type: ignore[call-overload]
    # each received descriptor is first moved above every target (close-on-exec), so that placing
    # one can never overwrite another still to be placed; the targets themselves are inherited
    top = max(targets) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top) for fd in fds]
    for fd in fds:
        os.close(fd)
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in zip(high, targets)]  # noqa: B905 (3.8)
    pid = 0
    measure = bool(request.get("measure", True))
    try:
        path = _which(str(argv[0]), env)
        os.chdir(str(request["cwd"]))  # this process is single-threaded: the child starts there
        if measure:
            pid = _fork_exec(path, argv, env, high, targets)
        else:
            pid = os.posix_spawn(path, argv, env, file_actions=actions, setsid=True, setsigdef=(signal.SIGPIPE,))
    except (OSError, IndexError, ValueError) as exc:
        err = high[targets.index(2)] if 2 in targets else -1
        if err >= 0:
            try:
                os.write(err, ("cannot run %s: %s\n" % (argv[0] if argv else "nothing", exc)).encode())
            except OSError:
                pass
    finally:
        for fd in high:
            os.close(fd)
        try:
            os.chdir("/")
        except OSError:
            pass
    if not pid:
        _send(ctl, {"op": "started", "id": request["id"], "pid": 0})
        _send(ctl, {"op": "exited", "id": request["id"], "code": 127})
        return
    child = _Child(request["id"], pid, measure)
    _children[pid] = child
    _by_id[child.id] = child
    _groups.add(pid)
    _send(ctl, {"op": "started", "id": child.id, "pid": pid})


def _kill(request):
    # type: (dict[str, object]) -> None
    child = _by_id.get(request["id"])
    if child is None:
        return
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:
        pass


def _reap(ctl):
    # type: (socket.socket) -> None
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if not pid:
            return
        child = _children.pop(pid, None)
        if child is None:
            continue  # an adopted orphan
        _by_id.pop(child.id, None)
        child.done = True
        message = {"op": "exited", "id": child.id, "code": _exit_code(status)}  # type: dict[str, object]
        left = _leftovers(child)
        if left:
            message["left"] = left
        if child.measure:
            peak_kb = max(child.peak_kb, usage.ru_maxrss)
            message["memory_mb"] = round(peak_kb / 1024.0, 3)
            message["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 3)
        _send(ctl, message)
        _forget_if_empty(pid)
        _reaped[0] += 1
        if _reaped[0] % 256 == 0:  # groups that outlived their leader, checked now and then
            for pgid in list(_groups):
                if pgid not in _children:
                    _forget_if_empty(pgid)


_reaped = [0]


def _forget_if_empty(pgid):
    # type: (int) -> None
    try:
        os.killpg(pgid, 0)
    except OSError:
        _groups.discard(pgid)


def _shutdown(_signum=0, _frame=None):
    # type: (int, object) -> None
    """The runner is gone: every group started here, then every descendant, with SIGKILL.

    The descendants are listed before the groups are killed and again until none is left: a
    process that left its group (setsid) is found under its parent, and while that parent is being
    killed the kernel hands its children over to this process (the subreaper), so a single look
    taken meanwhile can miss them. Reaping here is what makes "none left" observable.
    """
    me = os.getpid()
    doomed = [pid for pid in _tree([me]) if pid != me]
    for pgid in list(_groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 5.0
    while doomed and time.monotonic() < deadline:
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                reaped, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if reaped == 0:
                break
        doomed = [pid for pid in _tree([me]) if pid != me and not _is_zombie(pid)]
        if doomed:
            time.sleep(0.01)
    os._exit(0)


def _is_zombie(pid):
    # type: (int) -> bool
    """A child that ended and waits to be reaped (or is gone already)."""
    stat = _read("/proc/%d/stat" % pid)
    state_at = stat.rfind(b")") + 2  # the state follows the command, which may hold any byte
    return not stat or stat[state_at : state_at + 1] == b"Z"


def _recv_frame(ctl):
    # type: (socket.socket) -> tuple[dict[str, object], list[int]] | None
    fds = array.array("i")
    head, ancdata, _flags, _addr = ctl.recvmsg(_HEADER.size, socket.CMSG_SPACE(_MAX_FDS * fds.itemsize))
    if not head:
        return None
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    while len(head) < _HEADER.size:
        more = ctl.recv(_HEADER.size - len(head))
        if not more:
            return None
        head += more
    size, _count = _HEADER.unpack(head)
    chunks = []
    while size:
        chunk = ctl.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return json.loads(b"".join(chunks)), list(fds)


def main():
    # type: () -> None
    global _libc
    runner = int(os.environ.get("FLOWSTAGE_RUNNER_PID", "0") or 0)
    ctl = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    signal.set_wakeup_fd(wake_w)
    import ctypes

    try:
        _libc = ctypes.CDLL(None)
    except Exception:
        _libc = None
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphaned descendants are reaped (and counted) here
    if runner and os.getppid() != runner:
        _shutdown()  # the runner died before the signal was armed
    while True:
        next_at = _sample_due(time.monotonic()) if _children else 0.0
        wait = max(0.0, next_at - time.monotonic()) if next_at else None
        try:
            readable, _, _ = select.select([ctl, wake_r], [], [], wait)
        except InterruptedError:
            readable = []
        if ctl in readable:
            try:
                frame = _recv_frame(ctl)
            except (OSError, ValueError):
                frame = None
            if frame is None:
                _shutdown()
            else:
                request, fds = frame
                if request.get("op") == "spawn":
                    _spawn(ctl, request, fds)
                else:
                    for fd in fds:
                        os.close(fd)
                    if request.get("op") == "kill":
                        _kill(request)
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except OSError:
                pass
        _reap(ctl)


if __name__ == "__main__":
    sys.argv[0] = "flowstage-supervisor"
    main()
