"""Whether a replica's position lies on this primary's history, at the start of a stream and
for each acknowledgement.

At the start: a replica's position (epoch, txid, checksum) is on the history when the
primary's log has the same checksum after that txid. A position ahead of the head, or with a
different checksum at a txid both know, has records this primary never had: *diverged*. A
position below the log's start cannot be checked against a record: the database's epoch
history decides (node/history.py: within the stretch of its epoch, clean; past its end,
diverged). Where the history cannot tell (an epoch that wrote no record on this lineage, or
data older than the history files), two older rules still can: the position is clean when its
epoch is that of the oldest record the log still holds, or when it is at or below the position
this node held when it was promoted, in that position's epoch; past that position in that
epoch it is diverged. Otherwise the replica's copy is set aside before the snapshot replaces
it, *unverified*: a clean copy kept costs disk, a divergent one overwritten loses data.

Acknowledgements: in synchronous mode a write is acknowledged once K replicas say they hold
it, so an acknowledgement counts only for what this session sent, only when its epoch is one
this history holds it in (history.py's reach), and only once the replica has shown a position
on this history (a diverged replica's old position, even at a txid the primary has sent,
names other data). An acknowledged position then covers a write's position (epoch, txid) when
the history says the state at the acknowledged txid reaches it (:func:`ack_covers`), not by
txids alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from litecluster.engine.apply import fresh_database_checksum
from litecluster.engine.position import Position
from litecluster.errors import TxidNotFoundError
from litecluster.replication.history import Reach
from litecluster.replication.primary.database import PrimaryDb


@dataclass(frozen=True)
class Start:
    """Where a replica's stream starts: ``txid`` (None: a snapshot is needed) and whether its
    copy must be set aside first."""

    txid: int | None
    diverged: bool = False
    unverified: bool = False
    """Set aside only because the position could not be checked: it may well be clean."""

    @property
    def flags(self) -> tuple[bool, bool]:
        """(diverged, unverified), in SnapshotStart's order."""
        return self.diverged, self.unverified


def stream_start(
    db: PrimaryDb, pos: Position, epoch: int, tmp: Path, promoted_at: Position | None = None
) -> Start:
    """Where the stream of ``db`` to a replica at ``pos`` starts (primary of ``epoch``;
    ``promoted_at``: this database's position when this node was promoted, if it was)."""
    if pos.epoch > epoch:
        return Start(None)
    expected = db.checksum_at(pos.txid)
    # An empty replica file becomes a fresh WAL database (Replica.initialize), which is what a
    # database created by this node looked like before its first transaction.
    fresh = pos == Position() and expected is not None
    if fresh and expected == fresh_database_checksum(db.capture.page_size, tmp):
        return Start(1)
    if expected is not None and expected == pos.checksum:
        return Start(pos.txid + 1)
    if pos.txid == 0:
        return Start(None)
    if pos.txid > db.head or expected is not None:
        return Start(None, diverged=True)
    held = db.history.holds(pos, db.head)
    if held is not None:
        return Start(None, diverged=not held)
    if promoted_at is not None and pos.epoch == promoted_at.epoch:
        return Start(None, diverged=pos.txid > promoted_at.txid)
    if _prefix_of_oldest(db, pos):
        return Start(None)
    return Start(None, diverged=True, unverified=True)


def _prefix_of_oldest(db: PrimaryDb, pos: Position) -> bool:
    """Whether a position below the log's start has the epoch of the oldest record held."""
    first = db.txlog.first_txid
    if first == 0 or pos.txid >= first:
        return False
    try:
        return db.txlog.get(first).epoch == pos.epoch
    except TxidNotFoundError:
        return False


def ack_counts(db: PrimaryDb | None, pos: Position, sent: int | None, verified: bool) -> bool:
    """Whether a replica's acknowledged ``pos`` counts (see the module doc); ``sent`` is the
    last txid this session sent (None: nothing yet), ``verified`` whether the replica already
    showed a position on this history since its stream (re)started."""
    if db is None or sent is None or pos.txid > sent:
        return False
    if db.history.reach(pos, db.head) is not Reach.REACHED:
        return False  # an epoch this history does not hold that txid in
    return verified or db.checksum_at(pos.txid) == pos.checksum


def ack_covers(db: PrimaryDb, acked: Position, write: Position) -> bool:
    """Whether a replica that acknowledged ``acked`` (counted by :func:`ack_counts`: on this
    history) holds the write at ``write`` (epoch, txid) of this primary's history."""
    return db.history.reach(write, acked.txid) is Reach.REACHED
