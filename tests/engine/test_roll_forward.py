"""A primary whose WAL lost committed frames that the log holds is rolled forward, not reset.

The child process writes and captures, then exits without closing SQLite (as a crash does, so
the WAL is not checkpointed away); the test cuts the WAL back to an earlier commit, as a power
loss under synchronous=NORMAL can, and restarts capture.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from litecluster import Capture, RecordKind, TxLog, TxlogConfig
from litecluster.engine.sqlite import connect
from litecluster.engine.wal import read_wal
from support import checksum

CHILD = textwrap.dedent(
    """
    import os, sys
    from litecluster import Capture, TxLog, TxlogConfig
    root = sys.argv[1]
    log = TxLog(root + "/txlog", TxlogConfig(fsync=False))
    cap = Capture(root + "/p.db", log)
    w = cap.connect_writer()
    w.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    for i in range(30):
        w.execute("INSERT INTO t(v) VALUES (randomblob(100 + 40 * ?))", (i,))
        if i % 7 == 3:
            w.execute("DELETE FROM t WHERE id % 5 = 0")
        cap.poll()
    print(cap.position.txid, cap.position.checksum, flush=True)
    os._exit(0)  # no close: the WAL stays as a crash leaves it
    """
)


def _run_child(root: Path) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.parametrize("lost", [1, 5, 20])
def test_primary_behind_its_log_is_rolled_forward(tmp_path: Path, lost: int) -> None:
    txid, want = _run_child(tmp_path)
    wal = tmp_path / "p.db-wal"
    header, txs = read_wal(wal)
    assert header is not None
    assert len(txs) > lost
    keep = txs[-lost - 1].commit_frame
    with open(wal, "r+b") as f:
        f.truncate(header.frame_offset(keep + 1))
    (tmp_path / "p.db-shm").unlink()
    assert checksum(tmp_path / "p.db") != want  # the database really lost transactions

    log = TxLog(tmp_path / "txlog", TxlogConfig(fsync=False))
    cap = Capture(tmp_path / "p.db", log)
    try:
        assert cap.resets == 0
        assert cap.position.txid == txid
        assert cap.position.checksum == want
        assert checksum(tmp_path / "p.db") == want
        assert all(r.kind == RecordKind.PAGES for r in log.read(1))
        # Capture goes on normally after the roll-forward.
        w = cap.connect_writer()
        w.execute("INSERT INTO t(v) VALUES (x'ff')")
        assert len(cap.poll()) == 1
        assert cap.position.checksum == checksum(tmp_path / "p.db")
        check = connect(tmp_path / "p.db")
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        check.close()
        w.close()
    finally:
        cap.close()
        log.close()


def test_database_changed_outside_history_is_a_reset(tmp_path: Path) -> None:
    _run_child(tmp_path)
    conn = connect(tmp_path / "p.db")
    conn.execute("INSERT INTO t(v) VALUES (x'00')")  # a write capture never saw
    conn.close()
    log = TxLog(tmp_path / "txlog", TxlogConfig(fsync=False))
    cap = Capture(tmp_path / "p.db", log)
    try:
        assert cap.resets == 1
        last = log.last()
        assert last is not None
        assert last.kind == RecordKind.RESET
        assert cap.position.checksum == checksum(tmp_path / "p.db")
    finally:
        cap.close()
        log.close()
    assert os.path.exists(tmp_path / "p.db")


def test_writer_synchronous_is_validated(tmp_path: Path) -> None:
    from litecluster.errors import ConfigError

    with TxLog(tmp_path / "txlog") as log, Capture(tmp_path / "p.db", log) as cap:
        with pytest.raises(ConfigError):
            cap.connect_writer("OFF")
        w = cap.connect_writer("normal")
        assert w.execute("PRAGMA synchronous").fetchall() == [(1,)]
        w.close()
