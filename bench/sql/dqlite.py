"""The point-read peers of the SQL benchmark that are not litecluster nor redis: a 3-node
``dqlite-demo`` cluster read over HTTP, and the stdlib ``sqlite3`` module in-process.

* dqlite: the same keys and values are inserted into dqlite-demo's table
  ``model(key, value)`` through the ``dqlite`` shell (multi-row ``INSERT`` statements, one
  Raft round each), then every lookup is ``GET /KEY`` on the Raft leader's HTTP API, which runs
  ``SELECT value FROM model WHERE key = ?`` through the dqlite driver (reads go to the leader).
  The client is the same minimal blocking HTTP/1.1 client as the litecluster ``http_get_raw``
  path.
* stdlib ``sqlite3``: a read-only connection of Python's own ``sqlite3`` module (Debian's
  SQLite) to the embedded replica's file, running the same ``SELECT`` as the litecluster
  client: the in-process floor with the SQLite most Python programs use.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common.cluster import DqliteCluster
from bench.common.reads import POINT_SQL, RawHttp, ReadPaths, _timed_lookup, _timed_raw

INSERT_BATCH = 500


def load_dqlite(dq: DqliteCluster, rows: list[tuple[str, str]]) -> None:
    """Insert ``rows`` into dqlite-demo's table, ``INSERT_BATCH`` rows a statement (keys and
    values are letters and digits: inlined safely)."""
    for i in range(0, len(rows), INSERT_BATCH):
        values = ",".join(f"('{k}','{v}')" for k, v in rows[i : i + INSERT_BATCH])
        out = dq.shell(f"INSERT OR REPLACE INTO model(key, value) VALUES {values}")
        if "error" in out.lower():
            raise RuntimeError(f"loading dqlite failed: {out[:300]}")


@contextlib.contextmanager
def dqlite_reads(root: Path, rows: list[tuple[str, str]], paths: ReadPaths,
                 log: Any) -> Iterator[DqliteCluster]:  # fmt: skip
    """A running dqlite-demo cluster holding ``rows``, its path added to ``paths`` as
    ``http_dqlite``; killed when the block ends."""
    with DqliteCluster(root) as dq:
        dq.start()
        load_dqlite(dq, rows)
        raw = RawHttp(dq.leader().api)

        def get(k: str) -> str:
            return raw.get(f"/{k}").decode().removesuffix("\n")

        paths.fns["http_dqlite"] = get
        paths.timed["http_dqlite"] = _timed_lookup(get)
        paths._http.append(raw)
        log(f"dqlite: {len(rows):,} rows loaded, leader {dq.leader().api}")
        yield dq


def add_stdlib(paths: ReadPaths, replica_db: str) -> sqlite3.Connection:
    """The ``stdlib`` path: Python's ``sqlite3`` reading the embedded replica's file."""
    conn = sqlite3.connect(f"file:{replica_db}?mode=ro", uri=True, check_same_thread=False)
    paths.fns["stdlib"] = lambda k: conn.execute(POINT_SQL, (k,)).fetchall()[0][0]
    paths.timed["stdlib"] = _timed_raw(conn.execute)
    return conn
