"""Snapshots: a whole database at a known position, as a checksummed stream.

Format (a stream, so the node can send it over a socket as it is produced)::

    header: magic "LCSNAP01" | version u32 | page size u32 | page count u64 | epoch u64 |
            txid u64 | database checksum u64 | created ns i64 | xxh3 of the above u64
    chunk*: pages in chunk u32 | compressed length u32 | xxh3 of compressed u64 |
            zstd(page numbers u32... + pages)
    end:    a chunk header of zeros

Creation reads the primary inside one read transaction opened at a position capture knows
(:meth:`Capture.frozen`): writers wait only while that view opens, not while pages stream.
Installation (:meth:`Replica.replace`) writes every page in one SQLite transaction and checks
the database checksum before committing: a damaged stream changes nothing.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import xxhash
import zstandard

from litecluster.engine.apply import Replica
from litecluster.engine.capture.capture import Capture
from litecluster.engine.position import Position
from litecluster.engine.sqlite import connect, pragma_int
from litecluster.engine.txlog import fsync_dir
from litecluster.errors import SnapshotCorruptError

MAGIC = b"LCSNAP01"
VERSION = 1
_HDR = struct.Struct(">8sIIQQQQq")
_CHUNK = struct.Struct(">IIQ")
CHUNK_PAGES = 256

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class SnapshotHeader:
    page_size: int
    page_count: int
    position: Position
    created_ns: int

    @property
    def size_bytes(self) -> int:
        return self.page_size * self.page_count


def _encode_header(h: SnapshotHeader) -> bytes:
    p = h.position
    body = _HDR.pack(
        MAGIC, VERSION, h.page_size, h.page_count, p.epoch, p.txid, p.checksum, h.created_ns
    )
    return body + struct.pack(">Q", xxhash.xxh3_64_intdigest(body))


def _read_exact(f: BinaryIO, n: int, what: str, offset: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise SnapshotCorruptError(f"snapshot ends inside {what}", offset=offset)
    return data


def read_snapshot_header(f: BinaryIO) -> SnapshotHeader:
    raw = _read_exact(f, _HDR.size + 8, "the header", 0)
    magic, version, page_size, page_count, epoch, txid, checksum, created = _HDR.unpack_from(raw)
    (check,) = struct.unpack_from(">Q", raw, _HDR.size)
    if magic != MAGIC or check != xxhash.xxh3_64_intdigest(raw[: _HDR.size]):
        raise SnapshotCorruptError("not a litecluster snapshot, or its header is damaged", offset=0)
    if version != VERSION:
        raise SnapshotCorruptError(f"unsupported snapshot version {version}", offset=0)
    return SnapshotHeader(page_size, page_count, Position(epoch, txid, checksum), created)


def write_snapshot(
    capture: Capture, out: BinaryIO, progress: ProgressFn | None = None
) -> SnapshotHeader:
    """Stream a consistent snapshot of the live primary behind ``capture`` into ``out``."""
    cctx = zstandard.ZstdCompressor(level=1)
    with capture.frozen() as (position, conn):
        header = SnapshotHeader(
            capture.page_size, pragma_int(conn, "page_count"), position, time.time_ns()
        )
        out.write(_encode_header(header))
        cur = conn.execute("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
        done = 0
        while True:
            rows = cur.fetchmany(CHUNK_PAGES)
            if not rows:
                break
            raw = struct.pack(f">{len(rows)}I", *(int(p) for p, _ in rows)) + b"".join(
                bytes(d) for _, d in rows
            )
            comp = cctx.compress(raw)
            out.write(_CHUNK.pack(len(rows), len(comp), xxhash.xxh3_64_intdigest(comp)))
            out.write(comp)
            done += len(rows)
            if progress:
                progress(done, header.page_count)
        out.write(_CHUNK.pack(0, 0, 0))
    return header


def create_snapshot(
    capture: Capture, path: str | os.PathLike[str], progress: ProgressFn | None = None
) -> SnapshotHeader:
    """Write a snapshot file atomically (temporary file, fsync, rename)."""
    dest = Path(path)
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as f:
        header = write_snapshot(capture, f, progress)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(dest)
    return header


def iter_snapshot_pages(f: BinaryIO, header: SnapshotHeader) -> Iterator[tuple[int, bytes]]:
    """Pages of a snapshot stream after its header, each chunk verified before use."""
    dctx = zstandard.ZstdDecompressor()
    offset = _HDR.size + 8
    ps = header.page_size
    while True:
        n, clen, check = _CHUNK.unpack(_read_exact(f, _CHUNK.size, "a chunk header", offset))
        if n == 0:
            if clen or check:
                raise SnapshotCorruptError("damaged end marker", offset=offset)
            return
        if n > 1 << 20 or clen > (n * (ps + 4)) + (1 << 20):
            raise SnapshotCorruptError(
                "implausible chunk header", offset=offset, pages=n, length=clen
            )
        comp = _read_exact(f, clen, "a chunk", offset)
        if xxhash.xxh3_64_intdigest(comp) != check:
            raise SnapshotCorruptError("chunk checksum mismatch", offset=offset)
        try:
            # A frame that states its content size is inflated to that size whatever
            # max_output_size says: refuse a wrong claim before decompressing.
            if zstandard.frame_content_size(comp) not in (-1, n * (ps + 4)):
                raise SnapshotCorruptError("chunk has the wrong size", offset=offset)
            raw = dctx.decompress(comp, max_output_size=n * (ps + 4))
        except zstandard.ZstdError as exc:
            raise SnapshotCorruptError(f"chunk does not decompress: {exc}", offset=offset) from exc
        if len(raw) != n * (ps + 4):
            raise SnapshotCorruptError("chunk has the wrong size", offset=offset)
        pgnos = struct.unpack_from(f">{n}I", raw)
        base = 4 * n
        for i, pgno in enumerate(pgnos):
            yield pgno, raw[base + i * ps : base + (i + 1) * ps]
        offset += _CHUNK.size + clen


def install_snapshot(
    replica: Replica, source: str | os.PathLike[str] | BinaryIO, progress: ProgressFn | None = None
) -> Position:
    """Install a snapshot (file path or open stream) on a replica, atomically for its readers."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return install_snapshot(replica, f, progress)
    header = read_snapshot_header(source)
    return replica.replace(
        header.position,
        header.page_size,
        header.page_count,
        iter_snapshot_pages(source, header),
        progress,
    )


def set_aside(replica: Replica, directory: Path, why: str) -> Path:
    """Copy a replica's database, as it is now, into ``directory`` before a snapshot replaces
    it: a deposed primary's divergent tail (writes no other node has) stays on disk for an
    operator to inspect or replay, instead of vanishing under the new primary's history.

    The copy is a consistent SQLite database (the backup API, not a file copy of a database
    in WAL mode), named after the position it holds.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pos = replica.position
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    dest = directory / f"{replica.db_path.stem}.epoch{pos.epoch}.txid{pos.txid}.{stamp}.db"
    tmp = dest.with_suffix(".partial")
    target = connect(tmp)
    try:
        replica.conn.backup(target)
        # One self-contained file, readable by any SQLite tool without -wal/-shm companions.
        target.execute("PRAGMA journal_mode=DELETE").fetchall()
    finally:
        target.close()
    why_file = directory / f"{dest.name}.why"
    why_file.write_text(f"{why}\nposition {pos}\n")
    # Durable before the caller lets a snapshot overwrite the original: after a power loss
    # the only copy of writes no other node has must not be a file that never reached disk.
    for path in (tmp, why_file):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dest)
    fsync_dir(directory)
    return dest
