"""Example python tasks: small ETL steps over the CSV files in data/."""

import csv
import json
import os
from collections import defaultdict


def extract(region: str, path: str = "data/orders.csv") -> int:
    """Copy the region's orders to out/orders_<region>.json; returns the row count."""
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["region"] == region]
    os.makedirs("out", exist_ok=True)
    with open(f"out/orders_{region}.json", "w") as fh:
        json.dump(rows, fh)
    print(f"extracted {len(rows)} orders for {region}")
    return len(rows)


def aggregate(regions: list) -> dict:
    """Revenue per region from the extracted files."""
    totals = defaultdict(float)
    for region in regions:
        with open(f"out/orders_{region}.json") as fh:
            for row in json.load(fh):
                totals[region] += float(row["amount"])
    with open("out/revenue.json", "w") as fh:
        json.dump(totals, fh, indent=2)
    best = max(totals, key=totals.get)
    print(f"revenue: {dict(totals)}")
    return {"best_region": best, "total": round(sum(totals.values()), 2)}


def load_partner_feed(url: str) -> None:
    """Always fails here: the partner feed is not reachable from this demo."""
    raise ConnectionError(f"partner feed {url} is not reachable")
