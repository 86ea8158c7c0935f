"""The transaction log: append-only, checksummed segment files of :mod:`record` records.

Durability policy: :meth:`TxLog.append` hands a record to the operating system; it is durable
only after :meth:`TxLog.sync`, which fsyncs the active segment (and the directory when a
segment was created). One sync covers every record appended before it, so a caller that
gathers many commits pays for one fsync (group commit). Nothing reads a record as replicable
before it is durable: :meth:`TxLog.read` stops at :attr:`TxLog.durable_txid`.

Crash recovery at open: every segment is scanned and every record verified. In the last segment,
a record that is cut short (the file ends inside it) or a zero-filled tail is a torn append: it
is cut off and logged. Any other damage, anywhere, is :class:`TxlogCorruptError` naming the
file and offset; it is never skipped and never replayed.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import struct
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import xxhash

from litecluster.engine import faults
from litecluster.engine.record import (
    FRAME_SIZE,
    HEADER,
    TRAILER_SIZE,
    TxRecord,
    decode,
    encode,
    parse_frame,
)
from litecluster.errors import ConfigError, TxidNotFoundError, TxlogCorruptError, TxlogError

log = logging.getLogger("litecluster.txlog")

SEGMENT_MAGIC = b"LCTXLOG1"
SEGMENT_VERSION = 1
_SEG_HDR = struct.Struct(">8sIIQQ")
SEGMENT_HEADER_SIZE = _SEG_HDR.size  # 32
_SUFFIX = ".txlog"


@dataclass(frozen=True)
class TxlogConfig:
    segment_bytes: int = 64 * 1024 * 1024
    """A new segment starts once the active one reaches this size."""
    retention_bytes: int = 1024 * 1024 * 1024
    """Oldest segments are deleted while the log is larger than this."""
    retention_seconds: float = 24 * 3600.0
    """Segments whose newest record is older than this are deleted."""
    fsync: bool = True
    """False skips fsync (benchmarks of the rest of the path, throwaway data only)."""

    def __post_init__(self) -> None:
        if self.segment_bytes < 4096:
            raise ConfigError("txlog segment_bytes must be at least 4096", value=self.segment_bytes)
        if self.retention_bytes < self.segment_bytes:
            raise ConfigError(
                "txlog retention_bytes must be at least one segment",
                value=self.retention_bytes,
                hint=f"use >= segment_bytes ({self.segment_bytes})",
            )
        if self.retention_seconds <= 0:
            raise ConfigError(
                "txlog retention_seconds must be positive", value=self.retention_seconds
            )


@dataclass
class _Segment:
    path: Path
    first_txid: int
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    size: int = SEGMENT_HEADER_SIZE
    last_ts: int = 0

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def last_txid(self) -> int:
        return self.first_txid + self.count - 1


@dataclass(frozen=True)
class TxlogStats:
    segments: int
    bytes: int
    first_txid: int
    last_txid: int
    durable_txid: int


def _segment_name(first_txid: int) -> str:
    return f"{first_txid:020d}{_SUFFIX}"


def _segment_header(first_txid: int) -> bytes:
    head = struct.pack(">8sIIQ", SEGMENT_MAGIC, SEGMENT_VERSION, 0, first_txid)
    return head + struct.pack(">Q", xxhash.xxh3_64_intdigest(head))


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a created, renamed or deleted file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Replace the file at ``path`` with ``data``, atomically and durably: a crash leaves the
    old contents or the new, whole (temporary file, fsync, rename, fsync of the directory)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


class TxLog:
    """The transaction log of one database, in one directory."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        config: TxlogConfig | None = None,
        *,
        readonly: bool = False,
    ) -> None:
        self.dir = Path(directory)
        self.config = config or TxlogConfig()
        self.readonly = readonly
        self._lock = threading.RLock()
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._dir_dirty = False
        self._last_epoch = 0
        if readonly:
            if not self.dir.is_dir():
                raise TxlogError("transaction log directory not found", dir=str(self.dir))
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                raise TxlogError(
                    "the transaction log is in use by another process",
                    dir=str(self.dir),
                    hint="only one capture may write a log; open it with readonly=True to read",
                ) from None
        try:
            self._recover()
        except BaseException:
            # Release the writer lock (and the segment fd) so that a caller may repair the log
            # and open it again in the same process (repair() does exactly that).
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            raise
        self.durable_txid = self.last_txid

    # ---- open and recovery -------------------------------------------------------------

    def _recover(self) -> None:
        paths = sorted(p for p in self.dir.iterdir() if p.name.endswith(_SUFFIX))
        for i, path in enumerate(paths):
            seg = self._scan(path, is_last=i == len(paths) - 1)
            if seg is None:
                continue
            if self._segments and seg.first_txid != self._segments[-1].last_txid + 1:
                raise TxlogCorruptError(
                    "segment does not continue the previous one",
                    file=str(path),
                    offset=0,
                    expected_txid=self._segments[-1].last_txid + 1,
                    found_txid=seg.first_txid,
                )
            self._segments.append(seg)
        for seg in reversed(self._segments):  # the newest record may sit in an older segment
            if seg.count:
                self._last_epoch = self._read_at(seg, seg.count - 1).epoch
                break
        if self._segments:
            last = self._segments[-1]
            if not self.readonly:
                self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)

    def _cut(self, path: Path, offset: int, size: int, why: str) -> None:
        if self.readonly:
            return  # a live writer may be in the middle of this append
        log.warning(
            "txlog.torn_tail_cut file=%s offset=%d bytes=%d reason=%r",
            path,
            offset,
            size - offset,
            why,
        )
        with open(path, "r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())

    def _scan(self, path: Path, *, is_last: bool) -> _Segment | None:
        where = str(path)
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(SEGMENT_HEADER_SIZE)
            if len(head) < SEGMENT_HEADER_SIZE or not any(head):
                if is_last and not any(head + f.read()):
                    # Crash between creating the segment and writing its header.
                    if not self.readonly:
                        log.warning("txlog.empty_segment_removed file=%s", path)
                        path.unlink()
                    return None
                raise TxlogCorruptError("segment header is truncated", file=where, offset=0)
            magic, version, _flags, first_txid, check = _SEG_HDR.unpack(head)
            if magic != SEGMENT_MAGIC or check != xxhash.xxh3_64_intdigest(head[:24]):
                raise TxlogCorruptError("segment header is damaged", file=where, offset=0)
            if version != SEGMENT_VERSION:
                raise TxlogCorruptError(
                    f"unsupported segment version {version}", file=where, offset=0
                )
            if path.name != _segment_name(first_txid):
                raise TxlogCorruptError(
                    "segment name does not match its first txid", file=where, offset=0,
                    first_txid=first_txid,
                )  # fmt: skip
            seg = _Segment(path, first_txid)
            offset = SEGMENT_HEADER_SIZE
            while offset < size:
                frame = f.read(FRAME_SIZE)
                if len(frame) < FRAME_SIZE:
                    if is_last:
                        self._cut(path, offset, size, "incomplete record frame")
                        break
                    raise TxlogCorruptError("record frame is truncated", file=where, offset=offset)
                if not any(frame):
                    if is_last and not any(f.read()):
                        self._cut(path, offset, size, "zero-filled tail")
                        break
                    raise TxlogCorruptError("record frame is zeroed", file=where, offset=offset)
                body_len = parse_frame(frame, where=where, offset=offset)
                end = offset + FRAME_SIZE + body_len + TRAILER_SIZE
                if end > size:
                    if is_last:
                        self._cut(path, offset, size, "record extends past end of file")
                        break
                    raise TxlogCorruptError("record is truncated", file=where, offset=offset)
                rest = f.read(body_len + TRAILER_SIZE)
                try:
                    rec = decode(frame + rest, where=where, offset=offset)
                except TxlogCorruptError:
                    # The last record ends in zeros up to the end of the file: its append never
                    # completed (the file grew before the data reached the disk).
                    if is_last and not any(rest[-TRAILER_SIZE:]) and not any(f.read()):
                        self._cut(path, offset, size, "record ends in a zero-filled tail")
                        break
                    raise
                expect = seg.first_txid + seg.count
                if rec.txid != expect:
                    raise TxlogCorruptError(
                        "record out of sequence", file=where, offset=offset,
                        expected_txid=expect, found_txid=rec.txid,
                    )  # fmt: skip
                seg.offsets.append(offset)
                seg.last_ts = rec.timestamp_ns
                offset = end
            seg.size = min(offset, size)
        return seg

    # ---- properties ----------------------------------------------------------------------

    @property
    def first_txid(self) -> int:
        """Oldest txid held, or 0 when the log is empty."""
        with self._lock:
            for seg in self._segments:
                if seg.count:
                    return seg.first_txid
            return 0

    @property
    def last_txid(self) -> int:
        """Newest txid appended (durable or not), or 0 when the log is empty."""
        with self._lock:
            for seg in reversed(self._segments):
                if seg.count:
                    return seg.last_txid
            return self._segments[-1].first_txid - 1 if self._segments else 0

    def stats(self) -> TxlogStats:
        with self._lock:
            return TxlogStats(
                segments=len(self._segments),
                bytes=sum(s.size for s in self._segments),
                first_txid=self.first_txid,
                last_txid=self.last_txid,
                durable_txid=self.durable_txid,
            )

    # ---- writing ---------------------------------------------------------------------------

    def _new_segment(self, first_txid: int) -> _Segment:
        path = self.dir / _segment_name(first_txid)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        os.write(fd, _segment_header(first_txid))
        if self._fd is not None:
            if self.config.fsync:
                os.fsync(self._fd)  # the previous segment must be complete before we move on
            os.close(self._fd)
        self._fd = fd
        self._dir_dirty = True
        seg = _Segment(path, first_txid)
        self._segments.append(seg)
        return seg

    def append(self, rec: TxRecord) -> None:
        """Append one record (not durable until :meth:`sync`)."""
        if self.readonly:
            raise TxlogError("the transaction log was opened read-only", dir=str(self.dir))
        data = encode(rec)
        with self._lock:
            last = self.last_txid
            if (last or self._segments) and rec.txid != last + 1:
                raise TxlogError(
                    "txid does not follow the log", expected_txid=last + 1, found_txid=rec.txid
                )
            if rec.epoch < self._last_epoch:
                raise TxlogError(
                    "epoch went backwards", last_epoch=self._last_epoch, epoch=rec.epoch
                )
            seg = self._segments[-1] if self._segments else None
            if seg is None or (seg.count and seg.size + len(data) > self.config.segment_bytes):
                seg = self._new_segment(rec.txid)
            assert self._fd is not None
            if faults.armed("txlog.append.partial"):
                os.write(self._fd, data[: len(data) // 2])
                faults.crash()
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            seg.offsets.append(seg.size)
            seg.size += len(data)
            seg.last_ts = rec.timestamp_ns
            self._last_epoch = rec.epoch

    def sync(self) -> int:
        """Make every appended record durable; returns the durable txid.

        The fsync runs outside the log's lock so readers of durable records are not held up by
        it. Appends and syncs come from the log's single writer (capture), so the descriptor
        cannot be replaced while it is being synced.
        """
        with self._lock:
            last = self.last_txid
            if last == self.durable_txid:
                return last
            fd, dir_dirty = self._fd, self._dir_dirty
            self._dir_dirty = False
        if fd is not None and self.config.fsync:
            os.fdatasync(fd)
            if dir_dirty:
                fsync_dir(self.dir)
        faults.crashpoint("txlog.sync.after")
        with self._lock:
            self.durable_txid = max(self.durable_txid, last)
            return self.durable_txid

    def append_sync(self, records: list[TxRecord]) -> int:
        for rec in records:
            self.append(rec)
        return self.sync()

    # ---- reading ----------------------------------------------------------------------------

    def _locate(self, txid: int) -> tuple[int, int]:
        firsts = [s.first_txid for s in self._segments]
        i = bisect.bisect_right(firsts, txid) - 1
        if i < 0 or not (self._segments[i].first_txid <= txid <= self._segments[i].last_txid):
            raise TxidNotFoundError(
                "txid is not in the transaction log",
                txid=txid,
                first_txid=self.first_txid,
                last_txid=self.last_txid,
            )
        return i, txid - self._segments[i].first_txid

    def _read_at(self, seg: _Segment, index: int) -> TxRecord:
        with open(seg.path, "rb") as f:
            return self._read_record(f, seg, index)

    @staticmethod
    def _read_record(f: BinaryIO, seg: _Segment, index: int) -> TxRecord:
        start = seg.offsets[index]
        end = seg.offsets[index + 1] if index + 1 < seg.count else seg.size
        f.seek(start)
        data = f.read(end - start)
        return decode(data, where=str(seg.path), offset=start)

    def _removed(self, txid: int) -> TxidNotFoundError:
        return TxidNotFoundError(
            "txid was removed by retention while being read", txid=txid, first_txid=self.first_txid
        )

    def get(self, txid: int) -> TxRecord:
        with self._lock:
            i, idx = self._locate(txid)
            seg = self._segments[i]
        try:
            return self._read_at(seg, idx)
        except FileNotFoundError:
            raise self._removed(txid) from None

    def last(self) -> TxRecord | None:
        with self._lock:
            last = self.last_txid
            if not last or not self.first_txid:
                return None
        return self.get(last)

    def read(
        self, from_txid: int, to_txid: int | None = None, *, durable: bool = True
    ) -> Iterator[TxRecord]:
        """Records from ``from_txid`` through ``to_txid`` (default: the newest durable one)."""
        with self._lock:
            limit = self.durable_txid if durable else self.last_txid
            stop = limit if to_txid is None else min(to_txid, limit)
            if from_txid > stop:
                return
            i, idx = self._locate(from_txid)
            segs = self._segments[i:]
        txid = from_txid
        for seg in segs:
            if txid > stop:
                return
            try:
                f = open(seg.path, "rb")  # noqa: SIM115 (closed by the with below)
            except FileNotFoundError:
                raise self._removed(txid) from None
            with f:
                while idx < seg.count and txid <= stop:
                    yield self._read_record(f, seg, idx)
                    idx += 1
                    txid += 1
            idx = 0

    def read_raw(
        self, from_txid: int, *, max_records: int = 512, max_bytes: int = 1 << 20
    ) -> list[bytes]:
        """The framed bytes of durable records from ``from_txid``, as stored (for shipping
        without a decode and re-encode); at least one record when one is there, and at most
        ``max_records`` or about ``max_bytes``. The receiver verifies them with ``decode``."""
        with self._lock:
            stop = min(self.durable_txid, from_txid + max_records - 1)
            if from_txid > stop:
                return []
            i, idx = self._locate(from_txid)
            segs = self._segments[i:]
        out: list[bytes] = []
        size = 0
        txid = from_txid
        for seg in segs:
            if txid > stop:
                break
            n = min(seg.count - idx, stop - txid + 1)
            start = seg.offsets[idx]
            ends = [
                seg.offsets[idx + k + 1] if idx + k + 1 < seg.count else seg.size for k in range(n)
            ]
            # Cut the batch at max_bytes (but keep the first record whatever its size).
            keep = 0
            while keep < n and ((not out and keep == 0) or size + ends[keep] - start <= max_bytes):
                keep += 1
            if not keep:
                break
            try:
                with open(seg.path, "rb") as f:
                    f.seek(start)
                    data = f.read(ends[keep - 1] - start)
            except FileNotFoundError:
                raise self._removed(txid) from None
            prev = start
            for k in range(keep):
                out.append(data[prev - start : ends[k] - start])
                prev = ends[k]
            size += len(data)
            txid += keep
            idx = 0
            if keep < n:
                break
        return out

    # ---- retention ---------------------------------------------------------------------------

    def enforce_retention(
        self, *, now_ns: int | None = None, keep_from_txid: int | None = None
    ) -> list[Path]:
        """Delete the oldest segments past the age or size limit; never the active segment nor
        one holding ``keep_from_txid`` or later. Returns the deleted paths."""
        now = time.time_ns() if now_ns is None else now_ns
        max_age = int(self.config.retention_seconds * 1e9)
        removed: list[Path] = []
        with self._lock:
            total = sum(s.size for s in self._segments)
            while len(self._segments) > 1:
                seg = self._segments[0]
                if keep_from_txid is not None and seg.last_txid >= keep_from_txid:
                    break
                if total <= self.config.retention_bytes and now - seg.last_ts <= max_age:
                    break
                seg.path.unlink()
                total -= seg.size
                removed.append(seg.path)
                self._segments.pop(0)
            if removed:
                fsync_dir(self.dir)
                log.info("txlog.retention removed=%d first_txid=%d", len(removed), self.first_txid)
        return removed

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                self.sync()
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> TxLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def repair(directory: str | os.PathLike[str]) -> tuple[Path, int] | None:
    """Cut the log at its first damaged record (an operator's decision after a power loss).

    Returns the file and offset cut, or None when nothing was damaged. Segments after the damage
    are moved aside (renamed ``*.damaged``), never deleted.
    """
    d = Path(directory)
    try:
        TxLog(d).close()
        return None
    except TxlogCorruptError as err:
        file = Path(str(err.context["file"]))
        offset = int(err.context["offset"])
    later = sorted(p for p in d.iterdir() if p.name.endswith(_SUFFIX) and p.name > file.name)
    for p in later:
        p.rename(p.with_name(p.name + ".damaged"))
    if offset < SEGMENT_HEADER_SIZE:
        file.rename(file.with_name(file.name + ".damaged"))
    else:
        aside = file.with_name(file.name + f".tail-{offset}.damaged")
        with open(file, "rb") as src, open(aside, "wb") as dst:
            src.seek(offset)
            dst.write(src.read())
        with open(file, "r+b") as f:
            f.truncate(offset)
            os.fsync(f.fileno())
    fsync_dir(d)
    TxLog(d).close()  # the cut log must open cleanly now
    return file, offset


__all__ = ["HEADER", "TxLog", "TxlogConfig", "TxlogStats", "fsync_dir", "repair"]
