"""The Dask executor: attempts shipped to an existing Dask cluster, decisions kept by the runner.

``--executor dask://HOST:PORT`` makes the runner a client of that cluster's scheduler. Each
attempt of a kind that does work (python, shell, dataflow, crawl, spark) travels as its JSON
message (`AttemptSpec.to_message`) to a task with a fresh key (``pure=False``: two attempts never
share a result); the run store, the state machine and every decision stay with the runner. SQL,
http and sensor tasks, in-process python tasks and sub-workflows stay on the runner: they wait on
other systems, not on CPU, and a worker slot would only hold their wait.

On the worker (`run_on_worker`), the attempt's work runs in a child process, because Dask cannot
stop code that is running: python, shell and spark attempts start their own (the task supervisor's
process group), dataflow and crawl attempts get one (``python -m flowstage.executors.worker``).
The worker watches its task's state and kills that child's group the moment the task is no longer
wanted — cancelled by a timeout or a cancel (the runner cancels the future), or released because
the runner went away — and a child dies with its worker (parent-death signal). Log lines, notes and
where the attempt runs come back as Dask events on a topic of this executor; the outcome comes back
as the task's result, delivered once every event the attempt sent before it has arrived. Tasks see
``FLOWSTAGE_DASK_WORKER`` (the worker's address) and ``FLOWSTAGE_DASK_WORKER_PID``.

A worker that dies takes its attempts with it: the scheduler says so (``remove-worker``), and those
attempts end ``worker_lost``; the runner retries them on a budget of their own. Dask's own
re-run of a lost task is refused by a claim the first run leaves on the scheduler, so an attempt's
code never runs twice. A late answer of an attempt already ended (killed, timed out, lost) is
dropped here, and the runner ignores answers of attempts it no longer waits for.

Workers must see the project at the attempt's `root` (the same path: a shared filesystem or the
same checkout) and have flowstage installed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowstage.engine.ports import WORKER_LOST, AttemptSpec, Outcome, Reports
from flowstage.errors import ConnectionError, DefinitionError
from flowstage.executors.local import LocalExecutor, MaskedReports, RunScrubbers
from flowstage.logging import INFO, WARNING
from flowstage.model.statuses import TaskStatus
from flowstage.tasks import RunResources

#: the kinds whose attempts run on workers; every other kind runs on the runner
REMOTE_KINDS = frozenset({"python", "shell", "dataflow", "crawl", "spark"})
DEFAULT_PORT = 8786
CONNECT_TIMEOUT_SECONDS = 10.0
#: how often a worker checks that its attempt is still wanted (a kill takes at most this long)
POLL_SECONDS = 0.1
#: how long an outcome waits for the attempt's events that are still on their way
EVENTS_GRACE_SECONDS = 5.0


def scheduler_address(url: str) -> str:
    """``dask://host[:port]`` as the scheduler's ``tcp://host:port`` (DefinitionError when malformed)."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    host, _, port = rest.rstrip("/").partition(":")
    if not host or (port and not port.isdigit()) or "/" in host:
        raise DefinitionError(f"executor {url!r}: expected dask://HOST:PORT (e.g. dask://127.0.0.1:8786)")
    return f"tcp://{host}:{port or DEFAULT_PORT}"


@dataclass
class _Remote:
    """One attempt on the cluster, as this executor follows it."""

    key: str
    reports: Reports
    future: Any = None
    events: int = 0  # events received from the attempt
    ended: bool = False  # its outcome was reported (or it was killed): nothing more passes
    arrived: threading.Condition = field(default_factory=threading.Condition)


class _DaskHandle:
    def __init__(self, executor: DaskExecutor, key: str) -> None:
        self._executor, self._key = executor, key

    def kill(self) -> None:
        self._executor._kill(self._key)


class DaskExecutor:
    """Runs attempts on a Dask cluster (`REMOTE_KINDS`) or on the runner (every other kind)."""

    def __init__(self, url: str, resources: RunResources, max_workers: int = 8) -> None:
        address = scheduler_address(url)
        try:
            import distributed
        except ImportError:
            raise DefinitionError(f"executor {url!r} needs Dask: pip install 'flowstage[dask]'") from None
        try:
            _reachable(address)  # a refused connection fails at once (the client would retry to its timeout)
            client_class: Any = distributed.Client  # distributed's API is untyped
            self.client: Any = client_class(address, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"the Dask scheduler at {url} is unreachable ({_first_line(exc)})") from None
        self.url = url
        self.resources = resources
        self.local = LocalExecutor(resources, max_workers=max_workers)
        self.topic = f"flowstage-{uuid.uuid4().hex}"
        self._scrubbers = RunScrubbers(resources)
        self._lock = threading.Lock()
        self._remotes: dict[str, _Remote] = {}
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._serve, name="flowstage-dask", daemon=True)
        self._worker.start()
        self.client.subscribe_topic(self.topic, self._on_event)
        self.client.subscribe_topic("all", self._on_cluster_event)

    # ------------------------------------------------------------------ the port
    def submit(self, job: AttemptSpec, reports: Reports) -> Any:
        if job.kind not in REMOTE_KINDS or getattr(job.spec, "in_process", False):
            return self.local.submit(job, reports)
        key = f"flowstage-{job.task}-{job.attempt}-{uuid.uuid4().hex[:12]}"
        remote = _Remote(key, MaskedReports(reports, self._scrubbers.for_attempt(job)))
        with self._lock:
            self._remotes[key] = remote
        future: Any = self.client.submit(run_on_worker, job.to_message(), self.topic, key=key, pure=False, retries=0)
        remote.future = future
        future.add_done_callback(lambda _f: self._work.put(lambda: self._collect(key)))
        return _DaskHandle(self, key)

    def shutdown(self) -> None:
        with self._lock:
            left = [r.future for r in self._remotes.values() if r.future is not None]
            self._remotes.clear()
        with contextlib.suppress(Exception):
            if left:
                self.client.cancel(left, force=True)
        with contextlib.suppress(Exception):
            self.client.set_metadata(["flowstage", self.topic], None)
        self._work.put(None)
        self._worker.join(timeout=5)
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(self.topic)
            self.client.unsubscribe_topic("all")
        with contextlib.suppress(Exception):
            self.client.close(timeout=5)
        self.local.shutdown()

    # ------------------------------------------------------------------ what the cluster tells
    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """An attempt's event (on the client's event loop: queue, never block)."""
        _, data = event
        with self._lock:
            remote = self._remotes.get(str(data.get("key")))
        if remote is None:
            return  # an attempt already ended: its late lines are dropped
        with remote.arrived:
            remote.events += 1
            remote.arrived.notify_all()
            if remote.ended:
                return
        if "log" in data:
            level, text = data["log"]
            remote.reports.log(int(level), str(text))
        elif "note" in data:
            remote.reports.note(data["note"])
        elif "started" in data:
            remote.reports.log(
                INFO, f"attempt runs on Dask worker {data['started']} (host {data.get('host')}, pid {data.get('pid')})"
            )

    def _on_cluster_event(self, event: tuple[float, dict[str, Any]]) -> None:
        _, data = event
        if not isinstance(data, dict) or data.get("action") != "remove-worker":
            return
        worker = data.get("worker", "a worker")
        keys = {str(k) for k in data.get("processing-tasks") or ()}
        with self._lock:
            lost = [r for k, r in self._remotes.items() if k in keys]
        for remote in lost:
            self._work.put(functools.partial(self._lose, remote, str(worker)))

    # ------------------------------------------------------------------ on this executor's thread
    def _serve(self) -> None:
        while (work := self._work.get()) is not None:
            try:
                work()
            except Exception:  # one attempt's trouble must not stop the others' answers
                import logging

                logging.getLogger(__name__).exception("dask executor")

    def _collect(self, key: str) -> None:
        with self._lock:
            remote = self._remotes.get(key)
        if remote is None or remote.future is None:
            return
        from distributed import CancelledError
        from distributed.scheduler import KilledWorker

        try:
            answer = remote.future.result()
        except CancelledError:
            return  # killed: the runner has already moved on
        except KilledWorker as exc:
            self._lose(remote, _first_line(exc))
            return
        except Exception as exc:
            self._end(remote, Outcome(TaskStatus.FAILED, error=f"the attempt failed on the cluster: {_first_line(exc)}"))
            return
        if not isinstance(answer, dict) or answer.get("duplicate"):
            return  # Dask ran a lost attempt again: refused on the worker, already retried here
        with remote.arrived:
            remote.arrived.wait_for(lambda: remote.events >= int(answer.get("events", 0)), timeout=EVENTS_GRACE_SECONDS)
        self._end(remote, Outcome.from_message(answer["outcome"]))

    def _lose(self, remote: _Remote, worker: str) -> None:
        with contextlib.suppress(Exception):
            # a re-run Dask starts for this key finds it claimed and does nothing
            self.client.set_metadata(["flowstage", self.topic, remote.key], "lost")
        error = f"worker_lost: the Dask worker running the attempt went away ({worker})"
        if self._end(remote, Outcome(TaskStatus.FAILED, error=error, attempt_status=WORKER_LOST)):
            self._cancel(remote)

    def _end(self, remote: _Remote, outcome: Outcome) -> bool:
        """Report `outcome` unless the attempt already ended; True when this call ended it."""
        with remote.arrived:
            if remote.ended:
                return False
            remote.ended = True
        with self._lock:
            self._remotes.pop(remote.key, None)
        remote.reports.done(outcome)
        if remote.future is not None:
            with contextlib.suppress(Exception):
                remote.future.release()
        return True

    def _kill(self, key: str) -> None:
        with self._lock:
            remote = self._remotes.pop(key, None)
        if remote is None:
            return
        with remote.arrived:
            remote.ended = True
        self._work.put(lambda: self._cancel(remote))

    def _cancel(self, remote: _Remote) -> None:
        if remote.future is not None:
            with contextlib.suppress(Exception):
                self.client.cancel([remote.future], force=True)


# ---------------------------------------------------------------------- the worker's side
#: kinds whose work runs in a child process of their own (under the task supervisor): their
#: attempt is driven from the worker's thread, and a kill reaches that child's process group
OWN_CHILD_KINDS = frozenset({"python", "shell", "spark"})


class _EventReports:
    """An attempt's reports sent as events to the executor's topic (the outcome is kept)."""

    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self.emit = emit
        self.outcome: Outcome | None = None

    def log(self, level: int, message: str) -> None:
        self.emit({"log": [level, message]})

    def process(self, pid: int) -> None:
        pass  # a pid of the worker's host means nothing to the runner's host

    def note(self, reason: str | None) -> None:
        self.emit({"note": reason})

    def subrun(self, run_id: str) -> None:
        pass

    def done(self, outcome: Outcome) -> None:
        self.outcome = outcome


def run_on_worker(message: dict[str, Any], topic: str) -> dict[str, Any]:
    """Run one attempt on this Dask worker; stop it as soon as its task is no longer wanted.

    python, shell and spark attempts run their work in a child process of their own (the task
    supervisor's group), driven from this thread; dataflow and crawl attempts, whose work would
    run in this process, get a child process (``python -m flowstage.executors.worker``) so a kill
    stops them too. Returns ``{"outcome": ..., "events": n}`` (n: the events sent to `topic`
    before it), or ``{"duplicate": true}`` when this key already ran (Dask re-running a task whose
    worker died: the runner retries such an attempt itself).
    """
    from distributed import get_worker
    from distributed.utils import sync

    worker = get_worker()
    key = str(worker.get_current_task())
    claim = ["flowstage", topic, key]
    if sync(worker.loop, worker.scheduler.get_metadata, keys=claim, default=None) is not None:
        return {"duplicate": True}
    sync(worker.loop, worker.scheduler.set_metadata, keys=claim, value=worker.address)
    sent = 0
    sent_lock = threading.Lock()

    def emit(data: dict[str, Any]) -> None:
        nonlocal sent
        with sent_lock:
            sent += 1
            worker.log_event(topic, {"key": key, **data})

    def wanted() -> bool:
        task = worker.state.tasks.get(key)  # cancelled by a timeout or cancel, released when the runner is gone
        return task is not None and task.state in ("executing", "long-running")

    where = {"FLOWSTAGE_DASK_WORKER": str(worker.address), "FLOWSTAGE_DASK_WORKER_PID": str(os.getpid())}
    message = {**message, "env": {**(message.get("env") or {}), **where}}
    emit({"started": worker.address, "host": socket.gethostname(), "pid": os.getpid()})
    spec = message.get("spec") or {}
    if message.get("kind") in OWN_CHILD_KINDS and not spec.get("in_process"):
        outcome = _in_this_process(message, emit, wanted)
    else:
        outcome = _in_a_child(message, emit, wanted, str(worker.address))
    return {"outcome": outcome.to_message(), "events": sent}


def _in_this_process(message: dict[str, Any], emit: Callable[[dict[str, Any]], None], wanted: Callable[[], bool]) -> Outcome:
    from flowstage.executors.worker import run_message
    from flowstage.tasks._process import ProcessHandle

    handle = ProcessHandle()
    reports = _EventReports(emit)
    ended = threading.Event()

    def watch() -> None:
        while not ended.wait(POLL_SECONDS):
            if not wanted():
                handle.kill()
                return

    watcher = threading.Thread(target=watch, name="flowstage-attempt-watch", daemon=True)
    watcher.start()
    try:
        run_message(message, reports, handle=handle)
    finally:
        ended.set()
        watcher.join()
    if handle.killed:
        return Outcome(TaskStatus.CANCELLED, error="killed")
    assert reports.outcome is not None
    return reports.outcome


def _in_a_child(
    message: dict[str, Any], emit: Callable[[dict[str, Any]], None], wanted: Callable[[], bool], address: str
) -> Outcome:
    env = {**os.environ, "FLOWSTAGE_PARENT_PID": str(os.getpid())}  # the child dies with this worker
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowstage.executors.worker"],
        cwd=message.get("root") or None,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    outcome: list[dict[str, Any]] = []

    def read_out() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            try:
                data = json.loads(line)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                emit({"log": [INFO, line]})
            elif "outcome" in data:
                outcome.append(data["outcome"])
            elif "log" in data or "note" in data:
                emit(data)

    def read_err() -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            emit({"log": [WARNING, raw.decode("utf-8", "replace").rstrip("\r\n")]})

    readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for reader in readers:
        reader.start()
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(json.dumps(message).encode())
        proc.stdin.close()
    killed = False
    while True:
        try:
            proc.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        if not wanted():
            killed = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
    for reader in readers:
        reader.join(timeout=5)
    if killed:
        return Outcome(TaskStatus.CANCELLED, error="killed")
    if not outcome:
        error = f"the attempt's process on {address} exited with code {proc.returncode} and no outcome"
        return Outcome(TaskStatus.FAILED, error=error)
    return Outcome.from_message(outcome[-1])


def _reachable(address: str) -> None:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_SECONDS):
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["REMOTE_KINDS", "DaskExecutor", "run_on_worker", "scheduler_address"]
