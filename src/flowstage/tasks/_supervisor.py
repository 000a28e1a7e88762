"""The runner's side of the task supervisor: one `_forkserver.py` process per runner, started on first use.

`supervisor()` returns this process's `Supervisor` (a new one after a fork, or when the last
one died). `Supervisor.spawn` asks it to start a child process in a session of its own with the
given descriptors and returns a `Child`: its pid (and process group), `kill()` (the whole group),
and `wait()`, which gives its `Exit`: the exit code and, when measured, the peak memory of its
process tree and its CPU time (see `_forkserver.py` for how they are measured).

Frames to the server carry file descriptors (SCM_RIGHTS); its answers are JSON lines, read by one
daemon thread that wakes the callers waiting on them.
"""

from __future__ import annotations

import array
import contextlib
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from msgspec import Struct

_SERVER = str(Path(__file__).with_name("_forkserver.py"))
_HEADER = struct.Struct("!II")
#: the exit code given to children whose supervisor died under them (as a SIGKILL would)
LOST = 137


class Exit(Struct, frozen=True):
    """How a child ended and what its own process tree used (None: not measured)."""

    code: int
    memory_mb: float | None = None
    cpu_seconds: float | None = None
    #: what it left running when it ended, killed then: ``"command (pid N)"``
    left: tuple[str, ...] = ()


def send_frame(sock: socket.socket, payload: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    """One frame: the header (payload length, descriptor count) carrying `fds`, then the JSON payload."""
    body = json.dumps(payload, default=str).encode()
    head = _HEADER.pack(len(body), len(fds))
    if fds:
        sock.sendmsg([head], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(head)
    sock.sendall(body)


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    """One frame without descriptors; None at the end of the stream."""
    head = _recv_exactly(sock, _HEADER.size)
    if head is None:
        return None
    size, _count = _HEADER.unpack(head)
    body = _recv_exactly(sock, size)
    if body is None:
        return None
    found: dict[str, Any] = json.loads(body)
    return found


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        try:
            chunk = sock.recv(min(size - len(chunks), 1 << 20))
        except OSError:
            return None
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


class Child:
    """A process the supervisor started: it leads its own process group."""

    def __init__(self, supervisor: Supervisor, ident: int) -> None:
        self._supervisor = supervisor
        self.id = ident
        self.pid = 0
        self._started = threading.Event()
        self._ended = threading.Event()
        self._exit: Exit | None = None

    @property
    def done(self) -> bool:
        return self._ended.is_set()

    def kill(self) -> None:
        """SIGKILL to the child's process group (nothing once it was reaped)."""
        if not self._ended.is_set():
            self._supervisor.kill(self)

    def wait(self, timeout: float | None = None) -> Exit | None:
        """How the child ended; None if it has not within `timeout` seconds."""
        if not self._ended.wait(timeout):
            return None
        return self._exit

    def _set_started(self, pid: int) -> None:
        self.pid = pid
        self._started.set()

    def _set_exit(self, found: Exit) -> None:
        self._exit = found
        self._started.set()
        self._ended.set()


class Supervisor:
    """The client of one `_forkserver.py` process."""

    def __init__(self) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._children: dict[int, Child] = {}
        self.alive = True
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        # The server's parent-death signal fires when the *thread* that started it ends: it is
        # started by the thread that reads its answers, which lives as long as the server.
        self._reader = threading.Thread(target=self._serve, args=(theirs,), name="flowstage-supervisor", daemon=True)
        self._reader.start()
        self._ready.wait()
        if self._failed is not None:
            self._sock.close()
            raise self._failed

    def _serve(self, theirs: socket.socket) -> None:
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-E", _SERVER, str(theirs.fileno())],
                cwd="/",
                env={"FLOWSTAGE_RUNNER_PID": str(os.getpid()), "PATH": os.environ.get("PATH", os.defpath)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a Ctrl-C at the terminal is the runner's to handle, not its
            )
        except BaseException as exc:
            self._failed = exc
            self.alive = False
            return
        finally:
            theirs.close()
            self._ready.set()
        self._read()

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        fds: Mapping[int, int],
        measure: bool = True,
    ) -> Child:
        """Start `argv`; `fds` maps each descriptor number in the child to one of ours (sent, not closed)."""
        child = Child(self, next(self._ids))
        with self._lock:
            if not self.alive:
                raise OSError("the task supervisor is not running")
            self._children[child.id] = child
        targets = sorted(fds)
        request = {"op": "spawn", "id": child.id, "argv": list(argv), "cwd": cwd, "env": dict(env)}
        request.update({"fds": targets, "measure": measure})
        try:
            with self._send_lock:
                send_frame(self._sock, request, [fds[t] for t in targets])
        except OSError:
            self._lost()
            raise
        child._started.wait()
        if child.done and child.pid == 0:
            raise OSError("the task supervisor stopped before the process started")
        return child

    def kill(self, child: Child) -> None:
        with contextlib.suppress(OSError), self._send_lock:
            send_frame(self._sock, {"op": "kill", "id": child.id})

    def close(self) -> None:
        """End the server: it kills every group it started."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(timeout=5)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)

    def _read(self) -> None:
        buffered = self._sock.makefile("rb")
        try:
            for line in buffered:
                message = json.loads(line)
                with self._lock:
                    child = self._children.get(message.get("id"))
                    if message.get("op") == "exited":
                        self._children.pop(message.get("id"), None)
                if child is None:
                    continue
                if message.get("op") == "started":
                    child._set_started(int(message["pid"]))
                elif message.get("op") == "exited":
                    memory, cpu = message.get("memory_mb"), message.get("cpu_seconds")
                    child._set_exit(
                        Exit(
                            int(message["code"]),
                            float(memory) if isinstance(memory, int | float) else None,
                            float(cpu) if isinstance(cpu, int | float) else None,
                            tuple(str(x) for x in message.get("left") or ()),
                        )
                    )
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                buffered.close()
            self._lost()

    def _lost(self) -> None:
        """The server is gone: every child still waited for ends as killed."""
        with self._lock:
            self.alive = False
            orphans = list(self._children.values())
            self._children.clear()
        for child in orphans:
            child._set_exit(Exit(LOST))
        with contextlib.suppress(OSError):
            self._sock.close()
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.poll()


_current: Supervisor | None = None
_current_pid = 0
_current_lock = threading.Lock()


def supervisor() -> Supervisor:
    """This process's supervisor, started on first use (and again after a fork or its death)."""
    global _current, _current_pid
    with _current_lock:
        if _current is None or not _current.alive or _current_pid != os.getpid():
            _current = Supervisor()
            _current_pid = os.getpid()
        return _current


__all__ = ["LOST", "Child", "Exit", "Supervisor", "recv_frame", "send_frame", "supervisor"]
