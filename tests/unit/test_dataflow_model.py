"""Dataflow packages as pure data: validation with positions, and the compiled SQL text."""

from __future__ import annotations

import re

import pytest

from flowstage.data.compile import compile_package, ident, literal, qualified
from flowstage.errors import DefinitionError
from flowstage.model.dataflow import _separates_statements, package_from_data
from flowstage.model.yamlsource import parse


def package(steps: list[dict], **extra: object) -> dict:
    return {"name": "p", "sources": {"orders": {"file": "data/o.csv"}, "people": {"file": "p.parquet"}}, "steps": steps, **extra}


@pytest.mark.parametrize(
    ("sql", "separates"),
    [
        ("select ';' as x", False),
        ("select 1; drop table t", True),
        ("select 'it''s;' as x", False),
        ("select 1 -- a;b", False),
        ("select /* ; */ 1", False),
        ('select "a;b" from t', False),
        ("select 1 /* open", False),
    ],
)
def test_only_a_semicolon_outside_quotes_and_comments_separates_statements(sql: str, separates: bool) -> None:
    assert _separates_statements(sql) is separates


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"filter": "x > 1"}], "the first step must be `from: <source>`"),
        ([{"from": "order"}], "unknown source 'order' (did you mean 'orders'?)"),
        ([{"from": "orders"}, {"join": {"with": "peeple", "on": "a = b"}}], "unknown source 'peeple'"),
        ([{"from": "orders"}, {"sql": "SELECT 1; DROP TABLE x"}], "a sql step is one SELECT statement"),
    ],
)
def test_references_are_checked_with_their_position(steps: list[dict], message: str) -> None:
    import yaml

    text = yaml.safe_dump(package(steps), sort_keys=False)
    source = parse(text, "pk.yaml")
    with pytest.raises(DefinitionError) as caught:
        package_from_data(source.data, "pk.yaml", source)
    assert message in str(caught.value)
    assert str(caught.value).startswith("pk.yaml:")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (package([{"from": "orders"}, {"filtr": "x"}]), "unknown step 'filtr' (did you mean 'filter'?)"),
        (package([{"from": "orders"}], sink={"file": "o.parquet", "mode": "upsert"}), "upsert needs keys"),
        (package([{"from": "orders"}], sink={"table": "t", "mode": "upsert"}), "upsert needs keys"),
        (package([{"from": "orders"}], sink={"file": "o.csv", "mode": "append"}), "appending to files needs partition_by"),
        (package([{"from": "orders"}, {"join": {"with": "people"}}]), "a join needs `on:`"),
        ({"name": "p", "sources": {"x": {"file": "a.csv", "table": "t"}}, "steps": [{"from": "x"}]}, "exactly one of"),
        ({"name": "p", "sources": {"x": {"file": "data/noext"}}, "steps": [{"from": "x"}]}, "cannot tell the format"),
    ],
)
def test_malformed_packages_are_definition_errors(data: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=re.escape(message)) as caught:
        package_from_data(data, "pk.yaml")
    assert "Value error" not in str(caught.value)


def test_steps_compile_to_one_chain_of_ctes_with_quoted_columns() -> None:
    pkg = package_from_data(
        package(
            [
                {"from": "orders"},
                {"filter": "amount >= :min"},
                {"aggregate": {"by": ["country", 'we"ird'], "metrics": {"revenue": "sum(amount)"}}},
                {"sort": ["country", "-revenue", "x desc"]},
                {"limit": 5},
            ]
        ),
        "pk.yaml",
    )
    compiled = compile_package(pkg, {"orders": "SELECT 1", "people": "SELECT 2"})
    sql = compiled.query()
    assert sql.startswith('WITH "orders" AS (')
    assert 'GROUP BY "country", "we""ird"' in sql
    assert 'ORDER BY "country" ASC NULLS LAST, "revenue" DESC NULLS LAST, "x" DESC NULLS LAST' in sql
    assert sql.rstrip().endswith('SELECT * FROM "__step_5"')
    assert "WHERE (amount >= :min)" in sql  # the variable stays a parameter, bound at run time
    assert compiled.query(upto=0).rstrip().endswith('SELECT * FROM "__step_1"')


def test_identifiers_and_literals_are_quoted() -> None:
    assert ident('a"b') == '"a""b"'
    assert qualified("s.t") == '"s"."t"'
    assert literal("it's") == "'it''s'"
    assert literal([1, "a", None, True]) == "[1, 'a', NULL, true]"
