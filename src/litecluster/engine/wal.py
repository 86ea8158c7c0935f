"""Reading SQLite's write-ahead log as a sequence of committed transactions.

Format (https://www.sqlite.org/fileformat2.html#walformat): a 32-byte header (magic, version,
page size, checkpoint sequence, salt-1, salt-2, checksum) followed by frames of a 24-byte header
(page number, database size after commit or 0, salt-1, salt-2, cumulative checksum) and one
page. A frame counts only when its salts equal the header's and the cumulative checksum chain
holds; a frame with a non-zero size field commits everything since the previous commit frame.

Anything that does not verify (a torn write, frames left over from before the WAL was
restarted, a frame still being written) is simply the end of the valid WAL: readers stop there
and never raise for it. Only whole committed transactions are returned.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

WAL_MAGIC_LE = 0x377F0682
WAL_MAGIC_BE = 0x377F0683
WAL_HEADER_SIZE = 32
FRAME_HEADER_SIZE = 24
_HDR = struct.Struct(">IIIIIIII")
_FRAME = struct.Struct(">IIIIII")
_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class WalHeader:
    magic: int
    version: int
    page_size: int
    ckpt_seq: int
    salt1: int
    salt2: int
    checksum1: int
    checksum2: int

    @property
    def big_endian(self) -> bool:
        return self.magic == WAL_MAGIC_BE

    @property
    def frame_size(self) -> int:
        return FRAME_HEADER_SIZE + self.page_size

    def frame_offset(self, frame: int) -> int:
        """File offset of 1-based ``frame``."""
        return WAL_HEADER_SIZE + (frame - 1) * self.frame_size


@dataclass(frozen=True)
class WalMark:
    """A point in the WAL after a commit frame: its generation and the frames consumed."""

    salt1: int = 0
    salt2: int = 0
    ckpt_seq: int = 0
    frame: int = 0


@dataclass
class WalTransaction:
    """One committed transaction: the last image of each page it wrote and the size after it."""

    pages: dict[int, bytes]
    db_size: int
    first_frame: int
    commit_frame: int
    header: WalHeader = field(repr=False)
    checksum: tuple[int, int] = (0, 0)
    """The running WAL checksum after the commit frame (to resume reading after it)."""

    @property
    def end(self) -> WalMark:
        h = self.header
        return WalMark(h.salt1, h.salt2, h.ckpt_seq, self.commit_frame)


def checksum_reference(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum, written as the spec states it (slow; used to test the fast one)."""
    fmt = ">" if big_endian else "<"
    words = struct.unpack(f"{fmt}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & _U32
        s1 = (s1 + words[i + 1] + s0) & _U32
    return s0, s1


@lru_cache(maxsize=16)
def _coefficients(pairs: int) -> tuple[npt.NDArray[np.uint64], ...]:
    """Fibonacci coefficients that turn the checksum recurrence into dot products.

    One step is ``(s0, s1) <- M (s0, s1) + (a, a + b)`` with ``M = [[1, 1], [1, 2]]``, and
    ``M**j = [[F(2j-1), F(2j)], [F(2j), F(2j+1)]]``. Unrolled over ``n`` word pairs, every final
    value is a fixed linear combination of the inputs, computed modulo 2**32 (uint64 arithmetic
    wraps modulo 2**64, which keeps the low 32 bits exact).
    """
    fib = [0, 1]
    while len(fib) < 2 * pairs + 3:
        fib.append((fib[-1] + fib[-2]) & _U32)

    def f(i: int) -> int:
        return 1 if i == -1 else fib[i]

    js = range(pairs - 1, -1, -1)
    p = np.array([f(2 * j - 1) for j in js], dtype=np.uint64)
    q = np.array([f(2 * j) for j in js], dtype=np.uint64)
    r = np.array([f(2 * j + 1) for j in js], dtype=np.uint64)
    mask = np.uint64(_U32)
    n = pairs
    head = np.array([f(2 * n - 1), f(2 * n), f(2 * n + 1)], dtype=np.uint64)
    return (p + q) & mask, q, (q + r) & mask, r, head


def wal_checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """Cumulative WAL checksum of ``data`` (a multiple of 8 bytes) continuing from (s0, s1)."""
    if len(data) <= 64:  # headers: the plain loop beats numpy's call overhead
        return checksum_reference(data, s0, s1, big_endian)
    pairs = len(data) // 8
    words = np.frombuffer(data, dtype=">u4" if big_endian else "<u4").astype(np.uint64)
    a = words[0::2]
    b = words[1::2]
    pq, q, qr, r, head = _coefficients(pairs)
    f_m, f_n, f_p = (int(x) for x in head)
    new0 = (f_m * s0 + f_n * s1 + int(np.dot(pq, a)) + int(np.dot(q, b))) & _U32
    new1 = (f_n * s0 + f_p * s1 + int(np.dot(qr, a)) + int(np.dot(r, b))) & _U32
    return new0, new1


def parse_header(buf: bytes) -> WalHeader | None:
    """The WAL header in ``buf``, or None when it is absent or does not verify."""
    if len(buf) < WAL_HEADER_SIZE:
        return None
    magic, version, page_size, seq, salt1, salt2, c1, c2 = _HDR.unpack_from(buf)
    if magic not in (WAL_MAGIC_LE, WAL_MAGIC_BE) or version != 3007000:
        return None
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return None
    if wal_checksum(buf[:24], 0, 0, magic == WAL_MAGIC_BE) != (c1, c2):
        return None
    return WalHeader(magic, version, page_size, seq, salt1, salt2, c1, c2)


def read_header(path: str | os.PathLike[str]) -> WalHeader | None:
    try:
        with open(path, "rb") as f:
            return parse_header(f.read(WAL_HEADER_SIZE))
    except FileNotFoundError:
        return None


def resume_checksum(f: BinaryIO, header: WalHeader, frame: int) -> tuple[int, int] | None:
    """The running checksum after ``frame`` (0 = the header), or None if that frame is gone."""
    if frame == 0:
        return header.checksum1, header.checksum2
    f.seek(header.frame_offset(frame))
    raw = f.read(FRAME_HEADER_SIZE)
    if len(raw) < FRAME_HEADER_SIZE:
        return None
    _pgno, _size, salt1, salt2, c1, c2 = _FRAME.unpack(raw)
    if (salt1, salt2) != (header.salt1, header.salt2):
        return None
    return c1, c2


def iter_transactions(
    f: BinaryIO, header: WalHeader, after_frame: int, checksum: tuple[int, int]
) -> Iterator[WalTransaction]:
    """Committed transactions that start after ``after_frame``, whose running checksum is given.

    Stops silently at the first frame that is missing, torn, from another generation or fails
    the checksum chain; frames of a transaction without its commit frame are never yielded.
    """
    frame = after_frame + 1
    s0, s1 = checksum
    pages: dict[int, bytes] = {}
    first = frame
    f.seek(header.frame_offset(frame))
    fsize = header.frame_size
    big = header.big_endian
    while True:
        raw = f.read(fsize)
        if len(raw) < fsize:
            return
        pgno, db_size, salt1, salt2, c1, c2 = _FRAME.unpack_from(raw)
        if (salt1, salt2) != (header.salt1, header.salt2) or pgno == 0:
            return
        s0, s1 = wal_checksum(raw[:8], s0, s1, big)
        s0, s1 = wal_checksum(raw[FRAME_HEADER_SIZE:], s0, s1, big)
        if (s0, s1) != (c1, c2):
            return
        pages[pgno] = raw[FRAME_HEADER_SIZE:]
        if db_size:
            yield WalTransaction(pages, db_size, first, frame, header, (s0, s1))
            pages = {}
            first = frame + 1
        frame += 1


def read_wal(path: str | os.PathLike[str]) -> tuple[WalHeader | None, list[WalTransaction]]:
    """Every committed transaction of a WAL file, in order (for tools and tests)."""
    if not os.path.exists(path):
        return None, []
    with open(path, "rb") as f:
        header = parse_header(f.read(WAL_HEADER_SIZE))
        if header is None:
            return None, []
        txs = list(iter_transactions(f, header, 0, (header.checksum1, header.checksum2)))
    return header, txs
