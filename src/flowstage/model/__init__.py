"""Pure definitions: workflows, stages, tasks, conditions, statuses. No I/O beyond reading files."""

from flowstage.model.conditions import Condition, When
from flowstage.model.statuses import RunStatus, TaskStatus
from flowstage.model.workflow import Alert, Preferences, Stage, Task, Trigger, Workflow

__all__ = ["Alert", "Condition", "Preferences", "RunStatus", "Stage", "Task", "TaskStatus", "Trigger", "When", "Workflow"]
