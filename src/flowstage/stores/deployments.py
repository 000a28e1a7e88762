"""What the deployment store keeps: deployed workflows, their versions, and trigger fires.

A workflow is deployed as a *version*: the file's text, the validated definition, the files it
references, and a content hash. A name has one *current* version, set by deploy and rollback;
every change of the current version is an *activation*, so the history stays complete.

A *fire* is one start of a workflow by its trigger. Fires are keyed by (workflow, logical
time): whoever inserts the row starts the run; everyone else sees the key taken. Event triggers
also record the watched runs each fire *consumed*, one row per run, under the same rule.

`DeploymentStore` is the port. `MemoryDeploymentStore` (stores/memory_deployments.py) is its
reference implementation and `SqlDeploymentStore` (stores/sql/deployments.py) keeps it in a SQL
run store's database; a run store hands out its own as `store.deployments` (`HasDeployments`),
since fires and event triggers read that store's runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, Protocol

from msgspec import Struct, field

from flowstage.engine.scheduling import EndedRun


class WorkflowVersion(Struct):
    workflow: str
    version: int
    content_hash: str
    definition: dict[str, Any]
    text: str
    files: dict[str, str]
    source: str | None
    deployed_at: float
    deployed_by: str | None


class DeployedWorkflow(Struct):
    """A deployed name and its current version."""

    name: str
    current_version: int
    versions: int
    activated_at: float
    created_at: float
    definition: dict[str, Any]
    content_hash: str
    schedule_since: float | None = None
    event_since: float | None = None


class Activation(Struct):
    """One change of a workflow's current version."""

    workflow: str
    version: int
    previous: int | None
    action: str  # deploy | rollback
    at: float
    by: str | None


class DeployOutcome(Struct):
    name: str
    version: int
    previous: int | None
    created: bool  # a new version was stored
    activated: bool  # the current version changed


class Claim(str, Enum):
    """The answer to an attempt to fire."""

    CLAIMED = "claimed"  # this caller inserted the fire: it starts the run
    TAKEN = "taken"  # fired already (by anyone), or a later time was
    BUSY = "busy"  # max_active_runs reached: try again later

    def __str__(self) -> str:
        return self.value


class Fire(Struct):
    workflow: str
    logical_time: float
    kind: str  # schedule | event
    version: int | None
    run_id: str
    fired_at: float
    fired_pid: int | None = None
    fired_host: str | None = None
    reason: str | None = None
    consumed: list[str] = field(default_factory=list)


class ActiveRun(Struct):
    """A run recorded as running, with what tells whether its runner still lives."""

    id: str
    status: str
    runner_pid: int | None
    runner_host: str | None
    runner_started: float | None
    heartbeat_at: float | None


def content_hash(text: str, files: Mapping[str, str]) -> str:
    """The hash of a workflow file's text and the files it references (line endings normalized)."""
    h = hashlib.sha256()
    h.update(text.replace("\r\n", "\n").encode("utf-8"))
    for path in sorted(files):
        h.update(b"\0" + path.encode("utf-8") + b"\0")
        h.update(files[path].replace("\r\n", "\n").encode("utf-8"))
    return h.hexdigest()


def trigger_keys(definition: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """What a definition's trigger waits for: (schedule key, event key), None where it has none.

    When a version with a different key becomes current, the trigger counts from then on: a new
    schedule does not catch up on times before it was deployed, a new event rule does not count
    runs that ended before.
    """
    trigger = definition.get("trigger") or {}
    schedule = trigger.get("schedule")
    schedule_key = f"{schedule}|{trigger.get('timezone', 'UTC')}" if schedule else None
    after = trigger.get("after")
    event_key = json.dumps(after, sort_keys=True) if after else None
    return schedule_key, event_key


class DeploymentStore(Protocol):
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
        """Store a version (unless one with the same content exists) and make it current."""
        ...

    def rollback(self, name: str, version: int, *, at: float, by: str | None) -> DeployOutcome: ...

    def workflows(self) -> list[DeployedWorkflow]:
        """Every deployed workflow, the latest activated first."""
        ...

    def workflow(self, name: str) -> DeployedWorkflow | None: ...

    def versions(self, name: str) -> list[WorkflowVersion]:
        """The versions of `name`, newest first."""
        ...

    def version(self, name: str, version: int) -> WorkflowVersion | None: ...

    def version_files(self, name: str, version: int) -> dict[str, str]:
        """The project files kept with a version, {path relative to the project root: text}.

        What a run of that version reads instead of the files on disk (SQL, Python, packages).
        Raises NotFoundError when `name` has no such version.
        """
        ...

    def activations(self, name: str) -> list[Activation]: ...

    def stamp(self) -> tuple[Any, ...]:
        """Changes whenever a workflow is deployed or rolled back (cheap to read)."""
        ...

    def last_fire(self, workflow: str, kind: str = "schedule") -> float | None: ...

    def last_fires(self, kind: str = "schedule") -> dict[str, float]: ...

    def claim_fire(
        self,
        fire: Fire,
        *,
        max_active: int,
        alive: Callable[[ActiveRun], bool],
        pending_grace: float = 60.0,
    ) -> Claim:
        """Insert `fire` unless its key is taken, a later time already fired, or `max_active` runs are active.

        An event fire whose logical time is not after the workflow's latest event fire is moved just
        after it (the key orders event fires; its consumed runs make it unique).
        """
        ...

    def claim_fires(
        self,
        fires: Sequence[tuple[Fire, int]],
        *,
        alive: Callable[[ActiveRun], bool],
        pending_grace: float = 60.0,
    ) -> list[Claim]:
        """`claim_fire` for many schedule fires, each with its max_active_runs, in one transaction."""
        ...

    def fires(self, workflow: str, *, limit: int = 100) -> list[Fire]:
        """The fires of `workflow`, the latest logical time first, each with the runs it consumed."""
        ...

    def orphan_fires(self, *, since: float) -> list[Fire]:
        """Fires since `since` whose run was never created (their scheduler died in between)."""
        ...

    def take_over(self, fire: Fire, *, at: float, pid: int, host: str) -> bool:
        """Compare-and-set the owner of an orphan fire; True when this caller now owns it."""
        ...

    def pending_events(
        self, workflow: str, *, watched: Sequence[str], statuses: Sequence[str], since: float, limit: int = 1000
    ) -> list[EndedRun]:
        """Ended runs of the watched workflows, in the statuses, since `since`, not consumed by `workflow`."""
        ...

    def latest_end(self) -> float | None:
        """The latest `ended_at` of any run (a cheap change marker for event triggers)."""
        ...


class HasDeployments(Protocol):
    """A run store that keeps deployments beside its runs."""

    @property
    def deployments(self) -> DeploymentStore: ...


__all__ = [
    "Activation",
    "ActiveRun",
    "Claim",
    "DeployOutcome",
    "DeployedWorkflow",
    "DeploymentStore",
    "Fire",
    "HasDeployments",
    "WorkflowVersion",
    "content_hash",
    "trigger_keys",
]
