"""What capture's recovery reads besides the log: the log's durable starting point (the BASE
file beside it) and the database's state before the WAL transactions not yet captured.

Position 0 of a new log must be durable before anything can be captured after it: a crash
before the first record is durable would otherwise fold the transactions committed meanwhile
into a new "position 0" at the next start, and a replica or snapshot already at position 0
would no longer be in the log's history. The base is kept beside the log.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import BinaryIO

import xxhash

from litecluster.engine.checksum import PageHashes, page_hash, zero_page
from litecluster.engine.record import RecordKind, TxRecord
from litecluster.engine.txlog import write_durably
from litecluster.engine.wal import WalHeader, WalMark, WalTransaction, iter_transactions
from litecluster.errors import WalError

_BASE = struct.Struct(">8sQQIIIIIQ")
_MAGIC = b"LCBASE01"


def save_base(log_dir: Path, epoch: int, hashes: PageHashes, wal: WalMark, txid: int) -> None:
    """Durably record that the log starts at ``txid`` with the database at ``hashes``."""
    body = _BASE.pack(
        _MAGIC, epoch, hashes.checksum, hashes.page_count, wal.salt1, wal.salt2, wal.ckpt_seq,
        wal.frame, txid,
    )  # fmt: skip
    write_durably(log_dir / "BASE", body + struct.pack(">Q", xxhash.xxh3_64_intdigest(body)))


def load_base(log_dir: Path, page_size: int) -> TxRecord | None:
    """The log's starting point as a RESET record (None when the log has no BASE)."""
    path = log_dir / "BASE"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    body = raw[: _BASE.size]
    if len(raw) != _BASE.size + 8 or raw[_BASE.size :] != struct.pack(
        ">Q", xxhash.xxh3_64_intdigest(body)
    ):
        raise WalError("the txlog's BASE file is damaged", file=str(path))
    _magic, epoch, checksum, pages, salt1, salt2, seq, frame, txid = _BASE.unpack(body)
    return TxRecord(
        epoch=epoch, txid=txid, page_size=page_size, db_size=pages,
        pre_checksum=checksum, post_checksum=checksum, timestamp_ns=0, pages=(),
        kind=RecordKind.RESET, wal=WalMark(salt1, salt2, seq, frame),
    )  # fmt: skip


def uncaptured(
    last: TxRecord, header: WalHeader | None, txs: list[WalTransaction]
) -> list[WalTransaction]:
    """The WAL transactions after the one ``last`` recorded (all of them in a new generation)."""
    if header is None:
        return []
    if (header.salt1, header.salt2) == (last.wal.salt1, last.wal.salt2):
        return [tx for tx in txs if tx.first_frame > last.wal.frame]
    return txs


def state_before(
    db_path: Path,
    page_size: int,
    wal: BinaryIO | None,
    now: PageHashes,
    pending: list[WalTransaction],
    last: TxRecord,
    header: WalHeader | None,
) -> PageHashes:
    """Hashes of the database before ``pending`` (the WAL transactions not yet captured).

    Pages the pending transactions touched are read as they were: from earlier frames of the
    same WAL generation, else from the database file (which capture never lets a checkpoint
    fill past what it captured). The caller checks the result against the last record's
    checksum, so a wrong guess is detected, never trusted.
    """
    if not pending:
        return now
    assert header is not None
    first = pending[0].first_frame
    touched = set().union(*(tx.pages for tx in pending))
    size_before = last.db_size
    touched.update(range(now.page_count + 1, size_before + 1))  # pages the txns truncated
    older: dict[int, bytes] = {}
    if first > 1 and wal is not None:
        for tx in iter_transactions(wal, header, 0, (header.checksum1, header.checksum2)):
            if tx.first_frame >= first:
                break
            older.update((p, d) for p, d in tx.pages.items() if p in touched)
    before = now.copy()
    txn = before.begin()
    txn.resize(size_before)
    fd = _database_fd(db_path)
    for pgno in sorted(p for p in touched if p <= size_before):
        data = older.get(pgno)
        if data is None:
            data = os.pread(fd, page_size, (pgno - 1) * page_size)
            data = data.ljust(page_size, b"\0") if data else zero_page(page_size)
        txn.set_page(pgno, page_hash(pgno, data))
    txn.commit()
    return before


_HELD_FDS: dict[tuple[int, int], int] = {}
_HELD_LOCK = threading.Lock()


def _database_fd(db_path: Path) -> int:
    """A descriptor of the database file for raw reads, kept open for the process's lifetime.

    Never closed: closing any descriptor of a file drops every POSIX lock this process holds on
    it, including the shared lock each of capture's connections keeps on a WAL database.
    Without those locks another process's connection believes it is the last one when it
    closes: it checkpoints past capture's pin and deletes the WAL under it. (SQLite itself
    keeps such descriptors open for the same reason; reading through an ``immutable``
    connection instead would parse the file's schema, which a checkpoint interrupted by a
    crash leaves half-copied.) One descriptor per database file, so the cost is bounded.
    """
    with _HELD_LOCK:
        st = os.stat(db_path)
        held = _HELD_FDS.get((st.st_dev, st.st_ino))
        if held is not None:
            return held
        fd = os.open(db_path, os.O_RDONLY)
        st = os.fstat(fd)  # the file opened, should it have been replaced since the stat
        _HELD_FDS.setdefault((st.st_dev, st.st_ino), fd)
        return fd
