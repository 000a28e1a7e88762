"""The in-memory deployment store: the reference implementation of `DeploymentStore`.

What a `MemoryRunStore` hands out as `store.deployments`. Every operation runs under one lock
on a private state, so the rules the SQL store gets from its database hold here by construction:
a (workflow, logical time) key is fired once, a watched run is consumed by one fire, and a
claim that fails half-way leaves nothing behind. Active runs, ended runs and whether a fire's
run exists are read from the run store it belongs to, through that store's public reads.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from msgspec import Struct
from msgspec.structs import replace

from flowstage.engine.scheduling import EndedRun
from flowstage.errors import NotFoundError
from flowstage.redact import mask_strings, mask_url
from flowstage.stores.base import RunStore
from flowstage.stores.deployments import (
    Activation,
    ActiveRun,
    Claim,
    DeployedWorkflow,
    DeployOutcome,
    Fire,
    WorkflowVersion,
    content_hash,
    trigger_keys,
)

_ALL = sys.maxsize


class _Workflow(Struct, frozen=True):
    """The `workflows` row: the current version and what its trigger counts from."""

    name: str
    current_version: int
    activated_at: float
    created_at: float
    schedule_key: str | None = None
    schedule_since: float | None = None
    event_key: str | None = None
    event_since: float | None = None


class _State(Struct):
    """Everything the store keeps; replaced whole by a transaction that fails (rows are never edited in place)."""

    workflows: dict[str, _Workflow]
    versions: dict[str, list[WorkflowVersion]]
    activations: list[Activation]
    fires: dict[tuple[str, float], Fire]
    consumed: dict[tuple[str, str], float]

    def copy(self) -> _State:
        return _State(
            dict(self.workflows),
            {k: list(v) for k, v in self.versions.items()},
            list(self.activations),
            dict(self.fires),
            dict(self.consumed),
        )


class MemoryDeploymentStore:
    """Deployments kept in memory, beside the runs of `runs`."""

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs
        self._lock = threading.RLock()
        self._state = _State({}, {}, [], {}, {})

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_State]:
        with self._lock:
            saved = self._state.copy()
            try:
                yield self._state
            except BaseException:
                self._state = saved
                raise

    # ------------------------------------------------------------------ versions
    def _activate(
        self, st: _State, row: _Workflow, version: int, definition: dict[str, Any], action: str, at: float, by: str | None
    ) -> None:
        schedule_key, event_key = trigger_keys(definition)
        schedule_since = row.schedule_since if schedule_key == row.schedule_key and schedule_key else at
        event_since = row.event_since if event_key == row.event_key and event_key else at
        st.workflows[row.name] = replace(
            row,
            current_version=version,
            activated_at=at,
            schedule_key=schedule_key,
            schedule_since=schedule_since if schedule_key else None,
            event_key=event_key,
            event_since=event_since if event_key else None,
        )
        st.activations.append(Activation(row.name, version, row.current_version or None, action, at, by))

    def deploy(
        self,
        *,
        name: str,
        definition: dict[str, Any],
        text: str,
        files: dict[str, str],
        source: str | None,
        at: float,
        by: str | None,
    ) -> DeployOutcome:
        # a password written in a URL of the workflow is not kept (`***`); a run takes it back from
        # the project's workflow file (`app.definitions.validate_definition`)
        definition, text = mask_strings(definition), mask_url(text)
        digest = content_hash(text, files)
        definition, files = copy.deepcopy(definition), dict(files)
        with self._transaction() as st:
            row = st.workflows.get(name) or _Workflow(name, 0, at, at)
            current = row.current_version or None
            kept = st.versions.setdefault(name, [])
            found = next((v for v in kept if v.content_hash == digest), None)
            if found is not None and found.version == current:
                return DeployOutcome(name, found.version, current, created=False, activated=False)
            if found is not None:
                self._activate(st, row, found.version, found.definition, "deploy", at, by)
                return DeployOutcome(name, found.version, current, created=False, activated=True)
            version = max((v.version for v in kept), default=0) + 1
            kept.append(WorkflowVersion(name, version, digest, definition, text, files, source, at, by))
            self._activate(st, row, version, definition, "deploy", at, by)
        return DeployOutcome(name, version, current, created=True, activated=True)

    def rollback(self, name: str, version: int, *, at: float, by: str | None) -> DeployOutcome:
        with self._transaction() as st:
            row = st.workflows.get(name)
            if row is None:
                raise NotFoundError(f"workflow {name!r} was never deployed")
            kept = st.versions.get(name, [])
            found = next((v for v in kept if v.version == version), None)
            if found is None:
                top = max(v.version for v in kept)
                raise NotFoundError(f"workflow {name!r} has no version {version} (versions 1 to {top})")
            current = row.current_version or None
            if current == version:
                return DeployOutcome(name, version, current, created=False, activated=False)
            self._activate(st, row, version, found.definition, "rollback", at, by)
        return DeployOutcome(name, version, current, created=False, activated=True)

    def _deployed(self, row: _Workflow) -> DeployedWorkflow:
        kept = self._state.versions[row.name]
        current = next(v for v in kept if v.version == row.current_version)
        return DeployedWorkflow(
            name=row.name,
            current_version=row.current_version,
            versions=len(kept),
            activated_at=row.activated_at,
            created_at=row.created_at,
            definition=copy.deepcopy(current.definition),
            content_hash=current.content_hash,
            schedule_since=row.schedule_since,
            event_since=row.event_since,
        )

    def workflows(self) -> list[DeployedWorkflow]:
        with self._lock:
            rows = sorted(self._state.workflows.values(), key=lambda w: (-w.activated_at, w.name))
            return [self._deployed(w) for w in rows]

    def workflow(self, name: str) -> DeployedWorkflow | None:
        with self._lock:
            row = self._state.workflows.get(name)
            return None if row is None else self._deployed(row)

    def versions(self, name: str) -> list[WorkflowVersion]:
        with self._lock:
            kept = self._state.versions.get(name, [])
            return copy.deepcopy(sorted(kept, key=lambda v: -v.version))

    def version(self, name: str, version: int) -> WorkflowVersion | None:
        with self._lock:
            found = next((v for v in self._state.versions.get(name, []) if v.version == version), None)
            return copy.deepcopy(found)

    def version_files(self, name: str, version: int) -> dict[str, str]:
        found = self.version(name, version)
        if found is None:
            raise NotFoundError(f"workflow {name!r} has no version {version}")
        return found.files

    def activations(self, name: str) -> list[Activation]:
        with self._lock:
            return [copy.copy(a) for a in reversed(self._state.activations) if a.workflow == name]

    def stamp(self) -> tuple[Any, ...]:
        with self._lock:
            rows = self._state.workflows.values()
            return (max((w.activated_at for w in rows), default=None), len(rows))

    # ------------------------------------------------------------------ fires
    def last_fire(self, workflow: str, kind: str = "schedule") -> float | None:
        with self._lock:
            times = [f.logical_time for f in self._state.fires.values() if f.workflow == workflow and f.kind == kind]
        return max(times, default=None)

    def last_fires(self, kind: str = "schedule") -> dict[str, float]:
        out: dict[str, float] = {}
        with self._lock:
            for f in self._state.fires.values():
                if f.kind == kind:
                    out[f.workflow] = max(out.get(f.workflow, f.logical_time), f.logical_time)
        return out

    def claim_fire(
        self,
        fire: Fire,
        *,
        max_active: int,
        alive: Callable[[ActiveRun], bool],
        pending_grace: float = 60.0,
    ) -> Claim:
        with self._transaction() as st:
            return self._claim(st, fire, max_active, alive, pending_grace)

    def claim_fires(
        self,
        fires: Sequence[tuple[Fire, int]],
        *,
        alive: Callable[[ActiveRun], bool],
        pending_grace: float = 60.0,
    ) -> list[Claim]:
        order = sorted(range(len(fires)), key=lambda i: (fires[i][0].workflow, fires[i][0].logical_time))
        claims: list[Claim] = [Claim.TAKEN] * len(fires)
        with self._transaction() as st:
            for i in order:
                fire, max_active = fires[i]
                if fire.consumed:
                    raise ValueError("claim_fires takes schedule fires; claim an event fire alone")
                claims[i] = self._claim(st, fire, max_active, alive, pending_grace)
        return claims

    def _claim(self, st: _State, fire: Fire, max_active: int, alive: Callable[[ActiveRun], bool], pending_grace: float) -> Claim:
        last = max(
            (f.logical_time for f in st.fires.values() if f.workflow == fire.workflow and f.kind == fire.kind), default=None
        )
        if last is not None and last >= fire.logical_time:
            if fire.kind == "schedule":
                return Claim.TAKEN
            # an event fire's key only orders it; the consumed runs are what make it unique
            fire.logical_time = last + 1e-6
        running = self.runs.list_runs(workflow=fire.workflow, statuses=["running"], limit=_ALL)
        active = sum(
            1 for r in running if alive(ActiveRun(r.id, r.status, r.runner_pid, r.runner_host, r.runner_started, r.heartbeat_at))
        )
        pending = sum(
            1
            for f in st.fires.values()
            if f.workflow == fire.workflow and f.fired_at > fire.fired_at - pending_grace and not self._recorded(f.run_id)
        )
        if active + pending >= max_active:
            return Claim.BUSY
        key = (fire.workflow, fire.logical_time)
        if key in st.fires:
            return Claim.TAKEN
        if any((fire.workflow, run_id) in st.consumed for run_id in fire.consumed):
            return Claim.TAKEN  # another fire consumed one of these runs: nothing of this one lands
        st.fires[key] = replace(fire, consumed=sorted(fire.consumed))
        for run_id in fire.consumed:
            st.consumed[(fire.workflow, run_id)] = fire.logical_time
        return Claim.CLAIMED

    def _recorded(self, run_id: str) -> bool:
        return self.runs.get_run(run_id, with_tasks=False) is not None

    def fires(self, workflow: str, *, limit: int = 100) -> list[Fire]:
        with self._lock:
            found = [copy.deepcopy(f) for f in self._state.fires.values() if f.workflow == workflow]
        found.sort(key=lambda f: f.logical_time, reverse=True)
        return found[:limit]

    def orphan_fires(self, *, since: float) -> list[Fire]:
        with self._lock:
            found = [copy.deepcopy(f) for f in self._state.fires.values() if f.fired_at > since and not self._recorded(f.run_id)]
        found.sort(key=lambda f: f.logical_time)
        return found

    def take_over(self, fire: Fire, *, at: float, pid: int, host: str) -> bool:
        with self._transaction() as st:
            key = (fire.workflow, fire.logical_time)
            held = st.fires.get(key)
            if held is None or held.fired_at != fire.fired_at or self._recorded(held.run_id):
                return False
            st.fires[key] = replace(held, fired_at=at, fired_pid=pid, fired_host=host)
            return True

    # ------------------------------------------------------------------ event triggers
    def pending_events(
        self, workflow: str, *, watched: Sequence[str], statuses: Sequence[str], since: float, limit: int = 1000
    ) -> list[EndedRun]:
        if not watched or not statuses:
            return []
        with self._lock:
            consumed = {run_id for (w, run_id) in self._state.consumed if w == workflow}
        found: list[EndedRun] = []
        for name in dict.fromkeys(watched):
            ended = [
                EndedRun(r.id, r.workflow, r.status, float(r.ended_at))
                for r in self.runs.list_runs(workflow=name, statuses=list(statuses), limit=_ALL)
                if r.ended_at is not None and r.ended_at > since and r.id not in consumed
            ]
            ended.sort(key=lambda e: (e.ended_at, e.id))
            found += ended[:limit]
        found.sort(key=lambda e: (e.ended_at, e.id))
        return found

    def latest_end(self) -> float | None:
        ends = [r.ended_at for r in self.runs.list_runs(limit=_ALL) if r.ended_at is not None]
        return max(ends, default=None)


__all__ = ["MemoryDeploymentStore"]
