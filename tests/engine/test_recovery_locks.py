"""Capture's recovery must not drop the POSIX locks its process holds on the database.

Recovery reads pages of the database file as they were before the uncaptured WAL transactions.
Reading them through a plain ``open()`` and closing it dropped every lock this process held on
the file (POSIX locks are per process and per file), including the shared lock each WAL
connection keeps. Another process's connection then believed it was the last one when it
closed: it checkpointed past capture's pin and deleted the WAL, so capture never saw the
commits that followed (a node restarted after kill -9 stopped capturing).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from litecluster import Capture, CaptureConfig, TxLog
from litecluster.engine.sqlite import connect
from support import checksum

CHILD = """
import sys
import sqlean
conn = sqlean.connect(sys.argv[1], isolation_level=None)
for i in range(int(sys.argv[2])):
    conn.execute("INSERT INTO t(v) VALUES (?)", (f"child {i}",))
conn.close()
"""


def insert(conn: object, n: int, tag: str) -> None:
    for i in range(n):
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"{tag} {i}",))  # type: ignore[attr-defined]


def test_another_process_closing_after_recovery_leaves_the_wal_to_capture(tmp_path: Path) -> None:
    db = tmp_path / "main.db"
    app = connect(db)
    app.execute("PRAGMA journal_mode=WAL").fetchall()
    app.execute("PRAGMA wal_autocheckpoint=0")
    app.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    config = CaptureConfig(checkpoint_frames=10_000)
    with TxLog(tmp_path / "txlog") as txlog:
        with Capture(db, txlog, config) as first:
            insert(app, 5, "captured")
            first.poll()
        # Committed while no capture runs: the next capture recovers them from the WAL.
        insert(app, 5, "pending")
        with Capture(db, txlog, config) as cap:
            recovered = cap.position.txid
            assert recovered >= 7
            subprocess.run([sys.executable, "-c", CHILD, str(db), "20"], check=True)
            assert Path(f"{db}-wal").exists(), "the other process deleted the WAL under capture"
            assert len(cap.poll()) == 20
            assert cap.position.checksum == checksum(db)
    app.close()
