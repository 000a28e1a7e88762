"""A PySpark script: `main(spark, **with)` gets a SparkSession on the configured master."""


def main(spark, path):
    orders = spark.read.option("header", True).csv(f"{path}/*/*.csv")
    counts = {row["status"]: row["count"] for row in orders.groupBy("status").count().collect()}
    print(f"orders by status: {counts}")
    return counts
