"""Apply on a replica: records become SQLite transactions on the replica file.

Pages are written with ``INSERT INTO sqlite_dbpage`` inside an ordinary transaction, so the
replica stays in WAL mode, readers of any SQLite library see each batch whole or not at all,
and a crash mid-apply rolls back like any SQLite transaction. Rules learnt the hard way
(../shared/DESIGN.md):

* page 1 is written last (earlier, the next statement re-reads the schema from a new page 1
  while other pages are old: "malformed database schema");
* a shrinking database is truncated in the same transaction (a NULL page deletes it and all
  after it);
* the applying connection is never used for reads served to anyone.

Every batch is checked before a byte is written: txids follow the position, the first record's
pre-apply checksum equals the replica's checksum, and the checksum the pages produce equals each
record's post-apply checksum. Otherwise nothing is applied and :class:`DivergenceError` is
raised. Writes to the replica file by anyone else are detected through ``PRAGMA data_version``
and confirmed by a rescan (another process's checkpoint also bumps it, harmlessly).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from litecluster.engine import faults
from litecluster.engine.checksum import HashTxn, PageHashes, format_checksum, page_hash, zero_page
from litecluster.engine.position import Position, PositionFile
from litecluster.engine.record import RecordKind, TxRecord
from litecluster.engine.sqlite import Connection, connect, has_dbpage, pragma_int
from litecluster.errors import (
    DivergenceError,
    LocalWriteError,
    ReplicaError,
    SnapshotCorruptError,
    SnapshotError,
    SnapshotRequiredError,
    SQLiteUnsupportedError,
)

log = logging.getLogger("litecluster.apply")

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ReplicaConfig:
    durable: bool = True
    """fsync the position file and commit with synchronous=FULL. False trades a re-snapshot after
    a power loss for fewer fsyncs; process crashes are safe either way."""
    busy_timeout_ms: int = 5000


def lock_byte_page(page_size: int) -> int:
    """The page holding SQLite's lock bytes (offset 1 GiB): never written, refused by
    sqlite_dbpage. Both sides hash it as SQLite reports it, so skipping it keeps checksums."""
    return 0x40000000 // page_size + 1


def merge_batch(
    hashes: PageHashes, records: Sequence[TxRecord], db: str
) -> tuple[HashTxn, dict[int, bytes]]:
    """Check that ``records`` follow ``hashes`` and merge their pages; nothing is written.

    Returns the tentative hashes after the batch and the final image of every page written.
    Raises :class:`DivergenceError` when a record's pre- or post-apply checksum does not hold.
    """
    txn = hashes.begin()
    final: dict[int, bytes] = {}
    for rec in records:
        if rec.pre_checksum != txn.checksum:
            raise _divergence(
                "pre-apply checksum mismatch", db, rec, rec.pre_checksum, txn.checksum
            )
        if rec.db_size < txn.size:
            for pgno in [p for p in final if p > rec.db_size]:
                del final[pgno]
        txn.resize(rec.db_size, written=(p for p, _ in rec.pages))
        for pgno, data in rec.pages:
            if not 1 <= pgno <= rec.db_size or len(data) != rec.page_size:
                raise ReplicaError("malformed page in record", txid=rec.txid, pgno=pgno)
            txn.set_page(pgno, page_hash(pgno, data))
            final[pgno] = data
        if txn.checksum != rec.post_checksum:
            raise _divergence(
                "post-apply checksum mismatch", db, rec, rec.post_checksum, txn.checksum
            )
    return txn, final


def _divergence(why: str, db: str, rec: TxRecord, expected: int, found: int) -> DivergenceError:
    return DivergenceError(
        why, db=db, txid=rec.txid, expected=format_checksum(expected), found=format_checksum(found)
    )


def write_batch(
    conn: Connection, page_size: int, min_size: int, size: int, pages: dict[int, bytes]
) -> None:
    """Inside an open write transaction on ``conn``: write a merged batch through sqlite_dbpage.

    Pages the database grew by without writing are zero pages; page 1 goes last; the lock-byte
    page is skipped; a shrink is cut by a truncation that must be the transaction's last
    statement (sqlite_dbpage forgets a pending truncation as soon as any page is written after
    it, and ignores one in the statement that writes page 1). That statement re-reads the
    schema, so the caller drops the connection's page cache before the transaction.
    """
    current = pragma_int(conn, "page_count")
    zero = zero_page(page_size)
    fill = [(p, zero) for p in range(min_size + 1, size + 1) if p not in pages]
    rows = fill + sorted(pages.items(), key=lambda kv: (kv[0] == 1, kv[0]))
    lock_page = lock_byte_page(page_size)
    if size >= lock_page:
        rows = [r for r in rows if r[0] != lock_page]
    conn.executemany("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?, ?)", rows)
    if size < current:
        truncate(conn, size)


def truncate(conn: Connection, size: int) -> None:
    """Cut the database to ``size`` pages at COMMIT (see :func:`write_batch` for the order)."""
    conn.execute("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?, NULL)", (size + 1,))


def forget_cache(conn: Connection) -> None:
    """Drop a connection's cached pages after (or before) writing through sqlite_dbpage.

    Pages written with sqlite_dbpage bypass the b-tree layer, so b-tree pages the connection
    parsed earlier keep their old decoded contents; the next schema reload then reads a mix
    ("malformed database schema ... already exists"). Releasing the unused page cache makes
    every page be read and parsed afresh.
    """
    conn.execute("PRAGMA shrink_memory").fetchall()


class Replica:
    """One replica database file and its position."""

    def __init__(
        self, db_path: str | os.PathLike[str], config: ReplicaConfig | None = None
    ) -> None:
        self.db_path = Path(db_path)
        self.config = config or ReplicaConfig()
        self._lock = threading.RLock()
        self.conn: Connection = connect(self.db_path, busy_timeout_ms=self.config.busy_timeout_ms)
        if not has_dbpage(self.conn):
            raise SQLiteUnsupportedError(
                "this SQLite build has no sqlite_dbpage table", hint="use sqlean-py"
            )
        self.conn.execute(f"PRAGMA synchronous={'FULL' if self.config.durable else 'NORMAL'}")
        self.posfile = PositionFile(str(self.db_path) + ".lcpos", fsync=self.config.durable)
        self.page_size = pragma_int(self.conn, "page_size")
        self.hashes = PageHashes(self.page_size)
        self._position = Position()
        self.diverged: DivergenceError | None = None
        self.applied_records = 0
        self._data_version = pragma_int(self.conn, "data_version")
        self._recover()

    # ---- open ------------------------------------------------------------------------------

    def _scan(self) -> PageHashes:
        """Hash the file in one read transaction; remember the data_version of that view."""
        self.conn.execute("BEGIN")
        try:
            hashes = PageHashes.scan(self.conn, self.page_size)
            self._data_version = pragma_int(self.conn, "data_version")
            return hashes
        finally:
            self.conn.execute("ROLLBACK")

    def _recover(self) -> None:
        state = self.posfile.state
        empty = pragma_int(self.conn, "page_count") == 0
        if empty:
            self.hashes = PageHashes(self.page_size)
        if state is None:
            if not empty:
                self.hashes = self._scan()
            self._position = Position(0, 0, self.hashes.checksum)
            return
        # The per-page hashes are needed to apply incrementally anyway, so the recorded position
        # is always checked against the file: offline edits and crashes mid-batch both show here.
        self.hashes = self._scan() if not empty else PageHashes(self.page_size)
        found = self.hashes.checksum
        if state.pending is not None and found == state.pending.checksum:
            self._position = state.pending
            self.posfile.write(state.pending, self.page_size)
            log.info(
                "replica.recovered db=%s position=%s (batch committed before the crash)",
                self.db_path,
                state.pending,
            )
        elif found == state.committed.checksum:
            self._position = state.committed
            if state.pending is not None:
                self.posfile.write(state.committed, self.page_size)
                log.info(
                    "replica.recovered db=%s position=%s (batch rolled back)",
                    self.db_path,
                    state.committed,
                )
        else:
            self._position = Position(0, 0, found)
            self.diverged = LocalWriteError(
                "replica file does not match its recorded position",
                file=str(self.db_path),
                recorded=str(state.committed),
                found=format_checksum(found),
            )
            log.error(
                "replica.diverged db=%s recorded=%s found=%s",
                self.db_path,
                state.committed,
                format_checksum(found),
            )

    @property
    def position(self) -> Position:
        """The last committed position. Read without the lock: it is one immutable object,
        replaced only after its transaction committed, and a caller on an event loop must not
        wait out a snapshot install (seconds) or a large batch that holds the lock."""
        return self._position

    @contextlib.contextmanager
    def frozen(self) -> Iterator[tuple[Position, Connection]]:
        """A read transaction on this file at a known position (for backups): applying waits
        only while the view opens, not while the caller reads it."""
        conn = connect(self.db_path, readonly=True, busy_timeout_ms=self.config.busy_timeout_ms)
        try:
            with self._lock:
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
                pos = self._position
            yield pos, conn
        finally:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            conn.close()

    # ---- apply -----------------------------------------------------------------------------

    def _check_local_writes(self) -> None:
        """Inside the write transaction, where nobody else can commit until it ends.

        ``data_version`` moves only for other connections' commits (and checkpoints), so a value
        read here, kept until the next apply, cannot absorb someone else's write.
        """
        version = pragma_int(self.conn, "data_version")
        if version == self._data_version:
            return
        found = PageHashes.scan(self.conn, self.page_size)
        if found.checksum == self.hashes.checksum:
            self._data_version = version  # another process checkpointed; contents unchanged
            return
        self.diverged = LocalWriteError(
            "someone else wrote to the replica database",
            file=str(self.db_path),
            position=str(self._position),
            found=format_checksum(found.checksum),
        )
        self._position = Position(0, 0, found.checksum)
        self.hashes = found
        raise self.diverged

    def apply(self, records: Sequence[TxRecord]) -> Position:
        """Apply consecutive records in one SQLite transaction; all or nothing."""
        if not records:
            return self.position
        with self._lock:
            if self.diverged is not None:
                raise self.diverged
            reset_at = next((i for i, r in enumerate(records) if r.kind == RecordKind.RESET), None)
            if reset_at is not None:
                if reset_at:
                    self.apply(records[:reset_at])
                raise SnapshotRequiredError(
                    "the primary's log restarts here; a snapshot is needed",
                    txid=records[reset_at].txid,
                    db=str(self.db_path),
                )
            self._apply_locked(records)
            return self._position

    def _apply_locked(self, records: Sequence[TxRecord]) -> None:
        pos = self._position
        first = records[0]
        empty = not self.hashes.page_count and pragma_int(self.conn, "page_count") == 0
        if empty and pos.txid == 0 and first.txid == 1 and first.pre_checksum != pos.checksum:
            self.initialize(first.page_size)
            pos = self._position
        elif first.page_size != self.page_size and empty:
            self._set_page_size(first.page_size)
        if first.page_size != self.page_size:
            raise ReplicaError("record page size differs from the replica's", txid=first.txid,
                               record_page_size=first.page_size, replica_page_size=self.page_size)  # fmt: skip
        for i, rec in enumerate(records):
            if rec.txid != pos.txid + 1 + i:
                raise SnapshotRequiredError(
                    "record does not follow the replica's position",
                    db=str(self.db_path), position=str(pos), txid=rec.txid,
                )  # fmt: skip
            if rec.epoch < pos.epoch:
                raise ReplicaError(
                    "record from an older epoch",
                    txid=rec.txid,
                    epoch=rec.epoch,
                    replica_epoch=pos.epoch,
                )
        txn, final = merge_batch(self.hashes, records, str(self.db_path))
        last = records[-1]
        target = Position(last.epoch, last.txid, last.post_checksum)
        self._write_pages(txn.min_size, txn.size, final, target)
        txn.commit()
        self._position = target
        self.applied_records += len(records)
        self.posfile.write(target, self.page_size)

    def _write_pages(
        self, min_size: int, size: int, pages: dict[int, bytes], target: Position
    ) -> None:
        """One SQLite transaction: truncate, write pages with page 1 last, commit."""
        before = self._position
        self.posfile.write(before, self.page_size, pending=target)
        if pragma_int(self.conn, "page_count") == 0:
            self.conn.execute("PRAGMA journal_mode=WAL").fetchall()
        forget_cache(self.conn)  # the truncation statement re-reads the schema after page 1
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self._check_local_writes()
            write_batch(self.conn, self.page_size, min_size, size, pages)
            faults.crashpoint("apply.before_commit")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            # The recorded position stays the one the file had before this batch, also when
            # _check_local_writes has just marked the replica diverged: on reopen the file no
            # longer matches it, so the divergence is found again.
            self.posfile.write(before, self.page_size)
            raise
        faults.crashpoint("apply.after_commit")
        forget_cache(self.conn)

    def initialize(self, page_size: int) -> None:
        """Turn an empty replica file into a new WAL database, as capture does to a new primary
        file: ``journal_mode=WAL`` writes page 1 at once, outside any transaction, so the
        primary's txlog starts after that page. The header SQLite writes is the same on both
        sides (the fields that differ per copy are left out of checksums), so the replica's
        position 0 then matches the primary's and it can follow the log from txid 1."""
        with self._lock:
            if pragma_int(self.conn, "page_count") != 0:
                return
            self._set_page_size(page_size)
            self.conn.execute("PRAGMA journal_mode=WAL").fetchall()
            self.hashes = self._scan()
            self._position = Position(0, 0, self.hashes.checksum)
            self.posfile.write(self._position, self.page_size)

    def adopt(self, position: Position) -> bool:
        """Take ``position`` as the file's when the file's checksum is the one it names.

        A node that was primary knows its file's position from its own txlog (the replica
        position file is stale by then); with that position, the new primary can tell whether
        the file is part of its history or holds writes nobody else has.
        """
        with self._lock:
            if position.checksum != self.hashes.checksum:
                return False
            self._position = position
            self.diverged = None
            self.posfile.write(position, self.page_size)
            return True

    def _set_page_size(self, page_size: int) -> None:
        self.conn.execute(f"PRAGMA page_size={int(page_size)}")
        self.page_size = pragma_int(self.conn, "page_size")
        if self.page_size != page_size:
            raise ReplicaError(
                "could not set the replica's page size", wanted=page_size, got=self.page_size
            )
        self.hashes.page_size = page_size

    # ---- snapshots -------------------------------------------------------------------------

    def replace(
        self,
        position: Position,
        page_size: int,
        page_count: int,
        pages: Iterable[tuple[int, bytes]],
        progress: ProgressFn | None = None,
    ) -> Position:
        """Replace the whole database with ``pages`` in ONE transaction (snapshot install).

        Readers see the old database or the new one. The pages must hash to
        ``position.checksum``; otherwise the transaction is rolled back and nothing changes.
        """
        with self._lock:
            current = pragma_int(self.conn, "page_count")
            if current and page_size != self.page_size:
                raise SnapshotError(
                    "snapshot page size differs from the replica file's",
                    snapshot_page_size=page_size, replica_page_size=self.page_size,
                    hint="remove the replica file (and its -wal, -shm, .lcpos) and install again",
                )  # fmt: skip
            if current == 0:
                # Initialise (page 1 written) and record the file as it then is, BEFORE the
                # intent: otherwise a crash before COMMIT leaves a file matching neither the
                # committed position (empty) nor the snapshot, which the next open reports as a
                # foreign write.
                self.initialize(page_size)
                current = pragma_int(self.conn, "page_count")
            self.posfile.write(self._position, self.page_size, pending=position)
            hashes = PageHashes(page_size)
            page1: bytes | None = None
            forget_cache(self.conn)
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                version = pragma_int(self.conn, "data_version")  # see _check_local_writes
                expect = 1
                lock_page = lock_byte_page(page_size)
                batch: list[tuple[int, bytes]] = []
                for pgno, data in pages:
                    if pgno != expect or len(data) != page_size:
                        raise SnapshotError(
                            "snapshot pages out of order or malformed", pgno=pgno, expected=expect
                        )
                    expect += 1
                    hashes._append(page_hash(pgno, data))
                    if pgno == 1:
                        page1 = data
                        continue
                    if pgno == lock_page:
                        continue  # SQLite never stores data there and refuses to write it
                    batch.append((pgno, data))
                    if len(batch) >= 256:
                        self.conn.executemany(
                            "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?, ?)", batch
                        )
                        batch.clear()
                        if progress:
                            progress(pgno, page_count)
                if batch:
                    self.conn.executemany(
                        "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?, ?)", batch
                    )
                if expect - 1 != page_count or page1 is None:
                    raise SnapshotError(
                        "snapshot ended early", pages=expect - 1, expected=page_count
                    )
                if hashes.checksum != position.checksum:
                    raise SnapshotCorruptError(
                        "snapshot pages do not match the snapshot's checksum",
                        expected=format_checksum(position.checksum), found=format_checksum(hashes.checksum),
                    )  # fmt: skip
                self.conn.execute("INSERT INTO sqlite_dbpage(pgno, data) VALUES (1, ?)", (page1,))
                if page_count < current:
                    truncate(self.conn, page_count)
                faults.crashpoint("snapshot.install.before_commit")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                self.posfile.write(self._position, self.page_size)
                raise
            if progress:
                progress(page_count, page_count)
            self.hashes = hashes
            self._position = position
            self.diverged = None
            self.posfile.write(position, self.page_size)
            self._data_version = version
            self.checkpoint()
            return position

    # ---- maintenance -------------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Copy the replica's WAL into its file (readers are never blocked by this)."""
        with self._lock:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def verify(self) -> bool:
        """Rescan the file and compare with the tracked checksum."""
        with self._lock:
            return self._scan().checksum == self.hashes.checksum

    def close(self) -> None:
        with self._lock:
            self.conn.close()
            self.posfile.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_fresh: dict[int, int] = {}


def fresh_database_checksum(page_size: int, directory: str | os.PathLike[str]) -> int:
    """The checksum of a new, empty WAL database of ``page_size`` (made once in ``directory``)."""
    if page_size not in _fresh:
        path = Path(directory) / f"fresh-{page_size}-{os.getpid()}.db"
        try:
            with Replica(path, ReplicaConfig(durable=False)) as r:
                r.initialize(page_size)
                _fresh[page_size] = r.hashes.checksum
        finally:
            for suffix in ("", "-wal", "-shm", ".lcpos"):
                Path(str(path) + suffix).unlink(missing_ok=True)
    return _fresh[page_size]
