"""Alerts of a run: the hooks that evaluate a workflow's rules, record what fired, and deliver it.

At each task's end (any final status) the rules on that task are evaluated with its metrics; at
the run's end, the run's rules with its status and runtime. Each firing is recorded once per
notifier (stores/alerts.py) and delivered on a small pool of its own threads, so a slow notifier
never holds up the run's tasks; the run-end hook waits for every delivery to be done or given up
(at most 3 tries within 10 s each), so `flowstage run` returns after its alerts went out. A
notifier that fails is logged and recorded as failed: the run's status never changes for it.

`every:` on a rule: within that period after the last notification of the rule (to a notifier),
a firing is recorded as `suppressed`; the next one delivered says how many were folded into it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from flowstage.engine.alerts import Firing, run_firings, task_firings
from flowstage.engine.hooks import Hooks
from flowstage.engine.ports import Event, TaskRun
from flowstage.model.statuses import RunStatus
from flowstage.model.workflow import Workflow
from flowstage.settings import Project

logger = logging.getLogger(__name__)

#: seconds the run's end waits for its deliveries at most (each gives up within 10 s)
DELIVERY_WAIT = 60.0


class RunAlerts:
    """The alert hooks of one run."""

    def __init__(
        self,
        project: Project,
        workflow: Workflow,
        *,
        run_id: str,
        store: Any,
        started_at: float | None = None,
        clock: Callable[[], float] = time.time,
        notifiers: dict[str, Any] | None = None,
    ) -> None:
        self.project = project
        self.clock = clock
        self.workflow = workflow
        self.run_id = run_id
        self.store = store
        self.started_at = started_at if started_at is not None else clock()
        self._pending: list[Future[None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._notifiers = notifiers

    # -- the hooks ---------------------------------------------------------------------

    def after_event(self, event: Event, task: TaskRun | None) -> None:
        if event.kind != "task_status" or task is None or event.status is None:
            return
        metrics = dict(task.metrics or {})
        metrics.setdefault("attempts", len(task.attempts))
        for firing in task_firings(self.workflow.alerts, task.name, str(event.status), metrics):
            self._fire(firing, {task.name: task})

    def after_run(self, status: RunStatus, tasks: Mapping[str, TaskRun]) -> None:
        runtime = max(0.0, self.clock() - self.started_at)
        for firing in run_firings(self.workflow.alerts, status.value, {"runtime_seconds": round(runtime, 3)}):
            self._fire(firing, tasks)
        self.wait()

    def wait(self) -> None:
        """Until every delivery begun is done or given up."""
        deadline = time.monotonic() + DELIVERY_WAIT
        for future in self._pending:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                logger.exception("an alert's delivery did not end in time")
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def hooks(self) -> Hooks:
        return Hooks(after_event=[self.after_event], after_run=[self.after_run])

    # -- firing and delivering -----------------------------------------------------------

    def _fire(self, firing: Firing, tasks: Mapping[str, TaskRun]) -> None:
        alerts = self.store.alerts
        now = self.clock()
        for notifier in firing.alert.notify:
            repeats = 0
            last = alerts.last_sent(self.workflow.name, firing.key, notifier)
            every = firing.alert.every
            if every is not None and last is not None and now - last.fired_at < every:
                self._record(firing, notifier, now, delivery="suppressed")
                continue
            if every is not None and last is not None:
                repeats = alerts.suppressed_since(self.workflow.name, firing.key, notifier, last.fired_at)
            record = self._record(firing, notifier, now)
            self._deliver(record.id, firing, notifier, tasks, repeats)

    def _record(self, firing: Firing, notifier: str, at: float, delivery: str = "pending") -> Any:
        return self.store.alerts.add(
            run_id=self.run_id,
            workflow=self.workflow.name,
            rule=firing.rule,
            alert=firing.alert.as_written(),
            rule_key=firing.key,
            task=firing.task,
            status=firing.status,
            value=firing.value,
            notifier=notifier,
            at=at,
            delivery=delivery,
        )

    def _deliver(self, alert_id: int, firing: Firing, notifier: str, tasks: Mapping[str, TaskRun], repeats: int) -> None:
        from flowstage.notifiers.base import Notification

        body: dict[str, Any] = {
            "workflow": self.workflow.name,
            "run_id": self.run_id,
            "status": firing.status,
            "task": firing.task,
            "alert": firing.alert.as_written(),
            "value": firing.value,
        }
        if repeats:
            body["repeats"] = repeats
        failed = tuple(
            (name, (t.error or "").strip().splitlines()[0] if (t.error or "").strip() else "")
            for name, t in tasks.items()
            if str(t.status) in ("failed", "timed_out")
        )
        notification = Notification(body=body, failed_tasks=failed, run_url=self._run_url())
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="flowstage-alerts")
        self._pending.append(self._pool.submit(self._send, alert_id, notifier, notification, repeats))

    def _send(self, alert_id: int, notifier: str, notification: Any, repeats: int) -> None:
        from flowstage.notifiers.base import deliver

        found = self._notifier(notifier)
        if found is None:
            self.store.alerts.settle(
                alert_id,
                delivery="failed",
                tries=0,
                error=f"no notifier {notifier!r} in flowstage.yaml",
                at=time.time(),
                repeats=repeats,
            )
            return
        outcome = deliver(found, notification)
        self.store.alerts.settle(
            alert_id, delivery=outcome.status, tries=outcome.tries, error=outcome.error, at=time.time(), repeats=repeats
        )
        if outcome.status == "failed":
            logger.warning(
                "alert of %s to %s not delivered after %d tries: %s", self.workflow.name, notifier, outcome.tries, outcome.error
            )

    def _notifier(self, name: str) -> Any:
        if self._notifiers is None:
            from flowstage.app.registry import notifiers_for
            from flowstage.errors import DefinitionError

            try:
                self._notifiers = notifiers_for(self.project)
            except DefinitionError as exc:
                logger.warning("alerts of %s: the notifiers of flowstage.yaml are invalid: %s", self.workflow.name, exc)
                self._notifiers = {}
        return self._notifiers.get(name)

    def _run_url(self) -> str | None:
        server = self.project.config.get("server")
        url = server.get("url") if isinstance(server, dict) else None
        return f"{str(url).rstrip('/')}/runs/{self.run_id}" if url else None


def with_alerts(
    project: Project, workflow: Workflow, hooks: Hooks | None, *, run_id: str, store: Any, started_at: float | None
) -> Hooks | None:
    """`hooks` and, when the workflow has alert rules, the hooks that fire them (DefinitionError when
    flowstage.yaml's notifiers are invalid: the run does not start)."""
    if not workflow.alerts:
        return hooks
    from flowstage.app.registry import notifiers_for

    # a notifier that could never deliver is a problem of flowstage.yaml, told before the run starts
    notifiers = notifiers_for(project)
    alerts = RunAlerts(project, workflow, run_id=run_id, store=store, started_at=started_at, notifiers=notifiers).hooks()
    if hooks is None:
        return alerts
    return Hooks(
        after_event=[*hooks.after_event, *alerts.after_event],
        after_attempt=list(hooks.after_attempt),
        after_run=[*hooks.after_run, *alerts.after_run],
        on_error=hooks.on_error,
    )


__all__ = ["RunAlerts", "with_alerts"]
