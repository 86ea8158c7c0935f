"""The scenarios of ``litecluster bench`` (``python -m bench.suite``): which benchmark module
each one runs, with which arguments in each mode, what it needs installed, and what happened to
it in a run. Shared by the runner (``bench.suite.run``) and the summary (``bench.suite.report``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Scenario:
    name: str
    module: str
    """The benchmark's module, run as ``python -m MODULE`` from the repository root."""
    marker: str
    """The script's report markers are ``<!-- bench:MARKER:start -->`` and ``...:end -->``."""
    covers: str
    """What of the issue's scenarios it measures (for the summary)."""
    args: dict[str, list[str]]
    """The script's arguments in each mode (``--out`` and ``--json`` are added)."""
    needs: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    """Programs of peers whose absence only removes their rows."""
    json: bool = False
    timeout_s: dict[str, float] = field(
        default_factory=lambda: {"smoke": 240.0, "quick": 240.0, "full": 1200.0}
    )


SCENARIOS = [
    Scenario(
        "kv", "bench.kv", "kv",
        "redis-benchmark GET/SET/INCR/LPUSH/HSET against a node and redis-server; in-process "
        "`kv.get` against redis-py GET; durable replicated SETs against redis-server with "
        "`appendfsync always`, a replica and `WAIT 1 0`",
        {"smoke": ["--smoke"], "quick": ["--quick", "--repeats", "1"], "full": ["--repeats", "2"]},
        needs=("redis-server", "redis-benchmark"), json=True,
    ),
    Scenario(
        "sql", "bench.sql", "sql",
        "point reads: embedded replica (SQL), its raw SQLite connection and the stdlib `sqlite3` "
        "module (the floor), redis-py GET, HTTP to a node and to dqlite-demo; HTTP write "
        "throughput (32 clients) against plain SQLite (1 and 32 threads)",
        {"smoke": ["--smoke", "--no-dqlite"], "quick": ["--smoke"], "full": ["--repeats", "2"]},
        needs=("redis-server",), optional=("dqlite-demo",),
    ),
    Scenario(
        "replication", "bench.replication", "replication",
        "replication lag distribution at 1,000 and 5,000 writes/s with 2 and 10 replicas; "
        "maximum write rate with 0, 1 and 10 replicas; bytes shipped; replica CPU",
        {"smoke": ["--smoke"], "quick": ["--smoke"], "full": ["--repeats", "2"]},
        json=True,
    ),
    Scenario(
        "bootstrap", "bench.bootstrap", "bootstrap",
        "snapshot install (MB/s) of a new replica node and a new embedded replica, catch-up "
        "from the log, and RSS of a node and an embedded replica, at 100 MB and 1 GB",
        {"smoke": ["--smoke"], "quick": ["--quick"], "full": []},
        json=True,
    ),
    Scenario(
        "sync", "bench.sync", "sync",
        "write throughput and latency against concurrency (1, 8, 32, 128 clients): litecluster "
        "asynchronous, `--sync-replicas` 1 and 2; dqlite 3-node; redis-server without "
        "persistence, AOF everysec, AOF always + replica + `WAIT 1 0`; plain SQLite, one "
        "transaction per write",
        {"smoke": ["--smoke", "--clients", "4", "--no-dqlite"],
         "quick": ["--smoke", "--clients", "1,8,32,128", "--seconds", "0.3"],
         "full": ["--repeats", "2", "--seconds", "2", "--clients", "1,8,32,128"]},
        needs=("etcd",), optional=("dqlite-demo", "redis-server"), json=True,
    ),
    Scenario(
        "failover", "bench.failover", "failover",
        "failover time (kill -9 of the primary to the first acknowledged write), 20 runs per "
        "lease TTL, and dqlite's 3-node cluster under the same kill of its leader (20 runs)",
        {"smoke": ["--smoke", "--no-dqlite"], "quick": ["--smoke", "--runs", "2"], "full": []},
        needs=("etcd",), optional=("dqlite-demo",), json=True,
    ),
    Scenario(
        "engine", "bench.engine", "engine",
        "engine: small replicated transactions against plain SQLite; snapshot create/install "
        "and catch-up MB/s (full: 1 GB; quick: 100 MB); memory of those steps",
        {"smoke": ["--smoke"],
         "quick": ["--smoke", "--size-mb", "100", "--txns", "2000", "--behind", "5000",
                   "--no-profile"],
         "full": ["--repeats", "2"]},
    ),
]  # fmt: skip


@dataclass
class Outcome:
    """What happened to one scenario in this run."""

    name: str
    status: str
    """``ran``, ``failed``, ``skipped`` or ``not run``."""
    detail: str = ""
    command: str = ""
    seconds: float = 0.0
    json_path: Path | None = None
