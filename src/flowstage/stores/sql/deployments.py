"""The deployment store on a `SqlRunStore`'s database: versions, activations, trigger fires.

Portable SQL on the run store's driver (stdlib sqlite3 or SQLAlchemy). Exactly-once starts rest
on the database, never on timing:
- a fire is ``INSERT ... ON CONFLICT DO NOTHING`` on the (workflow, logical_time) key, and the
  inserter alone starts the run; an event fire also inserts one `trigger_consumed` row per watched
  run, in the same transaction, so a run is consumed by one fire at most;
- deploy, rollback and fires of one workflow first lock its `workflows` row (``FOR UPDATE`` on
  PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serializes writers), so `max_active_runs`
  and "never fire a time older than the latest fired" are checked and acted on atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from flowstage.engine.scheduling import EndedRun
from flowstage.errors import NotFoundError
from flowstage.redact import mask_strings, mask_url
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


class _Conflict(Exception):
    """Rolls a fire back when one of its consumed runs was consumed by another fire."""


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)


def _in(prefix: str, values: Sequence[Any], params: dict[str, Any]) -> str:
    """``(:p0, :p1, ...)`` for an IN list, with the values added to `params`."""
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return "(" + ", ".join(names) + ")"


_WORKFLOW_SELECT = (
    "SELECT w.name, w.current_version, w.activated_at, w.created_at, w.schedule_since, w.event_since, "
    "v.definition, v.content_hash, (SELECT COUNT(*) FROM workflow_versions x WHERE x.workflow = w.name) AS versions "
    "FROM workflows w JOIN workflow_versions v ON v.workflow = w.name AND v.version = w.current_version"
)

if TYPE_CHECKING:  # the run store opens these lazily: a type, not an import
    from flowstage.stores.sql.store import SqlRunStore
_VERSION_COLUMNS = "workflow, version, content_hash, definition, text, files, source, deployed_at, deployed_by"
_FIRE_COLUMNS = "workflow, logical_time, kind, version, run_id, fired_at, fired_pid, fired_host, reason"


class SqlDeploymentStore:
    """Deployments in the run store's database (the tables of migration 0002)."""

    def __init__(self, store: SqlRunStore) -> None:
        self.store = store
        self._lock_clause = "" if store.is_sqlite else " FOR UPDATE"

    # The run store's transactions turn driver errors into StoreError with the URL masked.
    def _write(self) -> Any:
        return self.store.write_transaction()

    def _read(self) -> Any:
        return self.store.read_transaction()

    # ------------------------------------------------------------------ versions
    def _lock_workflow(self, tx: Any, name: str) -> dict[str, Any] | None:
        rows = tx.query(
            f"SELECT current_version, schedule_key, event_key, schedule_since, event_since FROM workflows WHERE name = :n{self._lock_clause}",
            {"n": name},
        )
        return dict(rows[0]) if rows else None

    def _activate(
        self,
        tx: Any,
        name: str,
        row: dict[str, Any],
        version: int,
        definition: dict[str, Any],
        action: str,
        at: float,
        by: str | None,
    ) -> None:
        schedule_key, event_key = trigger_keys(definition)
        schedule_since = row["schedule_since"] if schedule_key == row["schedule_key"] and schedule_key else at
        event_since = row["event_since"] if event_key == row["event_key"] and event_key else at
        previous = row["current_version"] or None
        tx.execute(
            "UPDATE workflows SET current_version = :v, activated_at = :at, schedule_key = :sk, schedule_since = :ss, "
            "event_key = :ek, event_since = :es WHERE name = :n",
            {
                "v": version,
                "at": at,
                "sk": schedule_key,
                "ss": schedule_since if schedule_key else None,
                "ek": event_key,
                "es": event_since if event_key else None,
                "n": name,
            },
        )
        tx.execute(
            "INSERT INTO workflow_activations (workflow, version, previous, action, at, by) VALUES (:n, :v, :p, :a, :at, :by)",
            {"n": name, "v": version, "p": previous, "a": action, "at": at, "by": by},
        )

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
        with self._write() as tx:
            tx.execute(
                "INSERT INTO workflows (name, current_version, activated_at, created_at) VALUES (:n, 0, :at, :at) "
                "ON CONFLICT (name) DO NOTHING",
                {"n": name, "at": at},
            )
            row = self._lock_workflow(tx, name)
            assert row is not None
            current = row["current_version"] or None
            found = tx.query(
                "SELECT version, definition FROM workflow_versions WHERE workflow = :n AND content_hash = :h",
                {"n": name, "h": digest},
            )
            if found and found[0]["version"] == current:
                return DeployOutcome(name, int(found[0]["version"]), current, created=False, activated=False)
            if found:
                version = int(found[0]["version"])
                self._activate(tx, name, row, version, json.loads(found[0]["definition"]), "deploy", at, by)
                return DeployOutcome(name, version, current, created=False, activated=True)
            top = tx.query("SELECT MAX(version) AS v FROM workflow_versions WHERE workflow = :n", {"n": name})
            version = int(top[0]["v"] or 0) + 1
            tx.execute(
                f"INSERT INTO workflow_versions ({_VERSION_COLUMNS}) VALUES (:n, :v, :h, :d, :t, :f, :s, :at, :by)",
                {
                    "n": name,
                    "v": version,
                    "h": digest,
                    "d": _dumps(definition),
                    "t": text,
                    "f": _dumps(files),
                    "s": source,
                    "at": at,
                    "by": by,
                },
            )
            self._activate(tx, name, row, version, definition, "deploy", at, by)
        return DeployOutcome(name, version, current, created=True, activated=True)

    def rollback(self, name: str, version: int, *, at: float, by: str | None) -> DeployOutcome:
        with self._write() as tx:
            row = self._lock_workflow(tx, name)
            if row is None:
                raise NotFoundError(f"workflow {name!r} was never deployed")
            found = tx.query(
                "SELECT definition FROM workflow_versions WHERE workflow = :n AND version = :v", {"n": name, "v": version}
            )
            if not found:
                top = tx.query("SELECT MAX(version) AS v FROM workflow_versions WHERE workflow = :n", {"n": name})
                raise NotFoundError(f"workflow {name!r} has no version {version} (versions 1 to {top[0]['v']})")
            current = row["current_version"] or None
            if current == version:
                return DeployOutcome(name, version, current, created=False, activated=False)
            self._activate(tx, name, row, version, json.loads(found[0]["definition"]), "rollback", at, by)
        return DeployOutcome(name, version, current, created=False, activated=True)

    def workflows(self) -> list[DeployedWorkflow]:
        with self._read() as tx:
            rows = tx.query(f"{_WORKFLOW_SELECT} ORDER BY w.activated_at DESC, w.name")
        return [_workflow(r) for r in rows]

    def workflow(self, name: str) -> DeployedWorkflow | None:
        with self._read() as tx:
            rows = tx.query(f"{_WORKFLOW_SELECT} WHERE w.name = :n", {"n": name})
        return _workflow(rows[0]) if rows else None

    def versions(self, name: str) -> list[WorkflowVersion]:
        with self._read() as tx:
            rows = tx.query(
                f"SELECT {_VERSION_COLUMNS} FROM workflow_versions WHERE workflow = :n ORDER BY version DESC", {"n": name}
            )
        return [_version(r) for r in rows]

    def version(self, name: str, version: int) -> WorkflowVersion | None:
        with self._read() as tx:
            rows = tx.query(
                f"SELECT {_VERSION_COLUMNS} FROM workflow_versions WHERE workflow = :n AND version = :v",
                {"n": name, "v": version},
            )
        return _version(rows[0]) if rows else None

    def version_files(self, name: str, version: int) -> dict[str, str]:
        with self._read() as tx:
            rows = tx.query("SELECT files FROM workflow_versions WHERE workflow = :n AND version = :v", {"n": name, "v": version})
        if not rows:
            raise NotFoundError(f"workflow {name!r} has no version {version}")
        files: dict[str, str] = json.loads(rows[0]["files"])
        return files

    def activations(self, name: str) -> list[Activation]:
        with self._read() as tx:
            rows = tx.query(
                "SELECT workflow, version, previous, action, at, by FROM workflow_activations WHERE workflow = :n ORDER BY id DESC",
                {"n": name},
            )
        return [Activation(r["workflow"], r["version"], r["previous"], r["action"], r["at"], r["by"]) for r in rows]

    def stamp(self) -> tuple[Any, ...]:
        with self._read() as tx:
            rows = tx.query("SELECT MAX(activated_at) AS at, COUNT(*) AS n FROM workflows")
        return (rows[0]["at"], rows[0]["n"])

    # ------------------------------------------------------------------ fires
    def last_fire(self, workflow: str, kind: str = "schedule") -> float | None:
        with self._read() as tx:
            rows = tx.query(
                "SELECT MAX(logical_time) AS t FROM trigger_fires WHERE workflow = :w AND kind = :k", {"w": workflow, "k": kind}
            )
        value = rows[0]["t"] if rows else None
        return None if value is None else float(value)

    def last_fires(self, kind: str = "schedule") -> dict[str, float]:
        """The latest fired logical time of every workflow (one query for a scheduler's start)."""
        with self._read() as tx:
            rows = tx.query(
                "SELECT workflow, MAX(logical_time) AS t FROM trigger_fires WHERE kind = :k GROUP BY workflow", {"k": kind}
            )
        return {r["workflow"]: float(r["t"]) for r in rows}

    def claim_fire(
        self,
        fire: Fire,
        *,
        max_active: int,
        alive: Callable[[ActiveRun], bool],
        pending_grace: float = 60.0,
    ) -> Claim:
        try:
            with self._write() as tx:
                return self._claim(tx, fire, max_active, alive, pending_grace)
        except _Conflict:
            return Claim.TAKEN

    def claim_fires(
        self,
        fires: Sequence[tuple[Fire, int]],
        *,
        alive: Callable[[ActiveRun], bool],
        pending_grace: float = 60.0,
    ) -> list[Claim]:
        """`claim_fire` for many schedule fires (each with its max_active_runs) in one transaction.

        Workflow rows are locked in name order, so two schedulers claiming overlapping batches
        wait for each other instead of deadlocking.
        """
        order = sorted(range(len(fires)), key=lambda i: (fires[i][0].workflow, fires[i][0].logical_time))
        claims: list[Claim] = [Claim.TAKEN] * len(fires)
        with self._write() as tx:
            for i in order:
                fire, max_active = fires[i]
                if fire.consumed:
                    raise ValueError("claim_fires takes schedule fires; claim an event fire alone")
                claims[i] = self._claim(tx, fire, max_active, alive, pending_grace)
        return claims

    def _claim(self, tx: Any, fire: Fire, max_active: int, alive: Callable[[ActiveRun], bool], pending_grace: float) -> Claim:
        self._lock_workflow(tx, fire.workflow)
        latest = tx.query(
            "SELECT MAX(logical_time) AS t FROM trigger_fires WHERE workflow = :w AND kind = :k",
            {"w": fire.workflow, "k": fire.kind},
        )
        last = latest[0]["t"]
        if last is not None and float(last) >= fire.logical_time:
            if fire.kind == "schedule":
                return Claim.TAKEN
            # an event fire's key only orders it; the consumed runs are what make it unique
            fire.logical_time = float(last) + 1e-6
        running = tx.query(
            "SELECT id, status, runner_pid, runner_host, runner_started, heartbeat_at FROM runs "
            "WHERE workflow = :w AND status = 'running'",
            {"w": fire.workflow},
        )
        active = sum(1 for r in running if alive(ActiveRun(**dict(r))))
        pending = tx.query(
            "SELECT COUNT(*) AS n FROM trigger_fires f WHERE f.workflow = :w AND f.fired_at > :recent "
            "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = f.run_id)",
            {"w": fire.workflow, "recent": fire.fired_at - pending_grace},
        )
        if active + int(pending[0]["n"]) >= max_active:
            return Claim.BUSY
        inserted = tx.execute(
            f"INSERT INTO trigger_fires ({_FIRE_COLUMNS}) VALUES (:workflow, :logical_time, :kind, :version, :run_id, "
            ":fired_at, :fired_pid, :fired_host, :reason) ON CONFLICT (workflow, logical_time) DO NOTHING",
            {
                "workflow": fire.workflow,
                "logical_time": fire.logical_time,
                "kind": fire.kind,
                "version": fire.version,
                "run_id": fire.run_id,
                "fired_at": fire.fired_at,
                "fired_pid": fire.fired_pid,
                "fired_host": fire.fired_host,
                "reason": fire.reason,
            },
        )
        if inserted != 1:
            return Claim.TAKEN
        for run_id in fire.consumed:
            took = tx.execute(
                "INSERT INTO trigger_consumed (workflow, run_id, fire_time) VALUES (:w, :r, :t) "
                "ON CONFLICT (workflow, run_id) DO NOTHING",
                {"w": fire.workflow, "r": run_id, "t": fire.logical_time},
            )
            if took != 1:
                raise _Conflict()  # rolls the whole fire back: another fire consumed that run
        return Claim.CLAIMED

    def fires(self, workflow: str, *, limit: int = 100) -> list[Fire]:
        with self._read() as tx:
            rows = tx.query(
                f"SELECT {_FIRE_COLUMNS} FROM trigger_fires WHERE workflow = :w ORDER BY logical_time DESC LIMIT :limit",
                {"w": workflow, "limit": int(limit)},
            )
            found = [_fire(r) for r in rows]
            if found:
                oldest = found[-1].logical_time
                consumed = tx.query(
                    "SELECT run_id, fire_time FROM trigger_consumed WHERE workflow = :w AND fire_time >= :t ORDER BY run_id",
                    {"w": workflow, "t": oldest},
                )
                by_time: dict[float, list[str]] = {}
                for c in consumed:
                    by_time.setdefault(float(c["fire_time"]), []).append(c["run_id"])
                for f in found:
                    f.consumed = by_time.get(f.logical_time, [])
        return found

    def orphan_fires(self, *, since: float) -> list[Fire]:
        with self._read() as tx:
            rows = tx.query(
                f"SELECT {', '.join('f.' + c.strip() for c in _FIRE_COLUMNS.split(','))} FROM trigger_fires f "
                "WHERE f.fired_at > :since AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = f.run_id) ORDER BY f.logical_time",
                {"since": since},
            )
        return [_fire(r) for r in rows]

    def take_over(self, fire: Fire, *, at: float, pid: int, host: str) -> bool:
        with self._write() as tx:
            count = tx.execute(
                "UPDATE trigger_fires SET fired_at = :at, fired_pid = :pid, fired_host = :host "
                "WHERE workflow = :w AND logical_time = :t AND fired_at = :old "
                "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = trigger_fires.run_id)",
                {"at": at, "pid": pid, "host": host, "w": fire.workflow, "t": fire.logical_time, "old": fire.fired_at},
            )
        return bool(count == 1)

    # ------------------------------------------------------------------ event triggers
    def pending_events(
        self, workflow: str, *, watched: Sequence[str], statuses: Sequence[str], since: float, limit: int = 1000
    ) -> list[EndedRun]:
        """Ended runs of the watched workflows, in the statuses, since `since`, not consumed by `workflow`.

        At most `limit` per watched workflow, the oldest first, so a busy watched workflow cannot
        hide the one run of another that an ALL rule waits for.
        """
        if not watched or not statuses:
            return []
        params: dict[str, Any] = {"w": workflow, "since": since, "limit": int(limit)}
        states = _in("s", list(statuses), params)
        rows: list[Any] = []
        with self._read() as tx:
            for name in dict.fromkeys(watched):
                rows += tx.query(
                    f"SELECT r.id, r.workflow, r.status, r.ended_at FROM runs r WHERE r.workflow = :n AND r.status IN {states} "
                    "AND r.ended_at > :since AND NOT EXISTS "
                    "(SELECT 1 FROM trigger_consumed c WHERE c.workflow = :w AND c.run_id = r.id) "
                    "ORDER BY r.ended_at, r.id LIMIT :limit",
                    {**params, "n": name},
                )
        rows.sort(key=lambda r: (r["ended_at"], r["id"]))
        return [EndedRun(r["id"], r["workflow"], r["status"], float(r["ended_at"])) for r in rows]

    def latest_end(self) -> float | None:
        with self._read() as tx:
            rows = tx.query("SELECT MAX(ended_at) AS t FROM runs")
        value = rows[0]["t"] if rows else None
        return None if value is None else float(value)


def _workflow(r: Any) -> DeployedWorkflow:
    return DeployedWorkflow(
        name=r["name"],
        current_version=int(r["current_version"]),
        versions=int(r["versions"]),
        activated_at=float(r["activated_at"]),
        created_at=float(r["created_at"]),
        definition=json.loads(r["definition"]),
        content_hash=r["content_hash"],
        schedule_since=r["schedule_since"],
        event_since=r["event_since"],
    )


def _version(r: Any) -> WorkflowVersion:
    return WorkflowVersion(
        workflow=r["workflow"],
        version=int(r["version"]),
        content_hash=r["content_hash"],
        definition=json.loads(r["definition"]),
        text=r["text"],
        files=json.loads(r["files"]),
        source=r["source"],
        deployed_at=float(r["deployed_at"]),
        deployed_by=r["deployed_by"],
    )


def _fire(r: Any) -> Fire:
    return Fire(
        workflow=r["workflow"],
        logical_time=float(r["logical_time"]),
        kind=r["kind"],
        version=r["version"],
        run_id=r["run_id"],
        fired_at=float(r["fired_at"]),
        fired_pid=r["fired_pid"],
        fired_host=r["fired_host"],
        reason=r["reason"],
    )


__all__ = ["SqlDeploymentStore"]
