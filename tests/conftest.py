"""Shared fixtures: real services by URL, a project in tmp_path, the CLI as a subprocess.

Service-backed tests read their URL from FLOWSTAGE_TEST_POSTGRES_URL / FLOWSTAGE_TEST_MYSQL_URL.
Without it they skip with the reason; with CI=true a missing service is a failure, never a skip.

The suite runs in parallel (`pytest -n auto`), so every test keeps to its own state: its folders
under tmp_path (`project`), its own PostgreSQL schema (`pg_schema_url`) or MariaDB database
(`mysql_db_url`), free ports chosen by the OS, and an environment and working directory that
are put back after it (`isolated_process_state`).
"""

from __future__ import annotations

import functools
import os
import secrets
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# the suite runs two test processes per core (see the Makefile): an example may wait for a core,
# so no property is timed; each still has its own count of examples
settings.register_profile("flowstage", deadline=None)
settings.load_profile("flowstage")
FLOWSTAGE = [sys.executable, "-m", "flowstage"]


def _warn_on_unclosed_sqlite() -> None:
    """Python 3.13 warns (ResourceWarning) when a sqlite3 connection is collected unclosed; before
    3.13 it closes it silently. Make every connection opened in a test process warn the same way,
    so a leaked connection fails the suite like a leaked file does."""
    if sys.version_info >= (3, 13):
        return

    class TrackedConnection(sqlite3.Connection):
        def close(self) -> None:
            self.__dict__["closed_by_owner"] = True
            super().close()

        def __del__(self) -> None:
            if not self.__dict__.get("closed_by_owner"):
                where = self.__dict__.get("opened", "?")
                warnings.warn(f"unclosed database {where}", ResourceWarning, stacklevel=1)

    connect = sqlite3.connect

    @functools.wraps(connect)
    def tracked_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", TrackedConnection)
        conn = connect(*args, **kwargs)
        import traceback

        caller = "".join(traceback.format_stack(limit=6)[:-1]).strip().replace("\n", " | ")
        test = os.environ.get("PYTEST_CURRENT_TEST", "outside a test")
        conn.__dict__["opened"] = f"{args[0] if args else kwargs.get('database')!s} opened in {test}: {caller}"
        return conn

    sqlite3.connect = tracked_connect


_warn_on_unclosed_sqlite()


def service_url(var: str) -> str:
    url = os.environ.get(var)
    if not url:
        if CI:
            pytest.fail(f"{var} is not set, and CI=true: service tests must run in CI")
        pytest.skip(f"{var} is not set (no database for this test)")
    return url


# set by pytest itself around each test phase
_PYTEST_OWN = frozenset({"PYTEST_CURRENT_TEST"})


@pytest.fixture(autouse=True)
def isolated_process_state() -> Iterator[None]:
    """No FLOWSTAGE_* setting of the shell reaches a test (the test service URLs aside), and the
    environment variables and working directory a test changes are put back after it."""
    environ = dict(os.environ)
    cwd = os.getcwd()
    for key in environ:
        if key.startswith("FLOWSTAGE_") and not key.startswith("FLOWSTAGE_TEST_"):
            del os.environ[key]
    yield
    os.chdir(cwd)
    for key in set(os.environ) - set(environ) - _PYTEST_OWN:
        del os.environ[key]
    for key, value in environ.items():
        if key not in _PYTEST_OWN and os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A SQLAlchemy URL of a real PostgreSQL database (FLOWSTAGE_TEST_POSTGRES_URL)."""
    url = service_url("FLOWSTAGE_TEST_POSTGRES_URL")
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        if CI:
            pytest.fail(f"PostgreSQL at FLOWSTAGE_TEST_POSTGRES_URL is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    return url


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test (its URL sets the search_path), dropped afterwards."""
    import sqlalchemy as sa

    schema = "t_" + secrets.token_hex(6)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """A SQLAlchemy URL of a real MariaDB/MySQL database (FLOWSTAGE_TEST_MYSQL_URL)."""
    return service_url("FLOWSTAGE_TEST_MYSQL_URL")


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Project:
    """A flowstage project in a temporary folder, driven through the real CLI."""

    root: Path

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSTAGE_") or k.startswith("FLOWSTAGE_TEST_")}
        env.update(extra)
        return env

    def cli(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [*FLOWSTAGE, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or self.env(),
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*FLOWSTAGE, *args],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or self.env(),
        )


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "flowstage.yaml").write_text("{}\n")
    return Project(root)


@pytest.fixture
def mysql_db_url(mysql_url: str) -> Iterator[str]:
    """A fresh MariaDB/MySQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = "t_" + secrets.token_hex(6)
    try:
        engine = sa.create_engine(mysql_url)
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
    except Exception as exc:
        if CI:
            pytest.fail(f"MariaDB at FLOWSTAGE_TEST_MYSQL_URL is unreachable: {exc}")
        pytest.skip(f"MariaDB unreachable: {exc}")
    url = sa.engine.make_url(mysql_url).set(database=name).render_as_string(hide_password=False)
    yield url
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    engine.dispose()
