"""Capture on the primary: every committed transaction becomes exactly one txlog record.

How nothing is lost (see docs/architecture.md, "Capture"):

* Capture reads the WAL file directly (:mod:`wal`) and holds a read transaction, the *pin*, on
  the primary at all times. While any reader holds a WAL read mark, SQLite cannot restart the
  WAL (overwrite it from the start), and a checkpoint cannot copy frames past the oldest mark
  into the database. So whatever other processes do, including their own autocheckpoints, the
  WAL only grows while pinned, and capture reads it at leisure. The pin moves forward after each
  poll that found commits, by opening the new pin before releasing the old one.
* Capture restarts the WAL in a bracket: under the write lock it captures to the end, makes
  the records durable, moves the pin to the end and copies the WAL into the database (passive
  checkpoint); then it commits a no-op rewrite of ``user_version``, which makes SQLite start
  the WAL over from frame 1 (see :meth:`Capture.checkpoint` for why at most one restart can
  happen unseen). The WAL therefore holds about ``checkpoint_frames`` frames while capture is
  healthy.
* Every WAL restart increments salt-1 by one. A jump of more than one means a generation was
  written and erased without capture seeing it. That is never silent: capture rescans the
  database and appends a RESET record, which tells replicas to re-snapshot.

The node's own writer uses :meth:`Capture.connect_writer` (``wal_autocheckpoint=0``) and holds
:attr:`Capture.writer_lock` around each write transaction.

:class:`Capture` holds the locks and the position; the parts it calls take no locks of their
own: :mod:`capture_wal` (the WAL file and the pin), :mod:`capture_checkpoint` (the restart's
SQLite steps and schedule), :mod:`capture_rollforward`, :mod:`capture_state` (what recovery
reads besides the log) and :mod:`capture_config`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from litecluster.engine import faults
from litecluster.engine.capture.checkpoint import (
    CheckpointSchedule,
    passive_checkpoint,
    restart_wal,
)
from litecluster.engine.capture.config import CaptureConfig as CaptureConfig  # re-exported
from litecluster.engine.capture.pin import PinnedWal
from litecluster.engine.capture.recovery import load_base, save_base, state_before, uncaptured
from litecluster.engine.capture.rollforward import roll_forward
from litecluster.engine.checksum import PageHashes, page_hash
from litecluster.engine.position import Position
from litecluster.engine.record import RecordKind, TxRecord
from litecluster.engine.sqlite import Connection, OperationalError, connect, has_dbpage, pragma_int
from litecluster.engine.txlog import TxLog
from litecluster.engine.wal import (
    WalHeader,
    WalMark,
    WalTransaction,
    iter_transactions,
    resume_checksum,
)
from litecluster.engine.worker import BackgroundLoop
from litecluster.errors import CaptureGapError, ConfigError, SQLiteUnsupportedError, WalError
from litecluster.errors import committed_not_durable as committed_not_durable  # re-exported

log = logging.getLogger("litecluster.capture")


class _GapFoundError(CaptureGapError):
    """A poll found missed WAL generations without holding the write lock (see ``_poll``)."""


def _mark(header: WalHeader, frame: int) -> WalMark:
    return WalMark(header.salt1, header.salt2, header.ckpt_seq, frame)


class Capture(BackgroundLoop):
    """Turns the committed transactions of one primary database into txlog records."""

    def __init__(
        self, db_path: str | os.PathLike[str], txlog: TxLog, config: CaptureConfig | None = None
    ) -> None:
        self.db_path = Path(db_path)
        self.wal_path = Path(str(self.db_path) + "-wal")
        self.txlog = txlog
        self.config = config or CaptureConfig()
        # Lock order: writer_lock, then _lock, then SQLite's write lock. A thread that holds
        # _lock never waits for writer_lock unless it took writer_lock first: the writer holds
        # writer_lock around its whole transaction and takes _lock in commit(), so the reverse
        # order deadlocks (a WAL gap found by a poll once did). A poll that finds a gap without
        # the write lock therefore lets go of _lock before taking both (see _poll).
        self._lock = threading.RLock()
        self.writer_lock = threading.RLock()
        """Held by this process's own writer around each write transaction. Capture takes it
        before the SQLite write lock, so in-process writers yield to a checkpoint instead of
        starving it (SQLite's busy handler is not fair). Order: writer_lock, then capture."""
        self._write_owner: int | None = None
        """The thread that holds SQLite's write lock for capture: through the control
        connection (_write_locked), or through the writer's connection (commit)."""
        self._schedule = CheckpointSchedule(
            self.config.checkpoint_frames, self.config.checkpoint_retry
        )
        super().__init__()
        self.thread_name = f"capture:{self.db_path.name}"
        self.error: BaseException | None = None
        self.listeners: list[Callable[[int], None]] = []
        """Called with the durable txid each time new records became durable (from the capture
        thread, under capture's lock: listeners must only hand the news on, e.g. wake a loop)."""
        self.resets = 0
        self.catch_ups = 0
        """Times a writer outran capture and was held back (the catch-up under the lock)."""
        self.checkpoints = 0
        self._ctl = self._open()
        if not has_dbpage(self._ctl):
            raise SQLiteUnsupportedError(
                "this SQLite build has no sqlite_dbpage table", hint="use sqlean-py"
            )
        mode = self._ctl.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
        if str(mode).lower() != "wal":
            raise SQLiteUnsupportedError(
                "the primary database cannot be put in WAL mode", file=str(self.db_path), mode=mode
            )
        self.page_size = pragma_int(self._ctl, "page_size")
        self._wal = PinnedWal(self.wal_path, self._open)
        self.hashes = PageHashes(self.page_size)
        self.txid = 0
        self.wal = WalMark()
        self._wal_checksum = (0, 0)
        self._annotations = b""
        """Set by commit() for the one transaction it commits; recovery never has any."""
        self._recover()
        self.published = Position(self.config.epoch, self.txid, self.hashes.checksum)
        """The position after the last capture round, readable without waiting for a round."""

    def _open(self) -> Connection:
        conn = connect(self.db_path, busy_timeout_ms=self.config.busy_timeout_ms)
        conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def connect_writer(self, synchronous: str = "FULL") -> Connection:
        """A connection for this process's writer: no autocheckpoint (capture owns it).

        ``synchronous="NORMAL"`` skips the WAL fsync at each commit. That is safe when a write
        is acknowledged only once capture has made its record durable (``poll()`` returned, or
        ``txlog.durable_txid`` passed it): after a power loss that cuts the WAL, capture rolls
        the database forward from the log (see ``_roll_forward``).
        """
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError("writer synchronous must be FULL, NORMAL or EXTRA", value=synchronous)
        conn = self._open()
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        return conn

    @property
    def position(self) -> Position:
        with self._lock:
            return Position(self.config.epoch, self.txid, self.hashes.checksum)

    # ---- write lock and pin ------------------------------------------------------------------

    def _begin_immediate(self, busy_ms: int) -> bool:
        """BEGIN IMMEDIATE on the control connection, retrying every 0.2 ms until ``busy_ms``.

        SQLite's own busy handler sleeps 1, 2, 5, ... 100 ms between attempts; against another
        process that commits in a tight loop (the lock free for microseconds between its
        transactions) it almost never wins. Frequent short attempts do.
        """
        deadline = time.monotonic() + busy_ms / 1000
        self._ctl.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    self._ctl.execute("BEGIN IMMEDIATE")
                    return True
                except OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.0002)
        finally:
            self._ctl.execute(f"PRAGMA busy_timeout={self.config.busy_timeout_ms}")

    @contextlib.contextmanager
    def _write_locked(self, busy_ms: int, busy_error: WalError | None = None) -> Iterator[bool]:
        """Hold this process's writers and SQLite's write lock; yields False if it was busy,
        or raises ``busy_error`` when the caller cannot do without the lock."""
        with self.writer_lock, self._lock:
            if self._write_owner == threading.get_ident():
                yield True  # already held (by commit's writer connection, or an outer bracket)
                return
            if not self._begin_immediate(busy_ms):
                if busy_error is not None:
                    raise busy_error
                yield False
                return
            self._write_owner = threading.get_ident()
            try:
                yield True
            finally:
                self._write_owner = None
                self._ctl.execute("ROLLBACK")

    def _unpin(self) -> None:
        """Release the pin (the next poll pins again)."""
        self._wal.unpin()

    # ---- recovery ----------------------------------------------------------------------------

    def _scan_locked(self) -> tuple[PageHashes, WalHeader | None, list[WalTransaction]]:
        """Under the write lock: hashes of the current database and the WAL's committed txns."""
        hashes = PageHashes.scan(self._ctl, self.page_size)
        return (hashes, *self._wal.transactions())

    def _recover(self) -> None:
        busy = WalError(
            "could not lock the primary to start capture",
            db=str(self.db_path),
            hint="another process holds a long write transaction; retry",
        )
        with self._write_locked(self.config.busy_timeout_ms, busy):
            self._recover_locked()
        self._wal.pin()

    def _recover_locked(self) -> None:
        last = self.txlog.last()
        hashes, header, txs = self._scan_locked()
        end = txs[-1].commit_frame if txs else 0
        if last is None:
            last = load_base(self.txlog.dir, self.page_size)
        if last is None:
            # A new log: the database as it is now is the log's starting position (position 0 of
            # a new database, or the position a promoted replica had reached).
            self.txid = max(self.txlog.last_txid, self.config.start_txid)
            self.hashes = hashes
            self._set_wal(header, end)
            save_base(self.txlog.dir, self.config.epoch, hashes, self.wal, self.txid)
            log.info(
                "capture.start db=%s txid=%d checksum=%016x",
                self.db_path,
                self.txid,
                hashes.checksum,
            )
            return
        self.txid = last.txid
        pending = uncaptured(last, header, txs)
        before = state_before(
            self.db_path, self.page_size, self._wal.file(), hashes, pending, last, header
        )
        if before.checksum != last.post_checksum:
            if not pending and self._roll_forward(hashes, last):
                return
            self._reset(hashes, header, end, "database changed while capture was not running")
            return
        self.hashes = before
        self._set_wal(header, pending[0].first_frame - 1 if pending else end)
        records = [self._record(tx) for tx in pending]
        if records:
            self.txlog.append_sync(records)
            self._set_wal(header, self.wal.frame)
            log.info(
                "capture.recovered db=%s records=%d txid=%d", self.db_path, len(records), self.txid
            )
        if self.hashes.checksum != hashes.checksum:
            self._reset(hashes, header, end, "recovered state does not match the database")

    def _roll_forward(self, hashes: PageHashes, last: TxRecord) -> bool:
        """The database is behind its own log: re-apply the records it lost (see
        :mod:`capture_rollforward`). Called under the write lock; False when no record matches."""
        start = roll_forward(
            self._ctl, self.txlog, self.db_path, self.page_size, hashes, last.txid,
            self.config.roll_forward_records,
            lambda: self._begin_immediate(self.config.busy_timeout_ms),
        )  # fmt: skip
        if start is None:
            return False
        self.hashes = hashes
        self.txid = last.txid
        header, txs = self._wal.transactions()
        self._set_wal(header, txs[-1].commit_frame if txs else 0)  # our own frames: not captured
        log.warning(
            "capture.rolled_forward db=%s from_txid=%d to_txid=%d reason=%r",
            self.db_path, start, last.txid, "the database was behind its transaction log",
        )  # fmt: skip
        return True

    def _set_wal(self, header: WalHeader | None, frame: int) -> None:
        if header is None:
            self.wal = WalMark()
            self._wal_checksum = (0, 0)
            return
        self.wal = _mark(header, frame)
        f = self._wal.file()
        assert f is not None
        ck = resume_checksum(f, header, frame)
        assert ck is not None
        self._wal_checksum = ck

    def _reset(
        self, hashes: PageHashes, header: WalHeader | None, frame: int, why: str
    ) -> TxRecord:
        """Append a RESET record: the log cannot describe how the database got to ``hashes``."""
        self.resets += 1
        log.error(
            "capture.reset db=%s txid=%d reason=%r hint=replicas re-snapshot",
            self.db_path,
            self.txid + 1,
            why,
        )
        rec = TxRecord(
            epoch=self.config.epoch, txid=self.txid + 1, page_size=self.page_size,
            db_size=hashes.page_count, pre_checksum=self.hashes.checksum, post_checksum=hashes.checksum,
            timestamp_ns=time.time_ns(), pages=(), kind=RecordKind.RESET,
            wal=_mark(header, frame) if header else WalMark(),
        )  # fmt: skip
        self.txlog.append_sync([rec])
        self.txid = rec.txid
        self.hashes = hashes
        self._set_wal(header, frame)
        return rec

    # ---- capture -------------------------------------------------------------------------------

    def _record(self, tx: WalTransaction) -> TxRecord:
        txn = self.hashes.begin()
        pre = txn.checksum
        # A transaction can write a page and then truncate the database below it (autovacuum,
        # incremental_vacuum): its frame is in the WAL but the page is not in the database.
        pages = tuple(sorted((p, d) for p, d in tx.pages.items() if p <= tx.db_size))
        txn.resize(tx.db_size, written=(p for p, _ in pages))
        for pgno, data in pages:
            txn.set_page(pgno, page_hash(pgno, data))
        txn.commit()
        self.txid += 1
        self.wal = tx.end
        return TxRecord(
            epoch=self.config.epoch, txid=self.txid, page_size=self.page_size, db_size=tx.db_size,
            pre_checksum=pre, post_checksum=self.hashes.checksum, timestamp_ns=time.time_ns(),
            pages=pages, wal=tx.end, annotations=self._take_annotations(),
        )  # fmt: skip

    def _take_annotations(self) -> bytes:
        out, self._annotations = self._annotations, b""
        return out

    def commit(self, conn: Connection, annotations: bytes) -> list[TxRecord]:
        """COMMIT the write transaction open on ``conn`` (this process's writer, holding the
        SQLite write lock) and capture it with ``annotations`` on its record.

        Capture's lock is held across the COMMIT so that no poll reads the transaction before
        its annotations are set, and the commits before it are captured first so that the
        annotations land on this transaction's record and no other. The writer holds
        ``writer_lock`` already; taking it here keeps the lock order for any caller. The open
        transaction holds SQLite's write lock, so a WAL gap found before the COMMIT is rescanned
        right here (see ``_poll_locked``) instead of waiting for a lock this thread holds.
        """
        with self.writer_lock, self._lock:
            self._write_owner = threading.get_ident()
            try:
                self._poll_locked()
                self._annotations = annotations
                committed = False
                try:
                    conn.execute("COMMIT")
                    committed = True
                finally:
                    if not conn.in_transaction:
                        self._write_owner = None
                    try:
                        records = self.poll()
                    except Exception as exc:
                        if committed:
                            raise committed_not_durable(exc, self.db_path.stem) from exc
                        raise
                    finally:
                        self._annotations = b""
            finally:
                self._write_owner = None
        return records

    def _poll_locked(self, limit: int | None = None) -> list[TxRecord]:
        header = self._wal.header()
        f = self._wal.file()
        if header is None or f is None:
            return []
        records: list[TxRecord] = []
        if (header.salt1, header.salt2) != (self.wal.salt1, self.wal.salt2):
            # Every WAL restart sets salt-1 to the previous salt-1 plus one (walRestartHdr), whoever
            # restarts it. The header's checkpoint sequence is the restarting connection's own
            # counter (Wal.nCkpt), not a property of the file, so it cannot detect gaps.
            expected = (self.wal.salt1 + 1) & 0xFFFFFFFF
            if (self.wal.salt1 or self.wal.salt2) and header.salt1 != expected:
                if self._write_owner != threading.get_ident():
                    # The rescan needs the write lock; taking writer_lock while holding _lock
                    # would invert the lock order (see __init__).
                    raise _GapFoundError("WAL generations were missed", db=str(self.db_path))
                rec = self._gap(header)
                for listener in self.listeners:
                    listener(rec.txid)  # durable: _reset syncs the log
                return [rec]
            self.wal = _mark(header, 0)
            self._wal_checksum = (header.checksum1, header.checksum2)
        for tx in iter_transactions(f, header, self.wal.frame, self._wal_checksum):
            records.append(self._record(tx))
            self._wal_checksum = tx.checksum
            if limit is not None and len(records) >= limit:
                break
        if records:
            for rec in records:
                self.txlog.append(rec)
            faults.crashpoint("capture.before_sync")
            durable = self.txlog.sync()
            for listener in self.listeners:
                listener(durable)
        return records

    def _gap(self, header: WalHeader) -> TxRecord:
        """Rescan after missed WAL generations and append a RESET (under the write lock)."""
        self._wal.unpin()
        hashes, header2, txs = self._scan_locked()
        assert header2 is not None
        end = txs[-1].commit_frame if txs else 0
        missed = (header.salt1 - self.wal.salt1 - 1) & 0xFFFFFFFF
        rec = self._reset(hashes, header2, end, f"{missed} WAL generation(s) missed")
        self._wal.pin()
        return rec

    def _poll(self, limit: int | None = None) -> list[TxRecord]:
        """``_poll_locked`` for a thread holding no lock, or ``writer_lock`` (and perhaps
        ``_lock`` after it), never ``_lock`` alone: a gap is rescanned with the locks in order."""
        try:
            with self._lock:
                return self._poll_locked(limit)
        except _GapFoundError:
            pass
        busy = CaptureGapError(
            "WAL generations were missed and the primary could not be locked to rescan it",
            db=str(self.db_path),
        )
        with self._write_locked(self.config.busy_timeout_ms, busy):
            return self._poll_locked(limit)

    def poll_batch(self) -> list[TxRecord]:
        """Capture up to ``max_batch`` committed transactions; the returned records are durable."""
        records = self._poll(self.config.max_batch)
        with self._lock:
            if records or self._wal.pinned is None:
                # Re-pin after new frames: a pin opened on a fully checkpointed WAL holds read
                # mark 0, which does not block a restart; one opened after new frames does.
                self._wal.pin()
            self.published = Position(self.config.epoch, self.txid, self.hashes.checksum)
            return records

    def poll(self) -> list[TxRecord]:
        """Capture every transaction committed so far; the returned records are durable.

        When writers commit faster than capture keeps up, the write lock is taken (for as long
        as the backlog lasts) so that "so far" has an end.
        """
        records = self.poll_batch()
        if len(records) < self.config.max_batch:
            return records
        with self._write_locked(self.config.busy_timeout_ms):
            while len(batch := self.poll_batch()) == self.config.max_batch:
                records.extend(batch)
            records.extend(batch)
        return records

    def _catch_up(self) -> None:
        """Capture a backlog while holding the write lock (writers wait, in bounded time)."""
        self.catch_ups += 1
        with self._write_locked(self.config.busy_timeout_ms) as locked:
            if not locked:
                log.warning(
                    "capture.behind db=%s txid=%d (write lock busy)", self.db_path, self.txid
                )
            while len(self.poll_batch()) == self.config.max_batch and not self._stop.is_set():
                pass

    def checkpoint(self) -> bool:
        """Capture everything, copy the WAL into the database and restart the WAL.

        Returns True when the WAL was restarted; False when another process held the write lock
        or an old snapshot so the checkpoint could not complete (it is tried again later).

        Capture stays pinned throughout. Under the write lock it captures to the end, moves the
        pin there (a read mark at the end does not limit a checkpoint) and copies the WAL into
        the database. Once everything is copied, a read view opened still under the write lock
        uses read mark 0: it does not prevent the next writer (capture's no-op or any other
        process) from restarting the WAL, and it forbids any backfill, so at most one restart
        can happen before capture reads the new generation.
        """
        with self.writer_lock, self._lock:
            before = self._wal.header()
            complete = False
            with self._write_locked(self.config.checkpoint_busy_ms) as got:
                if got:
                    self._poll_locked()
                    self._wal.pin()
                    complete = passive_checkpoint(self._wal.spare(), self.config.checkpoint_busy_ms)
                    if complete:
                        self._wal.pin()  # read mark 0 (see above)
            if complete:
                restart_wal(self._ctl, self.config.busy_timeout_ms)
            self._poll()
            self._wal.pin()
            after = self._wal.header()
            restarted = (
                before is not None
                and after is not None
                and (after.salt1, after.salt2) != (before.salt1, before.salt2)
            )
            if restarted:
                self.checkpoints += 1
                self._schedule.succeeded()
            else:
                self._schedule.failed()  # retried soon, backing off (see CheckpointSchedule)
                log.info(
                    "capture.checkpoint_deferred db=%s wal_frames=%d", self.db_path, self.wal.frame
                )
            return restarted

    def maybe_checkpoint(self) -> bool:
        """Checkpoint when the WAL is past its threshold (and no recent attempt failed)."""
        return self._schedule.due(self.wal.frame) and self.checkpoint()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[tuple[Position, Connection]]:
        """A read transaction on the primary at a known position, for snapshots.

        Writers are blocked only while capture catches up and the read view opens; the view
        stays valid (and pins the WAL) for as long as the caller holds it.
        """
        conn = self._open()
        try:
            busy = WalError(
                "the primary's write lock was held too long to open a snapshot view",
                db=str(self.db_path),
                hint="retry; a long write transaction of another process is running",
            )
            with self._write_locked(self.config.busy_timeout_ms, busy):
                self._poll_locked()
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
                pos = Position(self.config.epoch, self.txid, self.hashes.checksum)
            with self._lock:
                self._wal.pin()
            yield pos, conn
        finally:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            conn.close()

    # ---- follower thread ----------------------------------------------------------------------

    def run(self) -> None:
        """Follow the WAL until :meth:`stop`; errors stop the loop and are kept in ``error``."""
        next_retention = time.monotonic() + self.config.retention_interval
        busy_until = 0.0
        full_rounds = 0
        try:
            while not self._stop.is_set():
                busy = time.monotonic() < busy_until
                self._wake.wait(
                    self.config.busy_poll_interval if busy else self.config.poll_interval
                )
                self._wake.clear()
                n = len(self.poll_batch())
                if n:
                    busy_until = time.monotonic() + self.config.busy_window
                full_rounds = full_rounds + 1 if n == self.config.max_batch else 0
                if full_rounds >= self.config.catch_up_rounds:
                    self._catch_up()
                    full_rounds = 0
                self.maybe_checkpoint()
                if time.monotonic() >= next_retention:
                    self.txlog.enforce_retention()
                    next_retention = time.monotonic() + self.config.retention_interval
        except BaseException as exc:  # surfaced to the owner through .error
            self.error = exc
            log.exception("capture.stopped db=%s", self.db_path)

    def close(self) -> None:
        self.stop()
        with self.writer_lock, self._lock:
            self.poll()
            self._wal.close_pins()
            self._ctl.close()
            self._wal.close_file()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
