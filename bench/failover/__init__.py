"""The failover benchmark (``python -m bench.failover``): kill -9 of the primary to the first
acknowledged write, against dqlite under the same kill."""
