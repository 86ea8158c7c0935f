"""The node's durable queue file (DIR/queue.db): entries and their numbering survive reopening,
a seq is never reused, the origin is the file's own, the bounds refuse with 503's error, and a
full disk refuses as retryable."""

from __future__ import annotations

from pathlib import Path

import pytest

from litecluster.errors import QueueFullError, WriteError
from litecluster.server.queue import WriteQueue


def _open(path: Path, **limits: int) -> WriteQueue:
    return WriteQueue(path, "n1", max_entries=limits.get("entries", 100),
                      max_bytes=limits.get("bytes", 1 << 20))  # fmt: skip


def test_entries_survive_reopening_in_order_and_seqs_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    q = _open(path)
    origin = q.origin
    seqs = [q.add("main", [["INSERT INTO t VALUES(?)", i]], i % 2 == 0) for i in range(5)]
    newest = q.pending(limit=10, max_bytes=1 << 20)[-1]
    q.remove([newest])  # the newest seq is gone: it must not come back
    q.close()
    q = _open(path)
    assert q.origin == origin, "the queue keeps its name"
    assert q.count == 4
    got = q.pending(limit=10, max_bytes=1 << 20)
    assert [e.seq for e in got] == seqs[:4]
    assert got[1].statements == [["INSERT INTO t VALUES(?)", 1]]
    assert [e.transaction for e in got] == [True, False, True, False]
    assert q.add("main", ["SELECT 1"], False) > seqs[-1]
    assert q.low() == seqs[0]
    assert q.oldest_age() >= 0
    q.remove(got)
    assert q.bytes == len('["SELECT 1"]')
    q.close()
    path.unlink()
    for extra in ("-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    assert _open(path).origin != origin, "a new file is a new queue: its numbers are its own"


def test_batches_are_bounded_by_count_and_bytes_but_hold_one_entry_at_least(
    tmp_path: Path,
) -> None:
    q = _open(tmp_path / "queue.db")
    for i in range(10):
        q.add("main", [f"INSERT INTO t VALUES({i})" + " " * 100], False)
    assert len(q.pending(limit=3, max_bytes=1 << 20)) == 3
    assert len(q.pending(limit=10, max_bytes=260)) == 2  # 127 each
    assert len(q.pending(limit=10, max_bytes=1)) == 1


def test_a_full_queue_refuses_retryably(tmp_path: Path) -> None:
    q = _open(tmp_path / "queue.db", entries=2, bytes=60)
    q.add("main", ["SELECT 1"], False)
    q.add("main", ["SELECT 2"], False)
    with pytest.raises(QueueFullError) as info:
        q.add("main", ["SELECT 3"], False)
    assert info.value.retryable
    q.remove(q.pending(limit=1, max_bytes=1 << 20))
    with pytest.raises(QueueFullError):
        q.add("main", ["SELECT 'x'" + "x" * 60], False)  # past max_bytes
    q.add("main", ["SELECT 3"], False)


def test_a_full_disk_refuses_retryably_and_queues_nothing(tmp_path: Path) -> None:
    q = _open(tmp_path / "queue.db", bytes=1 << 30)
    # SQLite's own SQLITE_FULL: the file may not grow past its current pages.
    pages = q._conn.execute("PRAGMA page_count").fetchall()[0][0]
    q._conn.execute(f"PRAGMA max_page_count={pages}").fetchall()
    big = ["SELECT '" + "x" * 3000 + "'"]
    added, refused = 0, None
    while refused is None and added < 1000:
        try:
            q.add("main", big, False)
            added += 1
        except WriteError as exc:
            refused = exc
    assert refused is not None, "the file filled up"
    assert refused.retryable
    assert q.count == added
    assert len(q.pending(limit=10_000, max_bytes=1 << 30)) == added
