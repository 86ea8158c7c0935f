"""A writer that commits faster than capture keeps up is held back, not left to grow the WAL."""

from __future__ import annotations

import threading
from pathlib import Path

from litecluster import Capture, CaptureConfig, Replica, TxLog
from litecluster.engine.snapshot import create_snapshot, install_snapshot
from litecluster.engine.sqlite import connect
from support import checksum, create_primary


def test_capture_catches_up_under_the_write_lock_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "primary.db"
    create_primary(db)
    log = TxLog(tmp_path / "txlog")
    # Small rounds and a slow idle poll, so that a tight writer is always ahead of capture.
    config = CaptureConfig(max_batch=4, catch_up_rounds=2, poll_interval=0.02, busy_window=0)
    cap = Capture(db, log, config)
    commits = 3000
    done = threading.Event()

    def write() -> None:
        # Not through Capture.writer_lock: an application of its own, as another process is.
        conn = connect(db)
        conn.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
        for i in range(commits):
            conn.execute("INSERT INTO t(v) VALUES (?)", (f"value {i}",))
        conn.close()
        done.set()

    writer = threading.Thread(target=write)
    base = create_snapshot(cap, tmp_path / "base.snap")
    start_txid = base.position.txid
    cap.start()
    writer.start()
    writer.join(120)
    assert done.is_set()
    cap.stop()
    cap.poll()
    try:
        assert cap.catch_ups > 0, "the writer was never held back"
        records = list(log.read(start_txid + 1))
        # Every commit became exactly one record (plus capture's own no-op WAL restarts).
        assert len(records) >= commits + 1
        rep = Replica(tmp_path / "replica.db")
        install_snapshot(rep, tmp_path / "base.snap")
        for i in range(0, len(records), 500):
            rep.apply(records[i : i + 500])
        assert rep.position.checksum == cap.position.checksum
        rep.close()
        assert checksum(tmp_path / "replica.db") == checksum(db)
    finally:
        cap.close()
        log.close()
