"""A PostgreSQL password with characters a URL must percent-encode, on the dataflow path (ADBC).

The role's password is ``p@ss word``, so its URL reads ``user:p%40ss%20word@``. Dataflow sinks
and sources move rows through ADBC, which takes libpq parameters: the URL must be decoded once
and the password handed over as a parameter, never re-encoded into a URI (where libpq refused it
with ``unexpected spaces found in "p%40ss word"`` and echoed it in the error).

The test server trusts connections from 127.0.0.1 and so accepts any password: these tests show
that the URL is parsed right (the run connects as the role, and `libpq_conninfo` gives the
password back exactly) and that the password, plain, percent-encoded or decoded, appears nowhere
a failing run writes: `run --json`, `show`, `logs` and the bytes of the run store.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from tests.conftest import Project
from tests.integration.test_secrets import assert_hidden, store_bytes
from tests.records import record_of, tasks_of

PASSWORD = "p@ss word"
FORMS = ["p@ss word", "p%40ss%20word", "p%40ss word", "p@ss%20word", "p%40ss+word"]


@dataclass
class Role:
    name: str
    schema: str
    admin_url: str

    def url(self, database: str | None = None) -> str:
        base = sa.engine.make_url(self.admin_url)
        host = f"{base.host or '127.0.0.1'}:{base.port or 5432}"
        return (
            f"postgresql+psycopg://{self.name}:p%40ss%20word@{host}/{database or base.database}"
            f"?options=-csearch_path%3D{self.schema}"
        )

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        engine = sa.create_engine(self.admin_url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(sql))]
        finally:
            engine.dispose()


@pytest.fixture
def role(postgres_url: str) -> Iterator[Role]:
    """A login role whose password is ``p@ss word``, owning a fresh schema; both dropped afterwards."""
    name = "fs_" + secrets.token_hex(5)
    schema = "t_" + secrets.token_hex(6)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {name} LOGIN PASSWORD 'p@ss word'"))
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}" AUTHORIZATION {name}'))
        conn.execute(sa.text(f'CREATE TABLE "{schema}".customers (id INT PRIMARY KEY, country TEXT)'))
        conn.execute(sa.text(f"INSERT INTO \"{schema}\".customers VALUES (1, 'DE'), (2, 'FR'), (3, 'DE')"))
        conn.execute(sa.text(f'ALTER TABLE "{schema}".customers OWNER TO {name}'))
    yield Role(name, schema, postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        conn.execute(sa.text(f"DROP ROLE {name}"))
    engine.dispose()


WORKFLOW = """
name: copy
tasks:
  - name: copy
    dataflow:
      name: copy
      sources: {customers: {table: customers, connection: db}}
      steps:
        - from: customers
        - aggregate: {by: [country], metrics: {n: count(*)}}
      sink: {table: by_country, connection: db, mode: overwrite}
  - name: whoami
    after: [copy]
    sql: SELECT current_user AS who, (SELECT count(*) FROM by_country) AS n
    connection: db
    save: {who: who, n: n}
"""


@pytest.mark.postgres
@pytest.mark.parametrize("configured_in", ["env", "flowstage.yaml"])
def test_a_dataflow_connects_with_a_percent_encoded_password(project: Project, role: Role, configured_in: str) -> None:
    project.write("workflows/copy.yaml", WORKFLOW)
    if configured_in == "env":
        env = project.env(FLOWSTAGE_CONN_DB=role.url())
    else:
        project.write("flowstage.yaml", f"connections:\n  db: '{role.url()}'\n")
        env = project.env()

    result = project.cli("run", "copy", "--json", env=env)

    record = record_of(result)
    assert result.code == 0, [(t["name"], t["error"]) for t in record["tasks"]]
    assert record["variables"]["who"] == role.name
    assert record["variables"]["n"] == 2
    owner = role.rows(f"SELECT tableowner FROM pg_tables WHERE schemaname = '{role.schema}' AND tablename = 'by_country'")
    assert owner == [(role.name,)]  # the sink connected as the role, through the decoded password
    assert sorted(role.rows(f'SELECT country, n FROM "{role.schema}".by_country')) == [("DE", 2), ("FR", 1)]
    assert_hidden(FORMS, "run --json", result.out + result.err)


@pytest.mark.postgres
def test_a_failing_dataflow_shows_the_password_nowhere(project: Project, role: Role) -> None:
    project.write("workflows/copy.yaml", WORKFLOW)
    env = project.env(FLOWSTAGE_CONN_DB=role.url("nonexistent_db_" + secrets.token_hex(3)))

    as_json = project.cli("run", "copy", "--json", env=env)

    assert as_json.code == 1, as_json
    record = record_of(as_json)
    error = tasks_of(record)["copy"]["error"]
    assert "does not exist" in error
    assert "unexpected spaces" not in error
    outputs = {"run --json": as_json.out + as_json.err}
    for args in (
        ("show", record["id"]),
        ("show", record["id"], "--json"),
        ("logs", record["id"]),
        ("logs", record["id"], "--json"),
    ):
        shown = project.cli(*args, env=env)
        assert shown.code == 0, shown
        outputs[" ".join(args)] = shown.out + shown.err
    for where, text in outputs.items():
        assert_hidden(FORMS, where, text)
    for name, data in store_bytes(project).items():
        assert_hidden(FORMS, name, data)


def test_libpq_parameters_carry_the_password_decoded_once() -> None:
    from psycopg.conninfo import conninfo_to_dict

    from flowstage.data.arrow_io import libpq_conninfo

    url = "postgresql+psycopg://app:p%40ss%20wo%27r%5Cd%25@db.example.com:6432/shop?options=-csearch_path%3Ds&sslmode=prefer"

    assert conninfo_to_dict(libpq_conninfo(url)) == {
        "host": "db.example.com",
        "port": "6432",
        "dbname": "shop",
        "user": "app",
        "password": "p@ss wo'r\\d%",
        "options": "-csearch_path=s",
        "sslmode": "prefer",
    }
