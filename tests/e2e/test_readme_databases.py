"""The README's PostgreSQL and MariaDB commands, taken from the README itself and run on the real services.

The block under "The campaign runs on a SQLite file by default" is read from README.md: its
`FLOWSTAGE_CONN_SHOP` URLs (the export for PostgreSQL, the `# or` line for MariaDB) and its
`flowstage` commands, run word for word in a project `flowstage init` made. The database the README
calls `shop` is one made for this test alone (`shop_` and a random suffix, on the server at
FLOWSTAGE_TEST_POSTGRES_URL / FLOWSTAGE_TEST_MYSQL_URL), dropped afterwards, so parallel tests never
meet. Without the variable the test skips and says why; with CI=true it fails.
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, service_url

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
PYPROJECT = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8")


def database_block() -> list[str]:
    """The lines of the README's sh block that moves the campaign onto PostgreSQL or MariaDB."""
    section = README.split("The campaign runs on a SQLite file by default", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "the PostgreSQL/MariaDB paragraph has a sh block"
    return block.group(1).splitlines()


def readme_url(scheme: str) -> str:
    """The README's FLOWSTAGE_CONN_SHOP URL for a driver (`postgresql+psycopg`, `mysql+pymysql`)."""
    for line in database_block():
        m = re.search(rf"(?:FLOWSTAGE_CONN_SHOP=|# or )({re.escape(scheme)}://\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError(f"the README gives no {scheme}:// URL for the shop connection")


def readme_commands() -> list[list[str]]:
    """The `flowstage ...` commands of the block, in order (`a && b` is two)."""
    commands = []
    for line in database_block():
        words = shlex.split(line, comments=True)
        if words and words[0] == "flowstage":
            parts = " ".join(shlex.quote(w) for w in words).split(" '&&' ")
            commands += [shlex.split(part) for part in parts]
    return commands


def test_the_readme_names_extras_that_exist() -> None:
    extras = re.findall(r"'\.\[(\w+)\]'", "\n".join(database_block()))
    assert sorted(extras) == ["mysql", "postgres"], extras
    for extra in extras:
        assert re.search(rf"^{extra} = \[", PYPROJECT, re.MULTILINE), f"pyproject.toml has no [{extra}] extra"


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mysql", marks=pytest.mark.mysql)])
def shop_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The README's shop URL, pointed at a database of its own on the test service (made, then dropped)."""
    import sqlalchemy as sa

    service = service_url("FLOWSTAGE_TEST_POSTGRES_URL" if request.param == "postgres" else "FLOWSTAGE_TEST_MYSQL_URL")
    given = sa.engine.make_url(service)
    written = sa.engine.make_url(readme_url(given.drivername))
    assert written.database == "shop", written
    name = f"shop_{secrets.token_hex(6)}"
    quote = '"' if request.param == "postgres" else "`"
    admin: Any = sa.create_engine(service, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {quote}{name}{quote}"))  # the README's `createdb shop`
    except Exception as exc:
        pytest.fail(f"{request.param} at {given.render_as_string()} cannot make a database: {exc}")
    # the README's URL, with the test server's host, port and user, and this test's database
    url = written.set(
        host=given.host, port=given.port, username=given.username, password=given.password, database=name
    ).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if request.param == "postgres" else ""
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{force}"))
        admin.dispose()


def campaigns(url: str) -> list[tuple[int, int, str]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, published, status FROM campaigns ORDER BY id"))
            return [(int(r[0]), int(r[1]), str(r[2])) for r in rows]
    finally:
        engine.dispose()


def test_the_readme_campaign_runs_on_the_database_as_written(project: Project, tmp_path: Path, shop_url: str) -> None:
    commands = readme_commands()
    assert [c[:3] for c in commands] == [
        ["flowstage", "run", "shop_setup"],
        ["flowstage", "run", "campaign_launch"],
        ["flowstage", "run", "shop_setup"],
        ["flowstage", "run", "campaign_launch"],
    ], commands
    demo = tmp_path / "demo"
    made = subprocess.run([sys.executable, "-m", "flowstage", "init", str(demo)], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    env = project.env(FLOWSTAGE_CONN_SHOP=shop_url)
    seen = []
    for words in commands:
        proc = subprocess.run(
            [sys.executable, "-m", "flowstage", *words[1:]], cwd=demo, capture_output=True, text=True, timeout=300, env=env
        )
        assert "Traceback" not in proc.stderr, (words, proc.stderr)
        assert proc.returncode == 0, (words, proc.stdout, proc.stderr)
        if words[2] == "campaign_launch":
            seen.append(campaigns(shop_url))
    # the happy path publishes today's campaign; the recovery path (set up afresh) marks it failed
    assert seen == [[(1, 1, "published"), (2, 0, "planned")], [(1, 0, "failed"), (2, 0, "planned")]]
