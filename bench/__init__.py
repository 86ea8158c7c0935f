"""litecluster's benchmarks against their peers (Redis, dqlite, plain SQLite), run from the
repository root: ``python -m bench.suite`` (``litecluster bench``) runs them all, and each one
runs alone as ``python -m bench.NAME`` (engine, replication, sql, kv, sync, failover, bootstrap).

Each benchmark is a package: ``run.py`` (the command: presets, the runs, ``main``), ``report.py``
(its generated section of docs/BENCHMARKS.md) and the modules of its load. Code two benchmarks
share lives in :mod:`bench.common`.
"""
