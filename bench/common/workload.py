"""The engine benchmarks' workload and database setup (also used by ``bench.bootstrap``):
one-row upserts on a preloaded ``kv`` table, and big databases for the bulk steps.

Every SQLite file here is opened through :func:`litecluster.engine.sqlite.connect` (sqlean). The stdlib
``sqlite3`` module must never be imported in a benchmark process: two SQLite libraries in one
process break each other's POSIX locks.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from litecluster.engine.sqlite import connect, pragma_int

PAGE_SIZE = 4096

UPSERT = (
    "INSERT INTO kv(k, v, seq) VALUES (?, ?, ?) "
    "ON CONFLICT(k) DO UPDATE SET v = excluded.v, seq = excluded.seq"
)


@dataclass(frozen=True)
class Workload:
    """One-row upserts of ``value_bytes`` random bytes on ``keys`` preloaded keys."""

    txns: int
    keys: int = 10_000
    value_bytes: int = 200
    seed: int = 1

    def generate(self) -> tuple[list[int], list[bytes]]:
        """The key and the value of each transaction (deterministic for a given seed)."""
        rng = random.Random(self.seed)
        keys = [rng.randrange(self.keys) for _ in range(self.txns)]
        values = [rng.randbytes(self.value_bytes) for _ in range(self.txns)]
        return keys, values


def remove_db(path: Path) -> None:
    """Delete a database file and everything SQLite and litecluster keep beside it."""
    for suffix in ("", "-wal", "-shm", "-journal", ".lcpos"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(str(path) + suffix)


def create_kv_db(path: Path, wl: Workload) -> None:
    """A WAL database holding the ``kv`` table with every key preloaded (seq = -1)."""
    remove_db(path)
    conn = connect(path)
    try:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute(
            "CREATE TABLE kv(k INTEGER PRIMARY KEY, v BLOB NOT NULL, seq INTEGER NOT NULL)"
        )
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x + 1 < ?) "
            "INSERT INTO kv(k, v, seq) SELECT x, randomblob(?), -1 FROM c",
            (wl.keys, wl.value_bytes),
        )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()


def create_big_db(path: Path, size_mb: int, wl: Workload, blob_kib: int = 256) -> int:
    """A database of at least ``size_mb`` MB (10**6 bytes): the ``kv`` table plus random blobs.

    Built with the journal off in transactions of about 64 MiB (fast), then put in WAL mode.
    Returns the file size in bytes.
    """
    remove_db(path)
    conn = connect(path)
    try:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=OFF").fetchall()
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(
            "CREATE TABLE kv(k INTEGER PRIMARY KEY, v BLOB NOT NULL, seq INTEGER NOT NULL)"
        )
        conn.execute("CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB NOT NULL)")
        conn.execute("BEGIN")
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x + 1 < ?) "
            "INSERT INTO kv(k, v, seq) SELECT x, randomblob(?), -1 FROM c",
            (wl.keys, wl.value_bytes),
        )
        conn.execute("COMMIT")
        blob_bytes = blob_kib * 1024
        target = size_mb * 10**6
        per_txn = max(1, (64 * 1024) // blob_kib)  # about 64 MiB per transaction
        while (have := pragma_int(conn, "page_count") * PAGE_SIZE) < target:
            # Each blob takes a little more than its size (overflow page headers).
            n = min(per_txn, max(1, (target - have) // (blob_bytes + blob_bytes // 512)))
            conn.execute("BEGIN")
            conn.execute(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
                "INSERT INTO blobs(b) SELECT randomblob(?) FROM c",
                (n, blob_bytes),
            )
            conn.execute("COMMIT")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
    finally:
        conn.close()
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return path.stat().st_size


def copy_db(src: Path, dst: Path) -> None:
    """Copy a closed, checkpointed database (and its .lcpos file, if any) to ``dst``."""
    remove_db(dst)
    shutil.copyfile(src, dst)
    pos = Path(str(src) + ".lcpos")
    if pos.exists():
        shutil.copyfile(pos, str(dst) + ".lcpos")
