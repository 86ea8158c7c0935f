"""Backups: a database as one ordinary SQLite file, or as a SQL dump, at a known position.

Both are written from a *frozen view* (a read transaction opened while the node's writer or
applier was held, so the view's position is exact; :meth:`Capture.frozen` on a primary,
:meth:`Replica.frozen` on a replica). The SQLite file is the view's pages in order, read
through ``sqlite_dbpage``: byte for byte the pages the node holds, so its database checksum
(:mod:`checksum`) equals the position's. Nothing else waits while it is written.
"""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from sqlite3.dump import _iterdump as _stdlib_iterdump  # type: ignore[attr-defined]
from typing import BinaryIO, Literal, Protocol

from litecluster.engine.checksum import page_hash
from litecluster.engine.position import Position
from litecluster.engine.sqlite import Connection
from litecluster.errors import SnapshotError

Format = Literal["sqlite", "sql"]
FrozenView = Callable[[], contextlib.AbstractContextManager[tuple[Position, Connection]]]
ProgressFn = Callable[[int], None]
"""Called with the bytes written so far (before compression)."""

_PAGES = 256


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class BackupInfo:
    position: Position
    """Where the backup stands; with ``sqlite``, its file's database checksum is this one's."""
    bytes: int
    """Bytes of the backup before compression."""


def write_backup(
    view: FrozenView,
    out: BinaryIO,
    *,
    fmt: Format = "sqlite",
    compress: bool = False,
    progress: ProgressFn | None = None,
) -> BackupInfo:
    """Write a backup of ``view``'s database into ``out`` (gzip-compressed with ``compress``)."""
    with contextlib.ExitStack() as stack:
        sink: _Sink = out
        if compress:
            sink = stack.enter_context(gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6))
        position, conn = stack.enter_context(view())
        if fmt == "sqlite":
            written = _pages(conn, sink, position, progress)
        else:
            written = _dump(conn, sink, progress)
    return BackupInfo(position, written)


def _pages(conn: Connection, out: _Sink, position: Position, progress: ProgressFn | None) -> int:
    cur = conn.execute("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
    written, check, expect = 0, 0, 1
    while rows := cur.fetchmany(_PAGES):
        for pgno, data in rows:
            if pgno != expect:
                raise SnapshotError("a database page is missing from the view", pgno=expect)
            page = bytes(data)
            check ^= page_hash(pgno, page)
            out.write(page)
            written += len(page)
            expect += 1
        if progress:
            progress(written)
    if position.checksum and check != position.checksum:
        # The view and the position were taken together; a mismatch means the file was
        # changed behind the node's back. Better no backup than a wrong one.
        raise SnapshotError("the backup's checksum is not the position's", position=str(position),
                            checksum=f"{check:016x}")  # fmt: skip
    return written


def _dump(conn: Connection, out: _Sink, progress: ProgressFn | None) -> int:
    written = 0
    for line in _iterdump(conn):
        data = (line + "\n").encode()
        out.write(data)
        written += len(data)
        if progress and written % (1 << 20) < len(data):
            progress(written)
    return written


def _iterdump(conn: Connection) -> Iterator[str]:
    # The standard library's dump (what sqlite3.Connection.iterdump runs); sqlean's
    # connection lacks the method but takes the function, which only runs queries. It runs in
    # the view's read transaction, so it sees one snapshot; its BEGIN TRANSACTION/COMMIT lines
    # make the dump load atomically.
    yield from _stdlib_iterdump(conn)
