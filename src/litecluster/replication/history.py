"""Each database's epoch history: at which txid each epoch of its lineage began.

A primary checks a rejoining replica's position against its txlog, record by record; a
position older than the txlog has no record left to compare with. The history answers then,
the way PostgreSQL's timeline history files do: the lineage of a database is a sequence of
stretches, epoch ``e`` holding the txids ``(base_e, base_next]``, and a position ``(e, t)`` is
the state after txid ``t`` as the primary of epoch ``e`` saw it. One primary writes each epoch
(fencing), so:

- ``t`` within the stretch of ``e`` (``base_e <= t <= end``): the replica holds a prefix of
  this lineage (a replica that lagged, across any number of failovers);
- ``t`` past the end of that stretch: the primary of ``e`` wrote records after the point where
  this lineage left ``e``: the replica holds writes no one else has (*diverged*, proven);
- ``e`` not in the history, or ``t`` before its stretch: unknown (an epoch that wrote no
  record this lineage holds, or history from before this file existed).

Entries are only ever exact: a replica adds ``(e, txid - 1)`` when it is about to apply the
first record of a newer epoch ``e``, a primary adds its own epoch at the position it starts
writing from, and a snapshot carries its primary's entries. An entry written ahead of records
that then never arrived (a crash between the two) is dropped when the records that do arrive
contradict it. The file is small (one entry per failover) and rewritten whole, atomically.
"""

from __future__ import annotations

import enum
import itertools
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from litecluster.engine.position import Position
from litecluster.engine.record import TxRecord
from litecluster.engine.txlog import write_durably
from litecluster.errors import NodeError

log = logging.getLogger("litecluster.node")

Entry = tuple[int, int]
"""(epoch, base): the epoch's records start at txid ``base + 1``."""


class Reach(enum.Enum):
    """Where a position stands against a node's copy (:meth:`EpochHistory.reach`)."""

    REACHED = "reached"
    """The copy holds the state the position names."""
    NOT_YET = "not yet"
    """Not yet: the copy may still get there (a replica applying, a primary capturing)."""
    EXCLUDED = "excluded"
    """Never: a newer epoch of this lineage took over at or below the position's txid."""


def history_path(data_dir: Path, name: str) -> Path:
    return data_dir / "history" / f"{name}.json"


class EpochHistory:
    """The epoch history of one database (see the module doc)."""

    def __init__(self, path: Path, entries: Iterable[Entry] = ()) -> None:
        self.path = path
        self.entries: list[Entry] = list(entries)

    @classmethod
    def load(cls, path: Path) -> EpochHistory:
        """The history saved at ``path``; empty (nothing known) when there is none or it is
        damaged: an unknown history only makes the primary more careful, never wrong."""
        try:
            raw = json.loads(path.read_bytes())
            entries = [(int(e), int(b)) for e, b in raw["entries"]]
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("history.unreadable path=%s error=%r: starting from an empty history",
                        path, str(exc))  # fmt: skip
            return cls(path)
        if not _ordered(entries):
            log.warning("history.unreadable path=%s error='entries out of order'", path)
            return cls(path)
        return cls(path, entries)

    def _save(self, entries: list[Entry]) -> None:
        """Durable before anything relies on it (a record applied, a write accepted)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(self.path, json.dumps({"entries": entries}).encode())
        except OSError as exc:
            raise NodeError(
                f"cannot write the epoch history: {exc.strerror or exc}",
                path=str(self.path),
                hint="free disk space or fix the data directory's permissions",
            ) from exc

    def _set(self, entries: list[Entry]) -> None:
        if entries != self.entries:
            self._save(entries)  # first: the entries in memory are never ahead of the file
            self.entries = entries

    # ---- keeping it -----------------------------------------------------------------------------

    def before_apply(self, records: Sequence[TxRecord]) -> None:
        """A replica is about to apply ``records`` (consecutive): note each newer epoch."""
        if not records:
            return
        if _extends(self.entries, records[0]) and records[0].epoch == records[-1].epoch:
            return  # the common case: the batch extends the current stretch
        entries = list(self.entries)
        for rec in records:
            if _extends(entries, rec):
                continue
            # Entries these records contradict were written ahead of records that never came.
            entries = [(e, b) for e, b in entries if e <= rec.epoch and b < rec.txid]
            if not entries or entries[-1][0] != rec.epoch:
                entries.append((rec.epoch, rec.txid - 1))
        self._set(entries)

    def begin(self, epoch: int, at: Position) -> None:
        """This node starts writing as the primary of ``epoch`` on a file at position ``at``."""
        entries = [(e, b) for e, b in self.entries if e <= at.epoch and b <= at.txid]
        if not entries or entries[-1][0] != epoch:
            entries.append((epoch, at.txid))
        self._set(entries)

    def replace(self, entries: Sequence[Entry]) -> None:
        """Adopt a snapshot's history (empty first, while the file is being replaced)."""
        self._set(list(entries) if _ordered(entries) else [])

    def upto(self, txid: int) -> list[Entry]:
        """The entries that describe the lineage up to ``txid`` (for a snapshot at ``txid``)."""
        return [(e, b) for e, b in self.entries if b <= txid]

    # ---- reading it -----------------------------------------------------------------------------

    def holds(self, pos: Position, head: int) -> bool | None:
        """Whether ``pos`` lies on this lineage (whose last txid is ``head``): True, False
        (proven diverged), or None (unknown); see the module doc."""
        for i, (epoch, base) in enumerate(self.entries):
            if epoch != pos.epoch:
                continue
            end = self.entries[i + 1][1] if i + 1 < len(self.entries) else head
            if pos.txid < base:
                return None
            return pos.txid <= end
        return None

    def reach(self, pos: Position, head: int) -> Reach:
        """Where ``pos`` (a write's or a read-your-writes token's (epoch, txid)) stands on
        this lineage, whose last txid here is ``head``.

        Excluded when an epoch newer than ``pos.epoch`` began at or below ``pos.txid``: the
        lineage's record at that txid was written by that newer epoch, so the write the
        position names (the primary of ``pos.epoch`` made it) is not in this history and no
        record that arrives later can put it there. A txid alone cannot tell: the new
        primary's txid N is another write than the old one's txid N.

        Otherwise reached once ``head`` is at ``pos.txid``, except for an epoch newer than any
        this lineage holds a record of: until one arrives, this copy's txid N may be another
        write than that epoch's (a deposed primary's diverged tail), so it waits. An epoch the
        lineage skipped, or one older than its first entry (history from before the file
        existed), is judged by the txid alone, as is epoch 0 (a token that names no epoch).
        """
        if pos.epoch != 0 and pos.txid != 0:
            if any(epoch > pos.epoch and base < pos.txid for epoch, base in self.entries):
                return Reach.EXCLUDED
            if not self.entries or pos.epoch > self.entries[-1][0]:
                return Reach.NOT_YET
        return Reach.REACHED if head >= pos.txid else Reach.NOT_YET


def _extends(entries: Sequence[Entry], rec: TxRecord) -> bool:
    """Whether ``rec`` continues the last stretch of ``entries``."""
    return bool(entries) and entries[-1][0] == rec.epoch and entries[-1][1] < rec.txid


def _ordered(entries: Sequence[Entry]) -> bool:
    """Epochs strictly increasing, bases never decreasing."""
    return all(e1 < e2 and b1 <= b2 for (e1, b1), (e2, b2) in itertools.pairwise(entries))
