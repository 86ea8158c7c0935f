"""The synchronous-replication write benchmark (``python -m bench.sync``): throughput and latency
against concurrency, litecluster against dqlite, redis-server and plain SQLite."""
