"""Exactly-once bookkeeping of queued writes, kept in the database they write to.

A queued write (docs/http-api.md, "Queued writes") may reach the writer more than once: the
node that queued it sends it again whenever it cannot tell whether the last attempt committed
(a crash between the commit on the primary and the removal from its local queue, a lost
answer, synchronous mode's timeout, a failover). Each attempt runs with a :class:`Once`: in the
same transaction as the entry's statements the writer inserts the entry's ``(origin, seq)``
into :data:`TABLE` of the database written, and an attempt that finds its row there runs
nothing. The table is an ordinary one, so it is replicated with the write: a promoted replica
knows which entries its copy holds, and an entry the new primary does not hold (the old
primary's unreplicated tail) is applied by it, once.

One row per applied entry rather than a high-water mark per origin: entries of one origin may
commit out of order (a group that failed whole while a later entry committed in the next
group), and "seq at or below the mark" would then skip the failed one forever. The rows are
pruned as the origin's queue moves on: each attempt carries ``done_below``, the lowest seq the
origin still holds, and rows below it (entries never sent again) go in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from litecluster.engine.sqlite import Connection

TABLE = "litecluster_applied_queue"
"""Reserved: requests may read it, never change it (the sandbox refuses)."""

_CREATE = (f"CREATE TABLE IF NOT EXISTS {TABLE}(origin TEXT NOT NULL, seq INTEGER NOT NULL, "
           "PRIMARY KEY (origin, seq)) WITHOUT ROWID")  # fmt: skip

DUPLICATE = "duplicate"
"""The value of a write outcome whose entry was already applied (nothing ran)."""


@dataclass(frozen=True)
class Once:
    """One queued entry's identity: ``origin`` names the queue (node id and the queue file's
    own id, so a new queue file never reuses an old one's numbers), ``seq`` the entry."""

    origin: str
    seq: int
    done_below: int = 0

    def seen(self, conn: Connection) -> bool:
        """Whether this entry is already applied in ``conn``'s database (inside the writer's
        transaction; creates the table on first use)."""
        conn.execute(_CREATE)
        sql = f"SELECT 1 FROM {TABLE} WHERE origin = ? AND seq = ?"
        return bool(conn.execute(sql, (self.origin, self.seq)).fetchall())

    def record(self, conn: Connection) -> None:
        """Mark the entry applied, in the transaction of its statements."""
        conn.execute(f"INSERT INTO {TABLE}(origin, seq) VALUES (?, ?)", (self.origin, self.seq))
        if self.done_below:
            conn.execute(f"DELETE FROM {TABLE} WHERE origin = ? AND seq < ?",
                         (self.origin, self.done_below))  # fmt: skip
