"""Generates the example's order files: hive-partitioned CSV by region, deterministic."""

import csv
import os
import random


def orders(rows: int = 20000, seed: int = 7, out: str = "data/generated/orders") -> int:
    rng = random.Random(seed)
    regions = {"EU": ["FR", "DE", "ES"], "US": ["US"], "APAC": ["JP", "AU"]}
    writers = {}
    files = []
    for region in regions:
        folder = os.path.join(out, f"region={region}")
        os.makedirs(folder, exist_ok=True)
        fh = open(os.path.join(folder, "orders.csv"), "w", newline="")
        files.append(fh)
        w = csv.writer(fh)
        w.writerow(["order_id", "customer_id", "country", "amount", "status", "ordered_at"])
        writers[region] = w
    for i in range(rows):
        region = rng.choice(list(regions))
        amount = "NA" if rng.random() < 0.02 else f"{rng.uniform(5, 500):.2f}"
        status = rng.choices(["paid", "refunded", "pending"], [0.85, 0.05, 0.10])[0]
        day = 1 + i % 28
        writers[region].writerow([i + 1, rng.randint(1, 2000), rng.choice(regions[region]), amount, status, f"2026-10-{day:02d}"])
    for fh in files:
        fh.close()
    print(f"wrote {rows} orders under {out}")
    return rows
