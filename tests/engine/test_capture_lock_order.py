"""Capture's lock order (writer_lock, then capture's lock) holds on the WAL-gap path too.

A gap (WAL generations written and erased unseen) is rescanned under the write lock. It used to
be handled under capture's lock, taking writer_lock second: a poll that found a gap while this
process's writer was in a transaction deadlocked with the writer's annotated commit, and a gap
found by the commit itself waited for the SQLite write lock its own transaction held.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litecluster import Capture, CaptureConfig, RecordKind, TxLog
from litecluster.engine.sqlite import connect
from support import create_primary


class _OrderedLock:
    """Wraps an RLock: notes contention, and any acquisition that breaks the lock order."""

    def __init__(self, name: str, rank: int, held: threading.local, violations: list[str]):
        self.inner = threading.RLock()
        self.name, self.rank = name, rank
        self._held, self._violations = held, violations
        self.contended = threading.Event()

    def _stack(self) -> list[int]:
        stack: list[int] | None = getattr(self._held, "stack", None)
        if stack is None:
            stack = self._held.stack = []
        return stack

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        stack = self._stack()
        # Re-entering a lock this thread holds is fine; otherwise every lock this thread holds
        # must come before this one.
        if self.rank not in stack and any(r > self.rank for r in stack):
            self._violations.append(f"{self.name} taken while holding a later lock")
        if not self.inner.acquire(blocking=False):
            self.contended.set()
            if not self.inner.acquire(blocking, timeout):
                return False
        stack.append(self.rank)
        return True

    def release(self) -> None:
        self._stack().remove(self.rank)
        self.inner.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@pytest.fixture
def cap(tmp_path: Path) -> Iterator[Capture]:
    db = tmp_path / "primary.db"
    create_primary(db)
    log = TxLog(tmp_path / "txlog")
    capture = Capture(db, log, CaptureConfig(busy_timeout_ms=3000))
    w = capture.connect_writer()
    w.execute("CREATE TABLE t(x)")
    w.close()
    capture.poll()
    yield capture
    if not getattr(capture, "deadlocked", False):
        capture.close()
        log.close()


def _instrument(cap: Capture) -> tuple[_OrderedLock, list[str]]:
    held, violations = threading.local(), []
    writer_lock = _OrderedLock("writer_lock", 1, held, violations)
    cap.writer_lock = writer_lock  # type: ignore[assignment]
    cap._lock = _OrderedLock("capture lock", 2, held, violations)  # type: ignore[assignment]
    return writer_lock, violations


def _make_gap(cap: Capture) -> None:
    """Two WAL generations written and erased while capture was not pinning the WAL."""
    cap._unpin()
    other = connect(cap.db_path)
    for i in range(2):
        other.execute("INSERT INTO t VALUES (?)", (i,))
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    other.execute("INSERT INTO t VALUES (2)")  # a WAL header two generations on
    other.close()


def _annotated_tail(cap: Capture) -> list[Any]:
    return [(r.kind, r.annotations) for r in cap.txlog.read(cap.txlog.first_txid)][-2:]


def test_a_gap_found_by_an_annotated_commit_is_rescanned_at_once(cap: Capture) -> None:
    _, violations = _instrument(cap)
    durable: list[int] = []
    cap.listeners.append(durable.append)
    _make_gap(cap)
    writer = cap.connect_writer()
    with cap.writer_lock:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO t VALUES (3)")
        # Before the fix: the rescan waited busy_timeout for the write lock held by `writer`
        # and failed the commit with CaptureGapError.
        records = cap.commit(writer, b"note")
    writer.close()
    assert [r.annotations for r in records] == [b"note"]
    assert cap.resets == 1
    assert _annotated_tail(cap) == [(RecordKind.RESET, b""), (RecordKind.PAGES, b"note")]
    assert durable[0] == records[0].txid - 1, "listeners hear of the RESET"
    assert not violations


def test_a_gap_found_by_a_poll_while_the_writer_commits_does_not_deadlock(cap: Capture) -> None:
    writer_lock, violations = _instrument(cap)
    _make_gap(cap)
    writer = cap.connect_writer()
    in_txn, poller_waits = threading.Event(), threading.Event()
    committed: list[Any] = []

    def write() -> None:
        with cap.writer_lock:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO t VALUES (3)")
            in_txn.set()
            poller_waits.wait(10)
            committed.extend(cap.commit(writer, b"note"))

    writer_thread = threading.Thread(target=write, daemon=True)
    writer_thread.start()
    assert in_txn.wait(10)
    # The capture thread's poll finds the gap while the writer is inside its transaction.
    poller = threading.Thread(target=cap.poll_batch, daemon=True)
    poller.start()
    assert writer_lock.contended.wait(10), "the poll never asked for writer_lock"
    poller_waits.set()
    writer_thread.join(10)
    poller.join(10)
    if writer_thread.is_alive() or poller.is_alive():
        cap.deadlocked = True  # type: ignore[attr-defined]  # closing would hang too
        pytest.fail("the writer's commit and the poll that found the gap deadlocked")
    writer.close()
    assert [r.annotations for r in committed] == [b"note"]
    assert cap.resets == 1
    assert _annotated_tail(cap) == [(RecordKind.RESET, b""), (RecordKind.PAGES, b"note")]
    assert not violations, violations


def test_a_gap_found_by_the_capture_thread_alone_resets(cap: Capture) -> None:
    _, violations = _instrument(cap)
    _make_gap(cap)
    records = cap.poll()
    assert [r.kind for r in records] == [RecordKind.RESET]
    assert cap.poll() == []
    assert cap.checkpoint()
    assert not violations, violations
