"""Verifying that a replica holds exactly the primary's data.

Two checks, both from the files themselves: the database checksums (which ignore the 12 bytes of
page 1 that differ on every copy) and, when they differ, the page numbers that differ, so an
operator sees where. :func:`verify_against_log` checks a replica alone against the primary's
transaction log at the replica's recorded position.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from litecluster.engine.checksum import PageHashes, format_checksum, pages_equal
from litecluster.engine.position import Position, PositionFile
from litecluster.engine.sqlite import Connection, connect, pragma_int
from litecluster.engine.txlog import TxLog
from litecluster.errors import LiteclusterError, TxidNotFoundError


@dataclass(frozen=True)
class DatabaseSum:
    path: str
    page_size: int
    page_count: int
    checksum: int

    def __str__(self) -> str:
        return f"{self.path}: {self.page_count} pages of {self.page_size} B, checksum {format_checksum(self.checksum)}"


@dataclass(frozen=True)
class VerifyResult:
    primary: DatabaseSum
    replica: DatabaseSum
    replica_position: Position | None
    differing_pages: list[int] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return self.primary.checksum == self.replica.checksum and not self.differing_pages


def _open_read(path: str | os.PathLike[str]) -> Connection:
    if not Path(path).exists():
        raise LiteclusterError("database file not found", file=str(path))
    return connect(path)


def database_checksum(path: str | os.PathLike[str]) -> DatabaseSum:
    """Checksum of a database file as SQLite sees it (WAL included), in one read transaction."""
    conn = _open_read(path)
    try:
        conn.execute("BEGIN")
        page_size = pragma_int(conn, "page_size")
        hashes = PageHashes.scan(conn, page_size)
        conn.execute("ROLLBACK")
        return DatabaseSum(str(path), page_size, hashes.page_count, hashes.checksum)
    finally:
        conn.close()


def verify_replica(
    primary: str | os.PathLike[str], replica: str | os.PathLike[str], *, max_pages_listed: int = 20
) -> VerifyResult:
    """Compare a replica file with the primary file page by page (both must be quiescent or at the
    same position for the result to mean equality of history)."""
    pc, rc = _open_read(primary), _open_read(replica)
    try:
        pc.execute("BEGIN")
        rc.execute("BEGIN")
        sums = []
        for conn, path in ((pc, primary), (rc, replica)):
            ps = pragma_int(conn, "page_size")
            sums.append(
                DatabaseSum(
                    str(path),
                    ps,
                    pragma_int(conn, "page_count"),
                    PageHashes.scan(conn, ps).checksum,
                )
            )
        differing: list[int] = []
        if sums[0].checksum != sums[1].checksum:
            q = "SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno"
            for a, b in itertools.zip_longest(pc.execute(q), rc.execute(q)):
                if a is None or b is None or not pages_equal(a[0], bytes(a[1]), bytes(b[1])):
                    differing.append((a or b)[0])
            differing = differing[:max_pages_listed]
        pc.execute("ROLLBACK")
        rc.execute("ROLLBACK")
    finally:
        pc.close()
        rc.close()
    pos = None
    posfile = Path(str(replica) + ".lcpos")
    if posfile.exists():
        pf = PositionFile(posfile, fsync=False)
        pos = pf.state.committed if pf.state else None
        pf.close()
    return VerifyResult(sums[0], sums[1], pos, differing)


def verify_against_log(
    replica: str | os.PathLike[str], txlog_dir: str | os.PathLike[str]
) -> tuple[bool, str]:
    """Does the replica's content equal the primary's state at the replica's recorded txid?"""
    s = database_checksum(replica)
    pf = PositionFile(str(replica) + ".lcpos", fsync=False)
    try:
        if pf.state is None:
            return False, "replica has no recorded position"
        pos = pf.state.committed
    finally:
        pf.close()
    log = TxLog(txlog_dir, readonly=True)
    try:
        rec = log.get(pos.txid)
    except TxidNotFoundError:
        return False, f"txid {pos.txid} is no longer in the log (first {log.first_txid})"
    finally:
        log.close()
    if rec.post_checksum != s.checksum:
        return False, (
            f"replica at txid {pos.txid} has checksum {format_checksum(s.checksum)}, "
            f"primary had {format_checksum(rec.post_checksum)}"
        )
    return True, f"replica matches the primary at txid {pos.txid} ({format_checksum(s.checksum)})"
