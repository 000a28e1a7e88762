"""The workflow model: Workflow, Stage, Task, Preferences, Trigger, Alert.

Definitions are frozen pydantic models. A task's kind key and kind-specific keys are gathered
into `Task.spec` (a `KindSpec`) on the way in, and spread back on the way out, so a task reads
and writes exactly as in the file.

Annotations here are evaluated as Python reads them (no `from __future__ import annotations`):
pydantic then takes the types as they are instead of evaluating every annotation's text again
when it builds each class, which a run pays at every start.
"""

import math
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowstage.model.conditions import Condition, When
from flowstage.model.durations import Duration, format_duration
from flowstage.model.kinds import KindSpec, all_kinds, kind_spec

NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
TASK_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical")

LogLevel = Literal["debug", "info", "notice", "warning", "error", "critical"]
TaskName = Annotated[str, Field(pattern=TASK_NAME_PATTERN, max_length=200)]


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    import difflib  # only for a message

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Frozen(BaseModel):
    """Base of the definitions: frozen, unknown keys refused, built from keyword arguments only."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)

    if not TYPE_CHECKING:  # type checkers see pydantic's keyword-only signature of the fields

        def __init__(self, /, *args: Any, **data: Any) -> None:
            if args:
                raise TypeError(_keywords_only(type(self), args))
            super().__init__(**data)

    def replace(self, **changes: Any) -> Self:
        """A validated copy with `changes`, keys spelled as the constructor takes them.

        ``task.replace(shell="echo 2")``, ``workflow.replace(tasks=[*workflow.tasks, Task(...)])``;
        what is not named stays as it was (set or left to its default).
        """
        fields = type(self).model_fields
        data: dict[str, Any] = {fields[name].alias or name: getattr(self, name) for name in self.model_fields_set}
        for key, value in changes.items():
            field = fields.get(key)
            data[(field.alias or key) if field is not None else key] = value
        return self.model_validate(data)


def _keywords_only(cls: type[BaseModel], args: tuple[Any, ...]) -> str:
    """Why `cls(*args)` is refused, and how to write it."""
    name = cls.__name__
    first = next(iter(cls.model_fields), "name")
    example = 'name="load", shell="echo hi"' if name == "Task" else f"{first}=..., ..."
    given = ", ".join(repr(a) if len(repr(a)) <= 40 else f"<{type(a).__name__}>" for a in args[:3])
    count = f"{len(args)} positional argument{'s' if len(args) != 1 else ''}"
    return (
        f"{name}() takes keyword arguments only, e.g. {name}({example}); got {count} ({given}{', ...' if len(args) > 3 else ''})"
    )


def _normalize_after(value: Any) -> Any:
    """`after: a`, `after: [a, b]` and `after: {a: failure}` all become a mapping."""
    if value is None:
        return None
    if isinstance(value, str):
        return {value: Condition.SUCCESS}
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            if isinstance(item, str):
                out[item] = Condition.SUCCESS
            elif isinstance(item, dict) and len(item) == 1:
                out.update(item)
            else:
                raise ValueError("after: list items are task names")
        return out
    return value


COMMON_TASK_KEYS = (
    "name",
    "description",
    "after",
    "when",
    "if",
    "retries",
    "retry_delay",
    "retry_backoff",
    "retry_delay_max",
    "timeout",
    "variables",
    "with",
    "save",
    "instances",
    "for_each",
    "log_level",
)
#: the common keys as a task's mapping may carry them (by alias or by field name)
_COMMON_KEYS = frozenset((*COMMON_TASK_KEYS, "if_", "with_"))
_TASK_NAME = re.compile(TASK_NAME_PATTERN)
_spec_keys: dict[type[KindSpec], frozenset[str]] = {}


def _keys_of(spec_cls: type[KindSpec]) -> frozenset[str]:
    """The keys a kind's spec takes (asked once per kind: pydantic builds `model_fields` anew each time)."""
    keys = _spec_keys.get(spec_cls)
    if keys is None:
        keys = _spec_keys[spec_cls] = frozenset(spec_cls.model_fields)
    return keys


def _backoff(value: Any) -> float:
    """A `retry_backoff`: a finite number of at least 1 (1: every retry waits as long)."""
    message = f"a number of at least 1 (each retry waits this many times longer than the one before), got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(message)
    try:
        factor = float(value)
    except OverflowError:  # an int too large for a float
        factor = math.inf
    if not math.isfinite(factor) or factor < 1:
        raise ValueError(message)
    return factor


#: `retry_backoff`: each retry waits this many times longer than the one before (1: as long)
Backoff = Annotated[
    float,
    BeforeValidator(_backoff),
    Field(json_schema_extra={"minimum": 1}, description="each retry waits this many times longer than the one before"),
]


def _check_delay_cap(delay: float | None, cap: float | None) -> None:
    """`retry_delay_max` below `retry_delay` (set side by side) is a mistake, not a cap."""
    if delay is not None and cap is not None and cap < delay:
        raise PydanticCustomError(
            "retry_delay_max",
            "retry_delay_max ({cap}) is shorter than retry_delay ({delay}): the cap must be at least the first delay",
            {"key": "retry_delay_max", "cap": format_duration(cap), "delay": format_duration(delay)},
        )


class Task(_Frozen):
    """One task: common keys plus exactly one kind (its spec).

    In Python the keys are keyword arguments as in the file (``Task(name="load", shell="...",
    after={"extract": "failure"}, when="any")``), the kind's keys among them; ``if:`` and ``with:``,
    Python keywords, are spelled ``if_=`` and ``with_=`` (or passed as ``**{"if": ...}``).
    """

    name: TaskName
    description: str | None = None
    after: Annotated[dict[str, Condition] | None, BeforeValidator(_normalize_after)] = Field(
        default=None, description="predecessors and their condition; replaces the stage default"
    )
    when: When = When.ALL
    if_: str | None = Field(default=None, alias="if", description="an expression on variables")
    retries: int | None = Field(default=None, ge=0, le=1000)
    retry_delay: Duration | None = None
    retry_backoff: Backoff | None = None
    retry_delay_max: Duration | None = None
    timeout: Duration | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    save: str | dict[str, str] | None = None
    instances: int | None = Field(default=None, ge=1, le=10000)
    for_each: str | list[Any] | None = None
    log_level: LogLevel | None = None
    spec: SerializeAsAny[KindSpec]

    if TYPE_CHECKING:  # the kind's keys are keywords too, whichever kinds are installed

        def __init__(self, *, name: str, **keys: Any) -> None: ...

    def replace(self, **changes: Any) -> Self:
        """A validated copy with `changes`; a kind's key (``shell=``, ``connection=``) changes the spec."""
        if all(key in _COMMON_KEYS or key == "spec" for key in changes):
            return super().replace(**changes)
        data = self.model_dump(by_alias=True, exclude_unset=True)  # the spec spread, as in a file
        for key, value in changes.items():
            field = type(self).model_fields.get(key)
            data[(field.alias or key) if field is not None else key] = value
        return self.model_validate(data)

    @model_validator(mode="before")
    @classmethod
    def _gather_spec(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "spec" in data:
            return data
        common: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for k, v in data.items():
            (common if k in _COMMON_KEYS else rest)[k] = v
        kinds = [k for k in rest if kind_spec(k) is not None]
        if not kinds:
            names = ", ".join(sorted(all_kinds()))
            if rest:
                key = next(iter(rest))
                choices = list(COMMON_TASK_KEYS) + list(all_kinds())
                raise PydanticCustomError(
                    "unknown_key",
                    "unknown key '{key}'{hint}; a task needs one kind: {names}",
                    {"key": key, "hint": did_you_mean(key, choices), "names": names},
                )
            raise PydanticCustomError("no_kind", "a task needs exactly one kind key: one of {names}", {"names": names})
        if len(kinds) > 1:
            raise PydanticCustomError(
                "two_kinds",
                "two kinds in one task: {kinds}; a task has exactly one kind",
                {"kinds": " and ".join(kinds), "key": kinds[1]},
            )
        spec_cls = kind_spec(kinds[0])
        assert spec_cls is not None
        allowed = _keys_of(spec_cls)
        for key in rest:
            if key not in allowed:
                choices = list(COMMON_TASK_KEYS) + sorted(allowed)
                raise PydanticCustomError(
                    "unknown_key",
                    "unknown key '{key}' for a {kind} task{hint}",
                    {"key": key, "kind": spec_cls.kind, "hint": did_you_mean(key, choices)},
                )
        common["spec"] = spec_cls.model_validate(rest)
        return common

    @model_validator(mode="after")
    def _delay_under_its_cap(self) -> Self:
        _check_delay_cap(self.retry_delay, self.retry_delay_max)
        return self

    @field_validator("after")
    @classmethod
    def _after_names(cls, v: dict[str, Condition] | None) -> dict[str, Condition] | None:
        if v is not None:
            for key in v:
                if not _TASK_NAME.match(key):
                    raise ValueError(f"not a task name: {key!r}")
        return v

    @model_serializer(mode="wrap")
    def _spread_spec(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        spec = data.pop("spec", None)
        if isinstance(spec, dict):
            data.update(spec)
        return data

    @property
    def kind(self) -> str:
        return self.spec.kind


class Stage(_Frozen):
    name: TaskName
    description: str | None = None
    tasks: list[Task] = Field(min_length=1)


class FlushItem(_Frozen):
    """What auto flush refreshes: a table rebuilt from a SQL file, or a materialized view."""

    table: str | None = None
    sql_file: str | None = None
    materialized_view: str | None = None
    connection: str = "warehouse"

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.table is None) == (self.materialized_view is None):
            raise ValueError("a flush item names a `table:` (with `sql_file:`) or a `materialized_view:`")
        return self


class Preferences(_Frozen):
    log_level: LogLevel = "info"
    max_parallel: int = Field(default=8, ge=1, le=10000)
    retries: int = Field(default=0, ge=0, le=1000)
    retry_delay: Duration = 10.0
    retry_backoff: Backoff | None = None
    retry_delay_max: Duration | None = None
    timeout: Duration | None = None
    run_timeout: Duration | None = None
    python: str | None = None
    flush: list[str | FlushItem] = Field(
        default_factory=list,
        description="refreshed after a successful run: DuckDB tables from sql/NAME.sql, or materialized views",
    )

    @field_validator("python", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _delay_under_its_cap(self) -> Self:
        # only a retry_delay written beside the cap is checked: a cap under the default delay caps it
        if "retry_delay" in self.model_fields_set:
            _check_delay_cap(self.retry_delay, self.retry_delay_max)
        return self


class AfterWorkflows(_Frozen):
    workflows: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(min_length=1)
    status: Literal["succeeded", "failed", "completed"] = "succeeded"
    when: When = When.ALL


class Trigger(_Frozen):
    schedule: str | None = None
    timezone: str = "UTC"
    catch_up: bool = False
    max_active_runs: int = Field(default=1, ge=1)
    variables: dict[str, Any] = Field(default_factory=dict)
    after: AfterWorkflows | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        from flowstage.model.cron import cron_problem

        problem = None if v is None else cron_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _one_start(self) -> Self:
        if self.schedule is not None and self.after is not None:
            raise ValueError("a trigger has one start: `schedule` or `after`, not both")
        return self


#: what an alert may watch: of a task (its last attempt), and of the run (with no `task:`)
TASK_METRICS = ("runtime_seconds", "memory_mb", "cpu_seconds", "rows_read", "rows_written", "attempts")
RUN_METRICS = ("runtime_seconds",)
METRICS = TASK_METRICS
#: the final statuses an `on:` alert may name; `completed` is any of them
ALERT_ON = ("failed", "succeeded", "completed", "cancelled", "timed_out")


class Alert(_Frozen):
    """A rule that notifies: on a final status of the run (or of a `task:`), or on a metric."""

    on: str | None = None
    metric: str | None = None
    task: str | None = None
    op: Literal[">", ">=", "<", "<=", "==", "!="] | None = None
    value: float | None = None
    notify: list[str] = Field(min_length=1)
    #: at most one notification per period; the firings in between are counted into the next one
    every: Duration | None = None

    @field_validator("on")
    @classmethod
    def _known_status(cls, v: str | None) -> str | None:
        if v is not None and v not in ALERT_ON:
            raise ValueError(f"unknown status {v!r} for on:{did_you_mean(v, list(ALERT_ON))}; one of {', '.join(ALERT_ON)}")
        return v

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str | None) -> str | None:
        if v is not None and v not in TASK_METRICS:
            raise ValueError(f"unknown metric {v!r}{did_you_mean(v, list(TASK_METRICS))}; one of {', '.join(TASK_METRICS)}")
        return v

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if (self.on is None) == (self.metric is None):
            raise ValueError("an alert has either `on:` or `metric:` (with op and value)")
        if self.metric is not None and (self.op is None or self.value is None):
            raise ValueError("a metric alert needs `op:` and `value:`")
        if self.metric is None and (self.op is not None or self.value is not None):
            raise ValueError("`op:` and `value:` go with `metric:`")
        if self.metric is not None and self.task is None and self.metric not in RUN_METRICS:
            raise ValueError(f"metric {self.metric!r} is a task metric: name the `task:`")
        return self

    def as_written(self) -> dict[str, Any]:
        """The rule as the workflow file says it (what a notification carries)."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


def is_python_version(choice: str) -> bool:
    """Whether an `interpreter:` / `preferences.python` value is a version ("3.11"), not a path."""
    return bool(choice) and all(part.isdigit() for part in choice.split("."))


class Workflow(_Frozen):
    """A validated workflow definition."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=200)]
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    variables: dict[str, Any] = Field(default_factory=dict)
    preferences: Preferences = Field(default_factory=Preferences)
    trigger: Trigger | None = None
    alerts: list[Alert] = Field(default_factory=list)
    stages: list[Stage] | None = None
    tasks: list[Task] | None = None

    @model_validator(mode="after")
    def _stages_or_tasks(self) -> Self:
        if (self.stages is None) == (self.tasks is None):
            raise ValueError("a workflow has either `stages:` or `tasks:`, not both and not neither")
        if self.tasks is not None and not self.tasks:
            raise ValueError("`tasks:` is empty")
        if self.stages is not None and not self.stages:
            raise ValueError("`stages:` is empty")
        return self

    def all_tasks(self) -> list[tuple[int, Task]]:
        """Every task with its stage index (0 for a flat `tasks:` graph)."""
        if self.tasks is not None:
            return [(0, t) for t in self.tasks]
        return [(i, t) for i, s in enumerate(self.stages or []) for t in s.tasks]

    def default_python(self) -> str | None:
        """The interpreter of python tasks without `interpreter:` (SPEC §4); None: the runner's own.

        `preferences.python` when set; else the newest version the workflow's tasks ask for in
        their `interpreter:` ("3.12" over "3.11"; a path is no version and does not count).
        """
        if self.preferences.python:
            return self.preferences.python
        versions = {
            choice
            for _stage, task in self.all_tasks()
            if isinstance(choice := getattr(task.spec, "interpreter", None), str) and is_python_version(choice)
        }
        return max(versions, key=lambda v: tuple(int(part) for part in v.split(".")), default=None)

    def stage_names(self) -> list[str]:
        if self.stages is None:
            return ["main"]
        return [s.name for s in self.stages]

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping as written in a file (defaults left out)."""
        from flowstage.model.yamlsource import collector_paused

        with collector_paused():  # a mapping per task, none of them garbage (see `yamlsource`)
            return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

    def to_yaml(self) -> str:
        """The workflow as YAML that `load` reads back to an equal workflow."""
        from flowstage.model.yamlsource import dump

        return dump(self.to_dict())
