"""Child processes that use ONLY the stdlib ``sqlite3`` module (Debian's SQLite 3.40).

Run as ``python tests/support/stdlib_child.py ROLE JSON_ARGS``. Nothing here imports litecluster or
sqlean: two SQLite libraries in one process break each other's POSIX locks, so the stdlib side
of every test lives in its own process.

Roles:

* ``writer``: an application writing the primary with default settings (autocheckpoint of 1000
  pages, deferred transactions, the default 5 s busy timeout). Transaction ``k`` inserts
  ``ops(seq=k)`` and sets ``meta.last_seq=k``; some transactions are larger than 1000 pages so
  the writer's own autocheckpoint fires. Writes a JSON report to ``result``.
* ``reader``: a long-lived reader of a replica. Each read is one snapshot (BEGIN ... COMMIT)
  that checks the bank invariants: the balances sum to the total, ``count(ledger)`` equals the
  transfer counter, and the counter never goes backwards. Reports to ``status`` periodically
  and to ``result`` when ``stop`` appears.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sqlite3
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Offsets in the WAL-index (-shm) header (https://www.sqlite.org/walformat.html): mxFrame of the
# first header copy, and nBackfill of the checkpoint info that follows the two copies.
SHM_MX_FRAME = 16
SHM_N_BACKFILL = 96


def write_json(path: str, data: dict[str, Any]) -> None:
    """Atomic replace, so the parent never reads half a report."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def shm_counters(db: str) -> tuple[int, int]:
    """(mxFrame, nBackfill) from the WAL index, read as plain bytes (native byte order)."""
    try:
        with open(db + "-shm", "rb") as f:
            raw = f.read(SHM_N_BACKFILL + 4)
    except FileNotFoundError:
        return 0, 0
    if len(raw) < SHM_N_BACKFILL + 4:
        return 0, 0
    (mx,) = struct.unpack_from("=I", raw, SHM_MX_FRAME)
    (backfill,) = struct.unpack_from("=I", raw, SHM_N_BACKFILL)
    return mx, backfill


def content_digest(conn: sqlite3.Connection) -> str:
    h = hashlib.sha256()
    for seq, payload in conn.execute("SELECT seq, payload FROM ops ORDER BY seq"):
        h.update(struct.pack(">QQ", seq, len(payload)))
        h.update(payload)
    for row in conn.execute("SELECT id, last_seq, n FROM meta ORDER BY id"):
        h.update(repr(row).encode())
    return h.hexdigest()


def payload(rng: random.Random, size: int) -> bytes:
    """Distinct but compressible bytes (the txlog compresses pages with zstd)."""
    unit = rng.randbytes(256)
    return (unit * (size // 256 + 1))[:size]


def wal_salt1(db: str) -> int | None:
    try:
        with open(db + "-wal", "rb") as f:
            raw = f.read(32)
    except FileNotFoundError:
        return None
    return struct.unpack_from(">I", raw, 16)[0] if len(raw) == 32 else None


def warm_up(conn: sqlite3.Connection, db: str, restarts: int) -> int:
    """An application that ran before capture attached: its own autocheckpoints restarted the
    WAL ``restarts`` times (so the WAL header's checkpoint sequence is this connection's)."""
    if not restarts:
        return 0
    conn.execute("CREATE TABLE IF NOT EXISTS warm(x BLOB)")
    conn.commit()
    seen = 0
    salt = wal_salt1(db)
    for _ in range(restarts * 10):
        with conn:  # > 1000 pages: the autocheckpoint that follows copies the whole WAL back
            conn.execute("DELETE FROM warm")
            conn.execute("INSERT INTO warm VALUES (?)", (bytes(4_300_000),))
        with conn:  # the next write finds the WAL fully copied and restarts it
            conn.execute("INSERT INTO warm VALUES (x'00')")
        now = wal_salt1(db)
        if now != salt:
            seen += 1
            salt = now
        if seen >= restarts:
            break
    return seen


def writer(args: dict[str, Any]) -> None:
    db: str = args["db"]
    rng = random.Random(args["seed"])
    transactions: int = args["transactions"]
    large_every: int = args["large_every"]
    large_bytes: int = args["large_bytes"]
    wal = db + "-wal"
    conn = sqlite3.connect(db)  # defaults: deferred BEGIN, timeout 5 s, autocheckpoint 1000
    autockpt = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    warmup = warm_up(conn, db, args.get("warmup_restarts", 0))
    if "ready" in args:
        write_json(args["ready"], {"warmup_restarts": warmup})
        deadline = time.monotonic() + 60
        while not Path(args["go"]).exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the parent never said go")
            time.sleep(0.005)
    max_wal = 0
    sizes: list[int] = []
    over_autockpt = 0  # commits after which the WAL held >= autocheckpoint frames
    backfilled = 0  # commits after which a checkpoint had copied frames (nBackfill > 0)
    start = time.monotonic()
    for k in range(1, transactions + 1):
        large = k % large_every == large_every // 2
        size = large_bytes + rng.randrange(4096) if large else rng.choice((16, 200, 3000, 9000))
        with conn:  # one transaction; commits on exit
            conn.execute("INSERT INTO ops(seq, payload) VALUES (?, ?)", (k, payload(rng, size)))
            conn.execute("UPDATE meta SET last_seq = ?, n = n + 1 WHERE id = 1", (k,))
            if k % 5 == 0:
                # Updates that free pages (old large payloads shrink), so later transactions
                # reuse freelist pages.
                victim = rng.randrange(1, k + 1)
                conn.execute(
                    "UPDATE ops SET payload = ? WHERE seq = ?", (payload(rng, 100), victim)
                )
        mx, backfill = shm_counters(db)
        if mx >= autockpt:
            over_autockpt += 1
        if backfill > 0:
            backfilled += 1
        with contextlib.suppress(FileNotFoundError):
            max_wal = max(max_wal, os.path.getsize(wal))
        sizes.append(size)
        if k % args["pause_every"] == 0:
            time.sleep(args["pause"])  # think time between requests, as applications have
    elapsed = time.monotonic() - start
    digest = content_digest(conn)
    count, last = conn.execute("SELECT count(*), max(seq) FROM ops").fetchone()
    conn.close()
    write_json(
        args["result"],
        {
            "committed": transactions,
            "count": count,
            "last": last,
            "digest": digest,
            "autocheckpoint": autockpt,
            "journal_mode": journal,
            "max_wal_bytes": max_wal,
            "largest_payload": max(sizes),
            "commits_over_autocheckpoint": over_autockpt,
            "commits_seeing_backfill": backfilled,
            "elapsed": elapsed,
        },
    )


def reader(args: dict[str, Any]) -> None:
    db: str = args["db"]
    total: int = args["total"]
    stop = Path(args["stop"])
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA query_only = ON")
    reads = 0
    errors: list[str] = []
    violations: list[str] = []
    counters: set[int] = set()
    last_counter = -1
    checks = 0
    next_status = 0.0
    deadline = time.monotonic() + args["max_seconds"]
    while not stop.exists() and time.monotonic() < deadline:
        try:
            conn.execute("BEGIN")
            try:
                (balance,) = conn.execute("SELECT sum(balance) FROM accounts").fetchone()
                (counter,) = conn.execute("SELECT v FROM counter WHERE id = 1").fetchone()
                (ledger, moved) = conn.execute(
                    "SELECT count(*), coalesce(sum(amount), 0) FROM ledger"
                ).fetchone()
                (accounts,) = conn.execute("SELECT count(*) FROM accounts").fetchone()
                if reads % 50 == 0:
                    check = conn.execute("PRAGMA quick_check").fetchall()
                    checks += 1
                    if check != [("ok",)]:
                        violations.append(f"quick_check at counter {counter}: {check[:3]}")
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            if len(errors) > 20:
                break
            continue
        reads += 1
        if balance != total:
            violations.append(f"sum(balance)={balance} != {total} at counter {counter}")
        if ledger != counter:
            violations.append(f"count(ledger)={ledger} != counter {counter}")
        if accounts != args["accounts"]:
            violations.append(f"{accounts} accounts at counter {counter}")
        if moved < 0:
            violations.append(f"negative ledger sum {moved}")
        if counter < last_counter:
            violations.append(f"counter went back from {last_counter} to {counter}")
        last_counter = counter
        counters.add(counter)
        if len(violations) > 50:
            break
        now = time.monotonic()
        if now >= next_status:
            next_status = now + 0.05
            write_json(args["status"], {"reads": reads, "counter": last_counter})
    conn.close()
    write_json(
        args["result"],
        {
            "reads": reads,
            "errors": errors,
            "violations": violations,
            "distinct_counters": len(counters),
            "last_counter": last_counter,
            "quick_checks": checks,
            "stopped": stop.exists(),
        },
    )


def main() -> None:
    role, raw = sys.argv[1], sys.argv[2]
    args = json.loads(raw)
    try:
        {"writer": writer, "reader": reader}[role](args)
    except BaseException:
        traceback.print_exc()
        raise


if __name__ == "__main__":
    main()
