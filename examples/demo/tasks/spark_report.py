"""Reads what the Spark dataflow wrote, beside the PySpark script's counts."""

import duckdb


def check(path, statuses):
    con = duckdb.connect()
    rows, orders = con.execute(f"SELECT count(*), sum(orders) FROM read_parquet('{path}')").fetchone()
    con.close()
    if not rows:
        raise ValueError(f"{path} is empty")
    if orders > statuses["paid"]:
        raise ValueError(f"{orders} paid orders aggregated, but only {statuses['paid']} are paid")
    return {"rows": rows, "orders": int(orders)}
