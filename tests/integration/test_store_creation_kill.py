"""A SQLite run store is created whole or not at all, whenever its creator is killed.

A child process creates the store and SIGKILLs itself right after the Nth table is made (a
SQLAlchemy listener, no timing involved). The next command must find a working store, and no
temporary file of the killed creation may stay behind. A store an earlier version left half made
(tables, no revision, no runs) is made again; a database holding anything else is never replaced.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Project

CREATOR = textwrap.dedent(
    """
    import os, signal, sys
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    made = 0

    @event.listens_for(Engine, "after_cursor_execute")
    def _kill_after_table(conn, cursor, statement, *args):
        global made
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            made += 1
            if made >= int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    from flowstage.stores.sql.store import SqlRunStore

    SqlRunStore(sys.argv[1])
    """
)


def _store_files(project: Project) -> list[str]:
    return sorted(p.name for p in (project.root / ".flowstage").iterdir() if p.name.startswith("flowstage.db"))


def _assert_store_works(project: Project) -> None:
    project.write("workflows/wf.yaml", "name: wf\ntasks:\n  - name: a\n    shell: echo hi\n")
    listed = project.cli("runs")
    assert listed.code == 0, listed
    assert project.cli("run", "wf").code == 0
    assert "wf" in project.cli("runs").out


@pytest.mark.parametrize("tables", [1, 2, 6])
def test_a_store_whose_creator_is_killed_is_created_by_the_next_command(project: Project, tables: int) -> None:
    db = project.root / ".flowstage" / "flowstage.db"
    child = subprocess.run(
        [sys.executable, "-c", CREATOR, f"sqlite:///{db}", str(tables)], capture_output=True, text=True, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert not db.exists()  # the half-made store was never where a command looks for it

    _assert_store_works(project)

    assert _store_files(project) == ["flowstage.db", "flowstage.db.migrate.lock"]


@pytest.mark.parametrize("leftover", ["empty file", "empty tables"])
def test_a_store_left_half_made_by_an_earlier_version_is_made_again(project: Project, leftover: str) -> None:
    db = project.root / ".flowstage" / "flowstage.db"
    db.parent.mkdir()
    db.touch()
    if leftover == "empty tables":
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY)")
        conn.close()

    _assert_store_works(project)


def test_a_database_holding_other_tables_is_never_replaced(project: Project) -> None:
    db = project.root / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
        conn.execute("INSERT INTO customers VALUES ('kept')")
    conn.close()

    project.cli("runs", env=project.env(FLOWSTAGE_STORE=f"sqlite:///{db}"))

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM customers").fetchall() == [("kept",)]
    conn.close()


def test_a_store_dropped_without_close_closes_its_connections(tmp_path: Path) -> None:
    import gc

    from flowstage.stores.sql.store import SqlRunStore

    db = tmp_path / "flowstage.db"
    store = SqlRunStore(f"sqlite:///{db}")
    store.list_runs()  # a connection of this thread, in WAL mode
    assert (tmp_path / "flowstage.db-wal").exists()
    del store
    gc.collect()
    # the last connection closed: the WAL is checkpointed into the database and removed
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("flowstage.db")) == [
        "flowstage.db",
        "flowstage.db.migrate.lock",
    ]
