"""``dataflow:`` tasks: run a package (a file in packages/ or inline) on its engine.

Variables, highest first: the task's `variables:`, the package's own `variables:`, the run scope;
the outcome says what was bound, so the task's recorded variables are those the package ran with.
Metrics: rows read (in all and per source), rows written, bytes written, seconds. A DuckDB
dataflow holds the warehouse file while it runs; while another process holds it, the attempt waits
its turn (told as its reason) until its deadline.
"""

from __future__ import annotations

from pathlib import Path

from flowstage.connections import LockTimeout
from flowstage.data.engine import DataflowRequest, engine_for
from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import FlowstageError
from flowstage.logging import INFO
from flowstage.model.dataflow import Package, load_package
from flowstage.model.kinds.dataflow import DataflowSpec
from flowstage.model.statuses import TaskStatus
from flowstage.tasks import TaskContext
from flowstage.tasks.sql import lock_wait


def package_of(spec: DataflowSpec, root: Path) -> tuple[Package, str | None]:
    if isinstance(spec.dataflow, Package):
        return spec.dataflow, None
    path = Path(spec.dataflow)
    path = path if path.is_absolute() else root / path
    return load_package(path), str(path)


def run(job: AttemptSpec, ctx: TaskContext) -> Outcome:
    spec = job.spec
    assert isinstance(spec, DataflowSpec)
    root = Path(job.root)
    package, file = package_of(spec, root)
    variables = {**job.variables, **package.variables, **job.task_variables}
    request = DataflowRequest(
        package=package,
        variables=variables,
        root=root,
        connections=ctx.resources.connections,
        catalog=ctx.resources.catalog,
        log=lambda message: ctx.log(INFO, message),
        package_file=file,
        wait=lock_wait(job, ctx),
        spark=ctx.resources.spark,
    )
    # the record shows what was bound (the package's own variables over the run scope), failed or not
    try:
        result = engine_for(package.engine).run(request, ctx.handle.on_kill)
    except LockTimeout as exc:
        return Outcome(TaskStatus.TIMED_OUT, error=str(exc), resolved=variables)
    except FlowstageError as exc:
        return Outcome(TaskStatus.FAILED, error=str(exc), resolved=variables)
    m = result.metrics
    ctx.log(
        INFO,
        f"dataflow {package.name}: read {m.get('rows_read', 0)} rows, wrote {result.rows_written} rows"
        + (f" ({m['bytes_written']} bytes)" if "bytes_written" in m else "")
        + f" in {m.get('seconds', 0):.3f}s",
    )
    return Outcome(TaskStatus.SUCCEEDED, value=result.rows_written, metrics=m, resolved=variables)
