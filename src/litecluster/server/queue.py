"""The node's durable queue of queued writes (``POST /db/execute?queue``): ``DIR/queue.db``.

An entry is committed and fsynced here (SQLite, WAL, ``synchronous=FULL``) before the client
hears its ``sequence_number``, so it survives kill -9 and restarts; the drain
(:mod:`litecluster.server.drain`) removes it only once it is applied on the primary (and, on a
replica, present in this node's own copy). Entries are numbered by an AUTOINCREMENT key: a seq
is never reused, even after the newest entries were removed. The file also holds its own random
id; with the node id it names this queue (the ``origin`` of its entries' exactly-once records,
see :mod:`litecluster.replication.primary.applied`), so a queue file lost and made again never
collides with the old one's numbers.

Bounded by ``max_entries`` and ``max_bytes`` (of statements text): past either, a new entry is
refused with :class:`~litecluster.errors.QueueFullError` (503, retryable).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litecluster.engine.sqlite import connect
from litecluster.errors import (
    IndeterminateWriteError,
    LiteclusterError,
    QueueFullError,
    WriteError,
)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries(seq INTEGER PRIMARY KEY AUTOINCREMENT, db TEXT NOT NULL, "
    "statements TEXT NOT NULL, tx INTEGER NOT NULL, queued_at REAL NOT NULL, "
    "user TEXT NOT NULL DEFAULT '')",
)


@dataclass(frozen=True)
class Entry:
    seq: int
    db: str
    statements: list[Any]
    """The request's statements as JSON values (rqlite's request body elements)."""
    transaction: bool
    queued_at: float
    size: int
    user: str = ""
    """The users-file user that queued it ("": a cluster token holder, or authentication
    off), whose permission the primary checks again."""

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "db": self.db, "statements": self.statements,
                "transaction": self.transaction, "user": self.user}  # fmt: skip


class WriteQueue:
    """``DIR/queue.db``; thread-safe (its calls block on fsync: run them off the loop)."""

    def __init__(self, path: Path, node_id: str, *, max_entries: int, max_bytes: int) -> None:
        self.path = path
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn = connect(path)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL").fetchall()
            self._conn.execute("PRAGMA synchronous=FULL")
            for sql in _SCHEMA:
                self._conn.execute(sql)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('id', ?)", (secrets.token_hex(8),)
            )
            (qid,) = self._conn.execute("SELECT value FROM meta WHERE key = 'id'").fetchall()[0]
            row = self._conn.execute(
                "SELECT count(*), coalesce(sum(length(statements)), 0), min(queued_at) FROM entries"
            ).fetchall()[0]
        except BaseException:
            self._conn.close()
            raise
        self.origin = f"{node_id}/{qid}"
        self.count, self.bytes = int(row[0]), int(row[1])
        self._oldest: float | None = row[2]

    def add(self, db: str, statements: list[Any], transaction: bool, user: str = "") -> int:
        """Queue one request durably; its seq. QueueFullError when the queue is full."""
        text = json.dumps(statements, separators=(",", ":"))
        with self._lock:
            if self.count >= self.max_entries or self.bytes + len(text) > self.max_bytes:
                raise QueueFullError(
                    "the node's write queue is full", entries=self.count, bytes=self.bytes,
                    max_entries=self.max_entries, max_bytes=self.max_bytes,
                )  # fmt: skip
            now = time.time()
            try:
                cur = self._conn.execute(
                    "INSERT INTO entries(db, statements, tx, queued_at, user) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (db, text, int(transaction), now, user),
                )
            except Exception as exc:
                raise _not_queued(exc, self.path) from exc
            seq = cur.lastrowid
            assert seq is not None
            self.count += 1
            self.bytes += len(text)
            if self._oldest is None:
                self._oldest = now
            return int(seq)

    def pending(self, *, limit: int, max_bytes: int) -> list[Entry]:
        """The oldest entries, in seq order: at most ``limit``, and at most ``max_bytes`` of
        statements (always at least one entry)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, db, statements, tx, queued_at, user FROM entries ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        out: list[Entry] = []
        total = 0
        for seq, db, text, tx, queued_at, user in rows:
            total += len(text)
            if out and total > max_bytes:
                break
            out.append(Entry(seq, db, json.loads(text), bool(tx), queued_at, len(text), user))
        return out

    def low(self) -> int:
        """The lowest seq still queued (every entry below it is done); 0 when empty."""
        with self._lock:
            got = self._conn.execute("SELECT min(seq) FROM entries").fetchall()[0][0]
        return int(got or 0)

    def remove(self, entries: list[Entry]) -> None:
        """Drop applied (or finally failed) entries, durably."""
        if not entries:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("DELETE FROM entries WHERE seq = ?",
                                       [(e.seq,) for e in entries])  # fmt: skip
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self.count -= len(entries)
            self.bytes -= sum(e.size for e in entries)
            first = self._conn.execute(
                "SELECT queued_at FROM entries ORDER BY seq LIMIT 1"
            ).fetchall()
            self._oldest = first[0][0] if first else None

    def oldest_age(self) -> float:
        """Seconds the oldest entry has waited (0: empty)."""
        oldest = self._oldest
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _not_queued(exc: Exception, path: Path) -> LiteclusterError:
    """A failed enqueue: with the disk full nothing was written (retryable); any other failure
    (an I/O error at commit) may have left the entry in the file, to be applied later, so the
    client is not told to send it again."""
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
        return WriteError(f"the write could not be queued: {exc}", queue=str(path),
                          disk_full=True, hint="free disk space on this node, then retry")  # fmt: skip
    return IndeterminateWriteError(f"queueing the write failed: {exc}", queue=str(path))
