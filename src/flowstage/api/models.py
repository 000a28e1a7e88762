"""The API's answer and request bodies: pydantic models of their own, decoupled from the store's dataclasses.

Times are ISO 8601 strings with a UTC offset, ids are strings (SPEC §5.1). Run and task
records keep their free-form parts (variables, metrics, saved values, attempts) as mappings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: the largest value of the store's BIGINT columns (log line and event ids): a larger cursor is refused (422)
BIGINT_MAX = 2**63 - 1
#: the largest value of its INTEGER columns (versions): a larger version is refused (422)
INTEGER_MAX = 2**31 - 1


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class Health(Answer):
    """Whether the server can do its work: 200 when every part is ok, 503 (degraded) otherwise."""

    status: Literal["ok", "degraded"] = "ok"
    version: str
    store: Literal["ok", "unreachable"] = Field(description="whether the run store answers a query")
    scheduler: Literal["ok", "stopped"] = Field(description="whether the scheduler inside the server runs")


class Problem(Answer):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    problems: list[str] | None = Field(default=None, description="file:line:col problems of a rejected workflow")


class LastRun(Answer):
    id: str
    status: str
    started_at: str | None


class WorkflowSummary(Answer):
    name: str
    version: int
    versions: int
    deployed_at: str | None
    description: str | None = None
    tags: list[str] = []
    trigger: dict[str, Any] | None = None
    last_run: LastRun | None = None


class WorkflowDetail(WorkflowSummary):
    definition: dict[str, Any]
    source: str | None = Field(default=None, description="the file it was deployed from")
    text: str | None = Field(default=None, description="the file's text as deployed (comments and formatting kept)")


class WorkflowVersion(Answer):
    version: int
    current: bool
    hash: str
    deployed_at: str | None
    deployed_by: str | None
    source: str | None
    files: list[str]


class GraphNode(Answer):
    id: str
    stage: str
    kind: str | None = None
    status: str | None = None


class GraphEdge(Answer):
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    condition: str


class StaticGraph(Answer):
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    stages: list[str]


class RunGraph(Answer):
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class Deployed(Answer):
    name: str
    version: int
    previous: int | None = None
    created: bool
    activated: bool


class ValidationProblem(Answer):
    line: int | None
    column: int | None
    message: str
    text: str = Field(description="the problem as `file:line:col: message`")


class Validation(Answer):
    valid: bool
    name: str | None = Field(description="the workflow's name, when the file is valid")
    problems: list[ValidationProblem]
    graph: dict[str, Any] | None = Field(description="the graph laid out for drawing (cytoscape elements), when valid")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=INTEGER_MAX)


class RolledBack(Answer):
    name: str
    version: int
    previous: int | None
    activated: bool


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variables: dict[str, Any] = Field(default_factory=dict)


class RunId(Answer):
    id: str


class RunSummary(Answer):
    id: str
    workflow: str
    version: int | None
    status: str
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None


class RunPage(Answer):
    items: list[RunSummary]
    next: str | None = Field(description="the URL of the next page (older runs); null on the last page")


class TaskRecord(Answer):
    name: str
    stage: str
    status: str
    reason: str | None
    attempts: list[dict[str, Any]]
    started_at: str | None
    ended_at: str | None
    error: str | None
    metrics: dict[str, Any]
    saved: dict[str, Any]
    variables: dict[str, Any] | None = None


class Resume(Answer):
    by: str | None
    at: str | None


class RunMetrics(Answer):
    runtime_seconds: float | None = Field(description="from the run's start to its end (null while it runs)")
    tasks: dict[str, int] = Field(description="its tasks by status")


class RunRecord(RunSummary):
    variables: dict[str, Any]
    metrics: RunMetrics | None = None
    logical_time: str | None
    resumes: list[Resume]
    parent_run_id: str | None
    code: dict[str, Any] | None = None
    tasks: list[TaskRecord]
    graph: RunGraph


class AlertFired(Answer):
    id: int
    run_id: str
    workflow: str
    task: str | None
    status: str = Field(description="the status the run (or task) ended with")
    alert: dict[str, Any] = Field(description="the rule as written")
    value: Any = Field(description="the value observed")
    notifier: str
    delivery: Literal["pending", "delivered", "failed", "suppressed"]
    tries: int
    error: str | None
    repeats: int = Field(description="firings folded into this one by the rule's every:")
    fired_at: str | None
    delivered_at: str | None


class Cancelled(Answer):
    id: str
    status: str


class LogEntry(Answer):
    id: int
    at: str | None
    level: str
    task: str | None
    attempt: int | None
    message: str


class LogPage(Answer):
    items: list[LogEntry]
    next: str | None = Field(description="the URL of the next lines; null when no more lines are recorded yet")
    after: int = Field(description="the cursor to pass as `after=` to read the lines that come next")


class CatalogSummary(Answer):
    name: str
    location: str
    connection: str | None
    format: str | None
    columns: list[dict[str, str]]
    partitions: list[str]
    row_estimate: int | None
    version: int
    updated_at: str | None


class SchemaVersion(Answer):
    version: int
    columns: list[dict[str, Any]] | None = None
    partitions: list[str] = []
    change: dict[str, Any] | None = None
    at: str | None
    run_id: str | None = None


class CatalogDetail(CatalogSummary):
    history: list[SchemaVersion]
