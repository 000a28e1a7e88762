"""``crawl:`` tasks: infer schemas of files or tables into the catalog.

A crawl that finds added, removed or retyped columns records a new schema version; the change is
in the task's result (`save:` keeps it) and in the logs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flowstage.data.crawler import crawl_files, crawl_tables
from flowstage.engine.ports import AttemptSpec, Outcome
from flowstage.errors import RunError
from flowstage.logging import INFO, NOTICE
from flowstage.model.kinds.crawl import CrawlSpec
from flowstage.model.statuses import TaskStatus
from flowstage.stores.catalog import describe_change
from flowstage.tasks import TaskContext
from flowstage.tasks.sql import lock_wait


def run(job: AttemptSpec, ctx: TaskContext) -> Outcome:
    spec = job.spec
    assert isinstance(spec, CrawlSpec)
    target = spec.crawl
    catalog = ctx.resources.catalog
    if catalog is None:
        raise RunError("crawlers need the run store's catalog")
    if target.path is not None:
        assert target.table is not None
        found = [
            crawl_files(
                target.table,
                target.path,
                Path(job.root),
                fmt=target.format,
                options=target.options,
                sample_size=target.sample_size,
            )
        ]
    else:
        assert target.connection is not None
        found = crawl_tables(ctx.resources.connections, target.connection, target.tables, target.table, lock_wait(job, ctx))
        if not found:
            raise RunError(f"crawl {target.connection}: no table matches {', '.join(target.tables)}")
    tables: list[dict[str, Any]] = []
    changed = 0
    for entry in found:
        version, change = catalog.record(entry, at=time.time(), run_id=job.run_id)
        item: dict[str, Any] = {"table": entry.name, "version": version, "columns": len(entry.columns), "change": change}
        tables.append(item)
        if change is not None:
            changed += 1
            ctx.log(NOTICE, f"catalog {entry.name}: schema version {version}: {describe_change(change)}")
        else:
            ctx.log(INFO, f"catalog {entry.name}: no schema change (version {version})")
    return Outcome(TaskStatus.SUCCEEDED, value={"tables": tables}, metrics={"tables": len(tables), "schema_changes": changed})
