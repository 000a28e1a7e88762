"""The compiler's dialects: the text one package compiles to for DuckDB and for Spark (no engine runs).

Spark has no ``SELECT * REPLACE``, ``UNION BY NAME``, ``SEMI JOIN`` or (before 4.1) ``QUALIFY``:
its dialect lists columns from `columns_of` instead. Both dialects write null ordering out.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from flowstage.data.compile import DUCKDB, SPARK, Dialect, compile_package, parameters, spark_expression
from flowstage.errors import DefinitionError
from flowstage.model.dataflow import package_from_data

COLUMNS = {
    "orders": ["order_id", "customer_id", "amount", "status"],
    "customers": ["customer_id", "name", "status"],
    "extra": ["order_id", "channel", "amount"],
}


def package(steps: list[dict[str, Any]], engine: str = "spark") -> Any:
    sources = {name: {"file": f"data/{name}.csv"} for name in COLUMNS}
    return package_from_data({"name": "p", "engine": engine, "sources": sources, "steps": steps}, "p.yaml")


def compiled_step(steps: list[dict[str, Any]], dialect: Dialect = SPARK) -> str:
    """The SQL of the last step; every relation before it has the columns of the first step's source."""
    pkg = package(steps, dialect.name)
    first = steps[0]["from"]
    q = dialect.ident

    def columns_of(query: str) -> list[str]:
        for name, cols in COLUMNS.items():
            if query.rstrip().endswith(f"FROM ({source_sql[name]}) AS {q('__source')}"):
                return cols
        return COLUMNS[first]

    source_sql = {name: f"SELECT * FROM {q('__src_' + name)}" for name in COLUMNS}
    compiled = compile_package(pkg, source_sql, columns_of, dialect=dialect)
    return compiled.ctes[-1][1]


def test_spark_quotes_identifiers_with_backticks() -> None:
    sql = compiled_step([{"from": "orders"}, {"select": ["order_id", "we`ird"]}])
    assert sql == "SELECT `order_id`, `we``ird` FROM `__step_1` AS `orders`"
    assert SPARK.qualified("s.t") == "`s`.`t`"


def test_derive_replaces_in_place_and_adds_at_the_end_with_an_explicit_column_list() -> None:
    steps = [{"from": "orders"}, {"derive": {"status": "upper(status)", "total": "amount * 2"}}]
    assert compiled_step(steps) == (
        "SELECT `order_id`, `customer_id`, `amount`, (upper(status)) AS `status`, (amount * 2) AS `total` FROM `__step_1` AS `orders`"
    )
    assert compiled_step(steps, DUCKDB) == (
        'SELECT * REPLACE ((upper(status)) AS "status"), (amount * 2) AS "total" FROM "__step_1" AS "orders"'
    )


def test_union_by_name_lists_every_column_in_first_seen_order_with_nulls_for_missing_ones() -> None:
    sql = compiled_step([{"from": "orders"}, {"union": {"with": "extra"}}])
    assert sql == (
        "SELECT `order_id`, `customer_id`, `amount`, `status`, NULL AS `channel` FROM `__step_1`"
        " UNION ALL SELECT `order_id`, NULL AS `customer_id`, `amount`, NULL AS `status`, `channel` FROM `extra`"
    )
    distinct = compiled_step([{"from": "orders"}, {"union": {"with": "extra", "all": False}}])
    assert " UNION SELECT " in distinct
    assert "UNION ALL" not in distinct
    assert compiled_step([{"from": "orders"}, {"union": {"with": "extra"}}], DUCKDB) == (
        'SELECT * FROM "__step_1" UNION ALL BY NAME SELECT * FROM "extra"'
    )


@pytest.mark.parametrize(
    ("how", "spark", "duckdb"), [("semi", "LEFT SEMI JOIN", "SEMI JOIN"), ("anti", "LEFT ANTI JOIN", "ANTI JOIN")]
)
def test_semi_and_anti_joins_are_left_semi_and_left_anti_on_spark(how: str, spark: str, duckdb: str) -> None:
    on = {"with": "customers", "on": "orders.customer_id = customers.customer_id", "how": how}
    assert compiled_step([{"from": "orders"}, {"join": on}]) == (
        f"SELECT * FROM `__step_1` AS `orders` {spark} `customers` AS `customers` ON (orders.customer_id = customers.customer_id)"
    )
    using = {"with": "customers", "using": ["customer_id"], "how": how}
    assert compiled_step([{"from": "orders"}, {"join": using}]) == (
        f"SELECT * FROM `__step_1` AS `orders` {spark} `customers` AS `customers` ON (`orders`.`customer_id` = `customers`.`customer_id`)"
    )
    assert f" {duckdb} " in compiled_step([{"from": "orders"}, {"join": using}], DUCKDB)


def test_a_using_join_keeps_duckdbs_columns_the_key_from_the_side_that_has_it() -> None:
    full = compiled_step([{"from": "orders"}, {"join": {"with": "customers", "using": ["customer_id"], "how": "full"}}])
    assert full == (
        "SELECT `orders`.`order_id`, COALESCE(`orders`.`customer_id`, `customers`.`customer_id`) AS `customer_id`,"
        " `orders`.`amount`, `orders`.`status`, `customers`.`name`, `customers`.`status` AS `status_1`"
        " FROM `__step_1` AS `orders` FULL OUTER JOIN `customers` AS `customers`"
        " ON (`orders`.`customer_id` = `customers`.`customer_id`)"
    )
    right = compiled_step([{"from": "orders"}, {"join": {"with": "customers", "using": ["customer_id"], "how": "right"}}])
    assert "`customers`.`customer_id` AS `customer_id`" in right


def test_an_on_join_prefixes_the_right_sides_repeated_names_in_both_dialects() -> None:
    join = {"with": "customers", "on": "orders.customer_id = customers.customer_id", "how": "left"}
    for dialect in (SPARK, DUCKDB):
        q = dialect.ident
        sql = compiled_step([{"from": "orders"}, {"join": join}], dialect)
        assert f"{q('customers')}.{q('customer_id')} AS {q('customers_customer_id')}" in sql
        assert f"{q('customers')}.{q('status')} AS {q('customers_status')}" in sql
        assert f"{q('customers')}.{q('name')}," in sql


def test_dedupe_by_keys_is_a_row_number_subquery_on_spark_and_qualify_on_duckdb() -> None:
    steps = [{"from": "orders"}, {"dedupe": ["customer_id", "status"]}]
    assert compiled_step(steps) == (
        "SELECT `order_id`, `customer_id`, `amount`, `status` FROM (SELECT *, row_number() OVER"
        " (PARTITION BY `customer_id`, `status` ORDER BY `customer_id`, `status`) AS `__flowstage_row`"
        " FROM `__step_1` AS `orders`) AS `__dedupe` WHERE `__flowstage_row` = 1"
    )
    assert compiled_step(steps, DUCKDB) == (
        'SELECT * FROM "__step_1" AS "orders" QUALIFY row_number() OVER (PARTITION BY "customer_id", "status") = 1'
    )
    assert compiled_step([{"from": "orders"}, {"dedupe": True}]) == "SELECT DISTINCT * FROM `__step_1` AS `orders`"


def test_sort_writes_null_ordering_out_in_both_dialects() -> None:
    steps = [
        {"from": "orders"},
        {"sort": ["status", "-amount", "order_id desc", "customer_id nulls first", "x DESC NULLS FIRST"]},
    ]
    order = "ORDER BY {0}status{0} ASC NULLS LAST, {0}amount{0} DESC NULLS LAST, {0}order_id{0} DESC NULLS LAST, "
    order += "{0}customer_id{0} ASC NULLS FIRST, {0}x{0} DESC NULLS FIRST"
    assert compiled_step(steps).endswith(order.format("`"))
    assert compiled_step(steps, DUCKDB).endswith(order.format('"'))


def test_the_sql_step_reads_the_previous_step_as_input() -> None:
    sql = compiled_step([{"from": "orders"}, {"sql": "SELECT status, avg(amount) AS mean FROM input GROUP BY status"}])
    assert (
        sql
        == "WITH input AS (SELECT * FROM `__step_1`)\nSELECT status, avg(CAST(amount AS DOUBLE)) AS mean FROM input GROUP BY status"
    )


def test_spark_averages_doubles_as_duckdb_does_and_spells_integer_division() -> None:
    assert spark_expression("avg(price)") == "avg(CAST(price AS DOUBLE))"
    assert (
        spark_expression("AVG( DISTINCT price ) FILTER (WHERE n > 1)")
        == "AVG(DISTINCT CAST(price AS DOUBLE)) FILTER (WHERE n > 1)"
    )
    assert spark_expression("mean(a * (b + 1)) / 2") == "mean(CAST(a * (b + 1) AS DOUBLE)) / 2"
    assert spark_expression("avg(avg(x)) OVER ()") == "avg(CAST(avg(CAST(x AS DOUBLE)) AS DOUBLE)) OVER ()"
    assert spark_expression("'avg(x) // y' || `avg` || t.avg(x)") == "'avg(x) // y' || `avg` || t.avg(x)"
    assert spark_expression("a // b") == "a  div  b"
    assert spark_expression("average(x) + avg_price") == "average(x) + avg_price"


def test_aggregate_metrics_and_filters_are_rewritten_for_spark_but_left_alone_for_duckdb() -> None:
    steps = [{"from": "orders"}, {"aggregate": {"by": ["status"], "metrics": {"mean": "avg(amount)", "n": "count(*)"}}}]
    assert compiled_step(steps) == (
        "SELECT `status`, (avg(CAST(amount AS DOUBLE))) AS `mean`, (count(*)) AS `n` FROM `__step_1` AS `orders` GROUP BY `status`"
    )
    assert '(avg(amount)) AS "mean"' in compiled_step(steps, DUCKDB)


def test_variables_are_spark_named_parameters_found_outside_strings_and_casts() -> None:
    text = "amount >= :min AND status = 'a :quoted' AND x::int = :n AND v:path = 1 AND `c:d` = :min -- :comment"
    assert parameters(text) == ["min", "n"]
    sql = compiled_step([{"from": "orders"}, {"filter": "amount >= :min"}])
    assert sql == "SELECT * FROM `__step_1` AS `orders` WHERE (amount >= :min)"


def test_spark_needs_the_columns_of_a_relation_to_spell_out_duckdbs_extensions() -> None:
    pkg = package([{"from": "orders"}, {"derive": {"x": "1"}}])
    with pytest.raises(ValueError, match="needs the columns"):
        compile_package(pkg, {n: "SELECT 1" for n in COLUMNS}, None, dialect=SPARK)


def test_the_whole_chain_is_one_query_in_the_dialect() -> None:
    pkg = package([{"from": "orders"}, {"filter": "amount > 0"}, {"limit": 3}])
    compiled = compile_package(pkg, {n: f"SELECT * FROM `__src_{n}`" for n in COLUMNS}, lambda _q: [], dialect=SPARK)
    sql = compiled.query()
    assert sql.startswith("WITH `orders` AS (\nSELECT * FROM `__src_orders`\n)")
    assert sql.endswith("SELECT * FROM `__step_3`")
    assert not re.search(r'"', sql)


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT * FROM input; DROP TABLE x", True),
        ("SELECT ';' AS a FROM input", False),
        ("SELECT 'it\\'s; fine' AS a FROM input", False),
        ("SELECT `odd;name` FROM input", False),
        ("SELECT 1 FROM input -- ; comment", False),
        ("SELECT * FROM input;", False),
    ],
)
def test_a_spark_sql_step_is_one_statement(sql: str, refused: bool) -> None:
    steps = [{"from": "orders"}, {"sql": sql}]
    if refused:
        with pytest.raises(DefinitionError, match="a sql step is one SELECT statement"):
            package(steps)
    else:
        package(steps)


def test_a_file_sink_upserts_by_keys_and_needs_them() -> None:
    sources = {"orders": {"file": "data/orders.csv"}}
    ok = {
        "name": "p",
        "sources": sources,
        "steps": [{"from": "orders"}],
        "sink": {"file": "o.parquet", "mode": "upsert", "keys": ["id"]},
    }
    assert package_from_data(ok, "p.yaml").sink is not None
    bad = {**ok, "sink": {"file": "o.parquet", "mode": "upsert"}}
    with pytest.raises(DefinitionError, match="upsert needs keys"):
        package_from_data(bad, "p.yaml")


@pytest.mark.parametrize(
    ("duck", "spark"),
    [
        ("BIGINT", "BIGINT"),
        ("INTEGER", "INT"),
        ("DOUBLE", "DOUBLE"),
        ("VARCHAR", "STRING"),
        ("DECIMAL(10,2)", "DECIMAL(10,2)"),
        ("DECIMAL(18, 3)", "DECIMAL(18,3)"),
        ("HUGEINT", "DECIMAL(38,0)"),
        ("UBIGINT", "DECIMAL(20,0)"),
        ("DATE", "DATE"),
        ("TIMESTAMP", "TIMESTAMP_NTZ"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP_LTZ"),
        ("STRUCT(a INTEGER)", None),
    ],
)
def test_duckdb_types_map_to_the_spark_types_that_hold_the_same_values(duck: str, spark: str | None) -> None:
    from flowstage.data.spark_files import spark_type

    assert spark_type(duck) == spark


def test_duckdb_date_formats_become_spark_patterns() -> None:
    from flowstage.data.spark_files import spark_pattern

    assert spark_pattern("%d/%m/%Y") == "dd/MM/yyyy"
    assert spark_pattern("%Y-%m-%dT%H:%M:%S.%f") == "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"
    assert spark_pattern("%-d %b %y") == "d MMM yy"
    with pytest.raises(DefinitionError, match="%Q has no Spark equivalent"):
        spark_pattern("%Q")
