"""Positions and the replica's position file.

A position is (epoch, txid, checksum): the checksum of the database after transaction ``txid``
(see :mod:`checksum`). Two copies at the same txid with different checksums have diverged.

The replica keeps its position in a small file beside the database, ``<db>.lcpos``, with two
checksummed slots written alternately (a torn write can only damage the slot being written, and
the other one still holds the previous state). Before applying a batch, the replica writes an
*intent* (the position it had and the position it is moving to); after the SQLite commit it
writes the new position (only the intent is fsynced). Recovery rule after a crash: the database checksum, recomputed from
the file, must equal either the committed position or the intent's target; it names which one
holds. Because the checksum identifies the contents, this is exact even when the crash fell
between the SQLite commit and the position write. Any other checksum means the file was changed
behind the replica's back: :class:`DivergenceError`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import xxhash

from litecluster.errors import ReplicaError


@dataclass(frozen=True, order=True)
class Position:
    epoch: int = 0
    txid: int = 0
    checksum: int = 0

    def __str__(self) -> str:
        return f"{self.epoch}:{self.txid}:{self.checksum:016x}"


ZERO = Position()

_SLOT = struct.Struct(">4sBxxxQIQQQBxxxQQQQ")
_SLOT_SIZE = 128
_MAGIC = b"LCPS"


@dataclass(frozen=True)
class PositionState:
    committed: Position
    page_size: int
    pending: Position | None = None
    seq: int = 0


class PositionFile:
    """The two-slot position file of one replica database."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self.state = self._load()

    def _load(self) -> PositionState | None:
        best: PositionState | None = None
        for slot in (0, 1):
            raw = os.pread(self._fd, _SLOT_SIZE, slot * _SLOT_SIZE)
            if len(raw) < _SLOT.size + 8:
                continue
            (check,) = struct.unpack_from(">Q", raw, _SLOT.size)
            if check != xxhash.xxh3_64_intdigest(raw[: _SLOT.size]):
                continue
            (magic, version, seq, page_size, epoch, txid, checksum, has_pending,
             p_epoch, p_txid, p_checksum, _reserved) = _SLOT.unpack_from(raw)  # fmt: skip
            if magic != _MAGIC or version != 1:
                continue
            state = PositionState(
                committed=Position(epoch, txid, checksum),
                page_size=page_size,
                pending=Position(p_epoch, p_txid, p_checksum) if has_pending else None,
                seq=seq,
            )
            if best is None or state.seq > best.seq:
                best = state
        if best is None and os.fstat(self._fd).st_size > 0:
            raise ReplicaError(
                "replica position file is unreadable",
                file=str(self.path),
                hint="delete it to make the replica verify its contents and re-snapshot",
            )
        return best

    def write(self, committed: Position, page_size: int, pending: Position | None = None) -> None:
        """Write the next slot; only an intent (``pending``) is fsynced.

        An intent must be durable before the SQLite transaction it announces, so that after a
        power loss the file always names both candidate positions. Writes without an intent
        need no fsync: losing one leaves the previous intent, which still resolves correctly.
        """
        seq = (self.state.seq if self.state else 0) + 1
        p = pending or Position()
        body = _SLOT.pack(
            _MAGIC, 1, seq, page_size, committed.epoch, committed.txid, committed.checksum,
            1 if pending else 0, p.epoch, p.txid, p.checksum, 0,
        )  # fmt: skip
        raw = body + struct.pack(">Q", xxhash.xxh3_64_intdigest(body))
        os.pwrite(self._fd, raw.ljust(_SLOT_SIZE, b"\0"), (seq % 2) * _SLOT_SIZE)
        if self.fsync and pending is not None:
            os.fdatasync(self._fd)
        self.state = PositionState(committed, page_size, pending, seq)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
