"""Data: dataflow engines (DuckDB; Spark later behind the same interface), Arrow I/O with
databases, crawlers and the catalog."""
