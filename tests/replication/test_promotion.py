"""Promotion at the engine level: a replica becomes the primary and continues the numbering,
so the other replicas follow it from where they are, with no snapshot."""

from __future__ import annotations

from pathlib import Path

from litecluster import Capture, CaptureConfig, Position, TxLog, TxlogConfig
from support import checksum, make_cluster


def _write(conn: object, rows: range) -> None:
    for i in rows:
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))  # type: ignore[attr-defined]


def test_a_promoted_replica_continues_the_txids_and_the_others_follow_it(tmp_path: Path) -> None:
    c = make_cluster(tmp_path / "a")
    c.writer.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    r1, r2 = c.add_replica("r1"), c.add_replica("r2")
    _write(c.writer, range(200))
    c.sync()
    before: Position = r1.position
    assert r2.position == before
    c.replicas.remove(r2)  # r2 lives on; the rest (old primary, r1's replica handle) closes
    c.close()

    # r1 is promoted: capture on its file, a new log starting at r1's position, epoch 2.
    log = TxLog(tmp_path / "r1-txlog", TxlogConfig(fsync=False))
    cap = Capture(r1.db_path, log, CaptureConfig(epoch=2, start_txid=before.txid))
    try:
        assert cap.txid == before.txid
        assert cap.hashes.checksum == before.checksum, "the promoted primary is where r1 was"
        writer = cap.connect_writer()
        _write(writer, range(200, 300))
        records = cap.poll()
        assert records[0].txid == before.txid + 1
        assert {r.epoch for r in records} == {2}
        # r2, still at the old primary's position, applies the new primary's records.
        r2.apply(list(log.read(before.txid + 1)))
        assert r2.position.txid == cap.position.txid
        assert r2.position.epoch == 2
        writer.close()
    finally:
        cap.close()
        log.close()
    assert checksum(r2.db_path) == checksum(r1.db_path)
    # Restarted, the promoted primary keeps its numbering (from its log's BASE).
    log = TxLog(tmp_path / "r1-txlog", TxlogConfig(fsync=False))
    with Capture(r1.db_path, log, CaptureConfig(epoch=2)) as again:
        assert again.txid == r2.position.txid
    log.close()
    r2.close()
