"""Fuzzing dataflow packages: mutated packages validate or fail located; valid ones always compile.

From a few valid packages (every step kind, file and table sinks), each example drops, renames or
replaces keys and values, then validates the package (`package_from_data`, as an inline package
or a file would be). A package that validates must compile in both dialects (DuckDB, and Spark
with the column lists it needs), and binding its `:name` variables either gives the parameters or
a `DefinitionError` naming the missing variable. Hostile expressions (`1); DROP TABLE victim; --`)
are then parsed by DuckDB — never run — and must compile to one SELECT or be refused with a clear
error. No example touches a file or a database.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowstage.data.compile import DUCKDB, SPARK, compile_package
from flowstage.data.engine import _bind, _one_select
from flowstage.errors import DefinitionError, FlowstageError
from flowstage.model.dataflow import Package, package_from_data
from tests.fuzz.budget import budget

BASES: list[dict[str, Any]] = [
    {
        "name": "orders_daily",
        "variables": {"min_amount": 0, "status": "paid"},
        "sources": {"orders": {"file": "data/orders/*.csv"}, "customers": {"table": "public.customers", "connection": "shop"}},
        "steps": [
            {"from": "orders"},
            {"filter": "status = :status AND amount >= :min_amount"},
            {"join": {"with": "customers", "on": "orders.customer_id = customers.id", "how": "left"}},
            {"derive": {"month": "date_trunc('month', ts)", "amount": "amount * 2"}},
            {"aggregate": {"by": ["country", "month"], "metrics": {"revenue": "sum(amount)", "orders": "count(*)"}}},
            {"sql": "SELECT * FROM input WHERE revenue > 0"},
            {"select": ["country", "month", "revenue", "orders"]},
            {"sort": ["country", "month DESC"]},
            {"limit": 10},
        ],
        "sink": {"file": "out/orders_daily.parquet", "mode": "overwrite"},
    },
    {
        "name": "merge",
        "sources": {"a": {"file": "a.parquet"}, "b": {"file": "b.json"}, "c": {"catalog": "raw.c"}},
        "steps": [
            {"from": "a"},
            {"union": {"with": ["b", "c"], "all": False}},
            {"dedupe": ["id"]},
            {"select": {"id": "id", "twice": "id * 2"}},
        ],
        "sink": {"table": "main.merged", "mode": "upsert", "keys": ["id"]},
    },
]

KEYS = ["name", "variables", "engine", "sources", "steps", "sink", "from", "filter", "select", "derive", "join", "aggregate",
        "union", "dedupe", "sort", "limit", "sql", "with", "on", "how", "by", "metrics", "file", "table", "mode", "keys",
        "connection", "format", "partition_by", "catalog", "all", "using"]  # fmt: skip
HOSTILE = [
    "1); DROP TABLE victim; --",
    "1) UNION SELECT * FROM duckdb_settings() --",
    "x = ';'",
    "amount > :min_amount; COPY victim TO '/tmp/pwned'",
    "/* ; */ 1 = 1",
    "-- ;\n1 = 1",
    "'", '"', ")", "(", "$$", ":missing", "::int", "1 = 1) ; ATTACH 'pwned.db' AS p; SELECT (1",
]  # fmt: skip

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats() | st.text(max_size=20)
    | st.sampled_from(KEYS) | st.sampled_from(HOSTILE)
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for k, v in items:
        found.append((*path, k))
        found.extend(_paths(v, (*path, k)))
    return found


@st.composite
def mutated_packages(draw: st.DrawFn) -> Any:
    data: Any = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["drop", "rename", "replace", "hostile"]))
        if op == "drop":
            del parent[path[-1]]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS) | st.text(max_size=6))] = parent.pop(path[-1])
        elif op == "hostile":
            parent[path[-1]] = draw(st.sampled_from(HOSTILE))
        else:
            parent[path[-1]] = draw(values)
    return data


def _columns_of(query: str) -> list[str]:
    return ["id", "amount", "status", "country", "month", "revenue", "orders", "ts", "customer_id"]


def _compile_both(package: Package) -> str:
    sources = {name: f"SELECT * FROM read_parquet('{name}.parquet')" for name in package.sources}
    compiled = compile_package(package, sources, dialect=DUCKDB, columns_of=_columns_of)
    compile_package(package, sources, dialect=SPARK, columns_of=_columns_of)
    return compiled.query()


def test_every_base_package_is_valid_and_compiles_to_one_select() -> None:
    for base in BASES:
        package = package_from_data(base, "p.yaml")
        text, _ = _bind(_compile_both(package), dict(base.get("variables", {})))
        _one_select(text)


@pytest.mark.parametrize("kind", ["from", "filter", "select", "sort", "sql", "dedupe"])
def test_a_step_whose_kind_has_no_value_is_a_located_problem(kind: str) -> None:
    # `- filter:` with nothing after it once validated, then failed the run with an internal error
    data = copy.deepcopy(BASES[0])
    data["steps"] = [{"from": "orders"}, {kind: None}]
    with pytest.raises(DefinitionError, match=rf"p.yaml: steps.1: `{kind}:` needs a value"):
        package_from_data(data, "p.yaml")
    data["steps"] = [{kind: None}]
    with pytest.raises(DefinitionError, match=rf"`{kind}:` needs a value"):
        package_from_data(data, "p.yaml")


@budget(400)
@given(data=mutated_packages(), variables=st.dictionaries(st.sampled_from(["min_amount", "status", "x"]), scalars, max_size=3))
def test_mutated_packages_validate_or_fail_located_and_valid_ones_compile(data: Any, variables: dict[str, Any]) -> None:
    try:
        package = package_from_data(data, "p.yaml")
    except DefinitionError as exc:
        invalid: DefinitionError = exc
    else:
        query = _compile_both(package)
        try:
            _bind(query, {**package.variables, **variables})
        except DefinitionError as exc:
            unbound: DefinitionError = exc
            assert "is not a variable" in str(unbound), str(unbound)
        return
    assert invalid.problems
    for problem in invalid.problems:
        assert str(problem).startswith("p.yaml"), str(problem)


@budget(120)
@given(expr=st.sampled_from(HOSTILE) | st.lists(st.sampled_from([*HOSTILE, "1", "=", " ", ";", "'", "--", "\n", "*/", "/*"]), max_size=6).map("".join),
       where=st.sampled_from(["filter", "derive", "metric", "select", "sql", "join"]))  # fmt: skip
def test_hostile_expressions_compile_to_one_select_or_are_refused(expr: str, where: str) -> None:
    data: dict[str, Any] = copy.deepcopy(BASES[0])
    data["steps"] = [{"from": "orders"}]
    if where == "filter":
        data["steps"].append({"filter": expr})
    elif where == "derive":
        data["steps"].append({"derive": {"d": expr}})
    elif where == "metric":
        data["steps"].append({"aggregate": {"by": [], "metrics": {"m": expr}}})
    elif where == "select":
        data["steps"].append({"select": {"s": expr}})
    elif where == "join":
        data["steps"].append({"join": {"with": "customers", "on": expr}})
    else:
        data["steps"].append({"sql": f"SELECT * FROM input WHERE {expr}"})
    try:
        package = package_from_data(data, "p.yaml")
        text, _ = _bind(_compile_both(package), {"min_amount": 1, "status": "x", "missing": None})
        _one_select(text)  # DuckDB's parser only: nothing is run
    except FlowstageError as exc:
        refused: FlowstageError = exc
        message = str(refused).strip()
        assert message
        assert "\n" not in message or isinstance(refused, DefinitionError), message
