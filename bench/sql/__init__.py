"""The SQL benchmark (``python -m bench.sql``): point reads on every path against redis and
dqlite, and HTTP write throughput against plain SQLite."""
