"""Readers of a replica, in another process and another SQLite library, see every applied
transaction whole, reads never go backwards, and nothing errors, while the replica applies
records in batches and has fresh snapshots installed over it.

The workload is a bank: each transfer moves money between two accounts (on different pages, as
every account row carries padding), appends a ledger row and bumps a counter, all in one
transaction. A reader that saw part of a transaction would see balances that do not sum to the
total, or a ledger that does not match the counter. The reader (``stdlib_child.py reader``,
stdlib ``sqlite3`` 3.40) checks that in every read snapshot, that the counter never decreases,
and runs ``PRAGMA quick_check`` regularly.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from litecluster import Replica, ReplicaConfig
from litecluster.engine.snapshot import create_snapshot, install_snapshot
from litecluster.engine.sqlite import connect
from support import Cluster, checksum, make_cluster, wait_for
from support.procs import finish, read_json, reaped, spawn

ACCOUNTS = 40
START_BALANCE = 1000
TOTAL = ACCOUNTS * START_BALANCE
ROUNDS = 150


def setup_bank(c: Cluster) -> None:
    w = c.writer
    w.execute("BEGIN")
    w.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad BLOB)")
    w.execute("CREATE TABLE counter(id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
    w.execute(
        "CREATE TABLE ledger(id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER,"
        " note BLOB)"
    )
    w.execute("CREATE TABLE junk(id INTEGER PRIMARY KEY, data BLOB)")
    w.executemany(
        "INSERT INTO accounts VALUES (?, ?, randomblob(1500))",
        [(i, START_BALANCE) for i in range(1, ACCOUNTS + 1)],
    )
    w.execute("INSERT INTO counter VALUES (1, 0)")
    w.execute("COMMIT")


def transfer_txn(c: Cluster, rng: random.Random, transfers: int, repad: bool = False) -> None:
    """One transaction of ``transfers`` transfers (and optionally new padding everywhere)."""
    w = c.writer
    w.execute("BEGIN IMMEDIATE")
    for _ in range(transfers):
        src, dst = rng.sample(range(1, ACCOUNTS + 1), 2)
        amount = rng.randint(1, 300)
        w.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, src))
        w.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, dst))
        w.execute(
            "INSERT INTO ledger(src, dst, amount, note) VALUES (?, ?, ?, randomblob(?))",
            (src, dst, amount, rng.choice((8, 200, 900))),
        )
        w.execute("UPDATE counter SET v = v + 1 WHERE id = 1")
    if repad:
        w.execute("UPDATE accounts SET pad = randomblob(1500)")
    w.execute("COMMIT")


def churn(c: Cluster, rng: random.Random) -> None:
    """Grow the file, free the pages again and VACUUM: the database shrinks, so the replica
    truncates its file inside an apply transaction."""
    w = c.writer
    w.execute("BEGIN IMMEDIATE")
    w.executemany("INSERT INTO junk(data) VALUES (randomblob(?))", [(3000,)] * 150)
    w.execute("COMMIT")
    transfer_txn(c, rng, 2)
    w.execute("DELETE FROM junk")
    transfer_txn(c, rng, 1)
    w.execute("VACUUM")


def apply_in_batches(c: Cluster, rep: Replica, rng: random.Random) -> int:
    pending = c.pending(rep)
    i = 0
    while i < len(pending):
        n = rng.randint(1, 8)
        rep.apply(pending[i : i + n])
        i += n
    return len(pending)


def counter_of(path: Path) -> int:
    conn = connect(path)
    try:
        return int(conn.execute("SELECT v FROM counter").fetchall()[0][0])
    finally:
        conn.close()


def test_replica_readers_see_whole_transactions(tmp_path: Path) -> None:
    rng = random.Random(11)
    c = make_cluster(tmp_path / "c", checkpoint_frames=64)
    try:
        setup_bank(c)
        c.capture_all()
        rep = c.add_replica("replica")
        files = {k: str(tmp_path / f"reader-{k}.json") for k in ("status", "result")}
        stop = tmp_path / "reader.stop"
        args: dict[str, Any] = {
            "db": str(rep.db_path),
            "total": TOTAL,
            "accounts": ACCOUNTS,
            "stop": str(stop),
            "max_seconds": 150,
            **files,
        }
        reader = spawn("stdlib_child.py", "reader", args)
        with reaped(reader):
            status = Path(files["status"])
            wait_for(
                lambda: status.exists() or reader.poll() is not None,
                timeout=30,
                what="the reader's first read",
            )
            assert reader.poll() is None, finish(reader, timeout=5)[1]

            installs = reopens = churns = applied = 0
            for rnd in range(1, ROUNDS + 1):
                for _ in range(rng.randint(1, 4)):
                    transfer_txn(c, rng, rng.randint(1, 5), repad=rng.random() < 0.05)
                if rnd % 25 == 0:
                    churn(c, rng)
                    churns += 1
                c.capture_all()
                if rnd % 30 == 0:
                    # A new applier on the same file (as after a node restart), brought up to
                    # date with a fresh snapshot, like Cluster.add_replica.
                    rep.close()
                    c.replicas.remove(rep)
                    rep = Replica(rep.db_path, ReplicaConfig(durable=False))
                    c.replicas.append(rep)
                    assert rep.diverged is None
                    reopens += 1
                if rnd % 10 == 0:
                    # The replica is behind (this round's records are pending): jump ahead.
                    snap = tmp_path / "fresh.snap"
                    header = create_snapshot(c.capture, snap)
                    assert header.position.txid > rep.position.txid
                    install_snapshot(rep, snap)
                    assert rep.position == header.position
                    installs += 1
                applied += apply_in_batches(c, rep, rng)
                assert rep.position == c.capture.position

            final = counter_of(rep.db_path)

            def caught_up() -> bool:
                # (a reader that found too many violations stops early: its report says why)
                return reader.poll() is not None or int(read_json(status)["counter"]) == final

            wait_for(caught_up, timeout=30, what="the reader to see the final state")
            stop.touch()
            rc, output = finish(reader, timeout=30)
        assert rc == 0, output
        result = read_json(Path(files["result"]))

        assert result["errors"] == [], result["errors"][:5]
        assert result["violations"] == [], result["violations"][:5]
        assert result["stopped"]
        assert result["last_counter"] == final
        assert result["reads"] >= 500, result
        assert result["distinct_counters"] >= 100, result
        assert result["quick_checks"] >= 10, result
        assert (installs, reopens, churns) == (15, 5, 6)
        assert applied > 300

        # And the replica is the primary.
        assert rep.position == c.capture.position
        assert checksum(rep.db_path) == checksum(c.primary_path)
    finally:
        c.close()
