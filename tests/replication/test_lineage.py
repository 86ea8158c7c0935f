"""Whether a replica's position lies on the primary's history (node/lineage.py), against a
real primary database: its capture, its txlog and a retention that removed old records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from litecluster.engine.position import Position
from litecluster.engine.sqlite import connect
from litecluster.replication.config import ReplicationConfig
from litecluster.replication.primary.database import PrimaryDb
from litecluster.replication.primary.lineage import Start, ack_counts, ack_covers, stream_start

EPOCH = 7


@pytest.fixture
def db(tmp_path: Path) -> Iterator[PrimaryDb]:
    (tmp_path / "db").mkdir()
    (tmp_path / "tmp").mkdir()
    config = ReplicationConfig(data_dir=tmp_path, segment_bytes=8192, retention_bytes=8192)
    pdb = PrimaryDb("main", config, EPOCH)
    conn = connect(pdb.path)
    try:
        conn.execute("CREATE TABLE t(v BLOB)")
        pdb.capture.poll()
        for _ in range(40):
            conn.execute("INSERT INTO t VALUES(randomblob(500))")
            pdb.capture.poll()
        yield pdb
    finally:
        conn.close()
        pdb.close()


def _at(db: PrimaryDb, txid: int) -> Position:
    checksum = db.checksum_at(txid)
    assert checksum is not None
    return Position(EPOCH, txid, checksum)


def test_a_position_on_the_history_streams_on_and_its_acks_count(
    db: PrimaryDb, tmp_path: Path
) -> None:
    pos = _at(db, 20)
    assert stream_start(db, pos, EPOCH, tmp_path / "tmp") == Start(21)
    assert ack_counts(db, pos, sent=20, verified=False)
    assert ack_counts(db, _at(db, 25), sent=30, verified=True)


def test_acks_count_only_for_what_was_sent_and_only_on_this_history(db: PrimaryDb) -> None:
    # Beyond what the session sent: another history's txid, whatever it claims.
    assert not ack_counts(db, _at(db, 25), sent=20, verified=True)
    assert not ack_counts(db, _at(db, 5), sent=None, verified=False)
    # A diverged replica's position at a txid the primary did send, before it installed the
    # snapshot: not the primary's data, so it does not count.
    other = Position(EPOCH - 1, 15, 0xBAD)
    assert not ack_counts(db, other, sent=30, verified=False)
    assert not ack_counts(None, _at(db, 5), sent=30, verified=True)


def test_acks_are_positions_compared_with_their_epoch(db: PrimaryDb) -> None:
    # Epoch 7 wrote every record of this database: an older epoch's txid 15 (even with the
    # right checksum) is another history's write, whatever the txid says.
    assert db.history.entries == [(EPOCH, 0)]
    older = Position(EPOCH - 1, 15, _at(db, 15).checksum)
    assert not ack_counts(db, older, sent=30, verified=True)
    assert ack_counts(db, _at(db, 15), sent=30, verified=True)
    # An acknowledged position covers a write of this history at or below its txid.
    write = Position(EPOCH, 25)
    assert ack_covers(db, _at(db, 30), write)
    assert ack_covers(db, _at(db, 25), write)
    assert not ack_covers(db, _at(db, 24), write)
    assert not ack_covers(db, Position(), write)


def test_a_different_checksum_or_a_position_ahead_is_diverged(
    db: PrimaryDb, tmp_path: Path
) -> None:
    assert stream_start(db, Position(EPOCH, 20, 0xBAD), EPOCH, tmp_path) == Start(None, True)
    ahead = Position(EPOCH, db.head + 3, 1)
    assert stream_start(db, ahead, EPOCH, tmp_path) == Start(None, True)
    assert stream_start(db, Position(), EPOCH, tmp_path).diverged is False


def test_below_retention_only_a_provable_prefix_is_clean(db: PrimaryDb, tmp_path: Path) -> None:
    db.txlog.enforce_retention()
    first = db.txlog.first_txid
    assert first > 3, "retention removed the oldest records"
    # The oldest record held is of this epoch: a replica of this epoch below it holds a prefix.
    assert stream_start(db, Position(EPOCH, 2, 0x1234), EPOCH, tmp_path) == Start(None, False)
    # Of an older epoch, nothing proves it either way: its copy is set aside before the
    # snapshot, said to be unverified rather than diverged.
    old = Position(EPOCH - 2, 2, 0x1234)
    assert stream_start(db, old, EPOCH, tmp_path) == Start(None, True, unverified=True)
    # Unless this node was promoted from a position of that epoch at or after it: clean.
    promoted = Position(EPOCH - 2, 3, 0x99)
    assert stream_start(db, old, EPOCH, tmp_path, promoted) == Start(None, False)
    # Past that position in that epoch: records that epoch's primary wrote where this history
    # has this node's own, however long ago (a deposed primary's tail): proven diverged.
    beyond = Position(EPOCH - 2, 4, 0x1234)
    assert stream_start(db, beyond, EPOCH, tmp_path, promoted) == Start(None, True)
    # Another epoch than the promotion's is not placed by it.
    other = Position(EPOCH - 1, 2, 0x1234)
    assert stream_start(db, other, EPOCH, tmp_path, promoted) == Start(None, True, True)
