"""The key/value benchmark (``python -m bench.kv``): redis-benchmark, in-process reads and
durable replicated writes against redis-server."""
