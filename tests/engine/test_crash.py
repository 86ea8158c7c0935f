"""kill -9 at every injected crash point, then restart: nothing acknowledged is lost, nothing is
half applied, and the replica's recorded position names exactly what its file holds.

A child process (``crash_child.py``) runs primary + capture + replica with
``LITECLUSTER_CRASHPOINT`` set and SIGKILLs itself there; it logs what it saw acknowledged to a
file as it goes (see its docstring). This process then reopens everything, which runs every
recovery path (torn txlog tail, capture of WAL transactions the log missed, the replica's
position intent), and checks the result against those acknowledgements.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from litecluster import Capture, CaptureConfig, Replica, ReplicaConfig, TxLog
from litecluster.engine.snapshot import create_snapshot, install_snapshot
from support import checksum, create_primary
from support.procs import finish, integrity, query, reaped, spawn

CKPT_FRAMES = 20
SNAPSHOT_EVERY = 12


@dataclass
class Acks:
    committed: set[int] = field(default_factory=set)
    records: dict[int, int] = field(default_factory=dict)
    replica: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Acks:
        acks = cls()
        if not path.exists():
            return acks
        for line in path.read_text().splitlines():
            kind, *rest = line.split()
            if kind == "C":
                acks.committed.add(int(rest[0]))
            elif kind == "A":
                acks.records[int(rest[0])] = int(rest[1], 16)
            elif kind == "R":
                acks.replica.append((int(rest[0]), int(rest[1], 16)))
            else:
                raise AssertionError(f"bad ack line {line!r}")
        return acks


def new_primary(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    db = root / "primary.db"
    create_primary(db)
    query(db, "CREATE TABLE items(seq INTEGER PRIMARY KEY, data BLOB)")
    query(db, "CREATE TABLE meta(id INTEGER PRIMARY KEY, last INTEGER)")
    query(db, "INSERT INTO meta VALUES (1, 0)")


def run_child(
    root: Path, point: str | None, skip: int, *, seed: int, iterations: int = 150
) -> tuple[int, str]:
    env = {}
    if point is not None:
        env = {"LITECLUSTER_CRASHPOINT": point, "LITECLUSTER_CRASHPOINT_SKIP": str(skip)}
    args = {
        "root": str(root),
        "ack": str(root / "acks.txt"),
        "seed": seed,
        "iterations": iterations,
        "ckpt_frames": CKPT_FRAMES,
        "snapshot_every": SNAPSHOT_EVERY,
    }
    proc = spawn("crash_child.py", "run", args, env)
    with reaped(proc):
        return finish(proc, timeout=60)


def recover_and_check(root: Path) -> dict[str, int]:
    """Reopen log, capture and replica after a crash and check every promise. Returns a few
    numbers for the caller's own assertions."""
    acks = Acks.load(root / "acks.txt")
    db, replica_db = root / "primary.db", root / "replica.db"
    log = TxLog(root / "txlog")  # cuts a torn tail
    try:
        # Every acknowledged record is still there, unchanged; the log is gapless.
        first, last = log.first_txid, log.last_txid
        assert max(acks.records, default=0) <= last
        for txid, post in sorted(acks.records.items()):
            assert log.get(txid).post_checksum == post, f"acknowledged txid {txid} changed"
        records = list(log.read(first)) if first else []
        assert [r.txid for r in records] == (list(range(first, last + 1)) if first else [])
        for prev, rec in itertools.pairwise(records):
            assert rec.pre_checksum == prev.post_checksum, f"txid {rec.txid} does not follow"

        # Capture must be the first to open the primary (closing the last connection of a
        # database checkpoints and deletes its WAL, which holds what the log may have missed).
        cap = Capture(db, log, CaptureConfig(checkpoint_frames=CKPT_FRAMES))
        try:
            assert cap.resets == 0, "recovery needed a RESET: history was lost"
            assert cap.position.txid == log.last_txid
            assert cap.position.checksum == checksum(db)
            end = log.last()
            if end is not None:
                assert end.post_checksum == cap.position.checksum
            # The checksum of position 0 (what a replica holds after a snapshot at txid 0).
            base = log.get(1).pre_checksum if log.first_txid == 1 else cap.position.checksum
            recovered = log.last_txid - last

            rep = Replica(replica_db, ReplicaConfig(durable=True))
            try:
                assert rep.diverged is None, f"replica reported divergence: {rep.diverged}"
                pos = rep.position
                # The recorded position names exactly the file's contents ...
                assert pos.checksum == checksum(replica_db)
                # ... which are the primary's state at that txid (no half-applied record) ...
                if pos.txid:
                    assert log.get(pos.txid).post_checksum == pos.checksum
                if pos.epoch == 0:
                    # Only before the first snapshot install completed: an empty replica.
                    assert not acks.replica, "an acknowledged replica position was lost"
                    install_snapshot(rep, _snapshot(cap, root))
                elif pos.txid == 0:
                    assert pos.checksum == base, (
                        f"the replica's position 0 ({pos.checksum:016x}) is not the log's "
                        f"position 0 ({base:016x})"
                    )
                # ... and never behind what it acknowledged.
                if acks.replica:
                    assert pos.txid >= max(acks.replica)[0]

                # The rest of the log brings it to the primary, intact and complete.
                rest = list(log.read(rep.position.txid + 1))
                rep.apply(rest)
                assert rep.position == cap.position
                assert checksum(replica_db) == checksum(db)
                assert integrity(replica_db) == [("ok",)]
                assert integrity(db) == [("ok",)]
                rows = {int(r[0]) for r in query(replica_db, "SELECT seq FROM items")}
                assert acks.committed <= rows, f"lost commits {sorted(acks.committed - rows)[:5]}"
                top = max(acks.committed, default=0)
                assert rows <= set(range(1, top + 2)), "rows nobody committed"
                (last_seq,) = query(replica_db, "SELECT last FROM meta")[0]
                assert last_seq == max(rows, default=0)
            finally:
                rep.close()
        finally:
            cap.close()
        return {
            "records": log.last_txid,
            "recovered": recovered,
            "acked": len(acks.records),
            "max_acked": max(acks.records, default=0),
        }
    finally:
        log.close()


def _snapshot(cap: Capture, root: Path) -> Path:
    path = root / "recovery.snap"
    create_snapshot(cap, path)
    return path


CASES = [
    ("txlog.append.partial", 0),
    ("txlog.append.partial", 25),
    ("txlog.sync.after", 0),
    ("txlog.sync.after", 10),
    ("capture.before_sync", 5),
    ("capture.restart.before_commit", 0),
    ("capture.restart.before_commit", 3),
    ("apply.before_commit", 0),
    ("apply.before_commit", 20),
    ("apply.after_commit", 0),
    ("apply.after_commit", 15),
    ("snapshot.install.before_commit", 0),
    ("snapshot.install.before_commit", 2),
]


@pytest.mark.parametrize(("point", "skip"), CASES, ids=[f"{p}-skip{s}" for p, s in CASES])
def test_kill_at_crash_point_then_recover(tmp_path: Path, point: str, skip: int) -> None:
    root = tmp_path / "node"
    new_primary(root)
    rc, output = run_child(root, point, skip, seed=skip + 1)
    assert rc == -9, f"crash point {point} (skip {skip}) was not reached: rc={rc}\n{output}"
    stats = recover_and_check(root)
    if point == "txlog.append.partial":
        # The torn record was cut; its transaction, still in the WAL, was captured again.
        assert stats["recovered"] >= 1, stats
    if point in ("capture.before_sync", "txlog.sync.after"):
        # Records written but never acknowledged are kept (a kill loses no page cache).
        assert stats["records"] > stats["max_acked"], stats
    # A restarted node carries on from there, and crashes and recovers again.
    rc, output = run_child(root, None, 0, seed=99, iterations=30)
    assert rc == 0, output
    recover_and_check(root)


def test_repeated_crashes_on_one_node(tmp_path: Path) -> None:
    """Crash after crash on the same files (each restart recovers the previous crash itself)."""
    root = tmp_path / "node"
    new_primary(root)
    plan = [
        ("apply.after_commit", 4),
        ("txlog.append.partial", 7),
        ("snapshot.install.before_commit", 1),
        ("capture.before_sync", 9),
        ("capture.restart.before_commit", 1),
        ("apply.before_commit", 6),
        ("txlog.sync.after", 3),
    ]
    for n, (point, skip) in enumerate(plan):
        rc, output = run_child(root, point, skip, seed=100 + n)
        assert rc == -9, f"crash {n} at {point} not reached: rc={rc}\n{output}"
        if n % 2:  # otherwise the next run recovers from the crash itself
            recover_and_check(root)
    stats = recover_and_check(root)
    assert stats["acked"] > 50, stats
