"""Rolling database checksums.

The checksum of a database is the XOR over its pages of ``xxh3_64(page, seed=pgno)``. XOR makes
it incremental: replacing a page removes the old page's hash and adds the new one, so neither
side ever rescans the database to keep it current. Seeding with the page number makes moving
identical content between pages change the checksum.

SQLite rewrites three fields of page 1 at every commit on every copy (change counter at 24-27,
version-valid-for at 92-95, library version at 96-99), so those 12 bytes are hashed as zeros.

Each side keeps one 8-byte hash per page (8 MB for a 1 GB database of 1 KiB pages) so that the
old hash of a page being replaced is known without reading the page.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

import xxhash

_MASK_RANGES = ((24, 28), (92, 100))


def page_hash(pgno: int, data: bytes) -> int:
    """Hash of one page as it counts in the database checksum."""
    if pgno == 1 and len(data) >= 100:
        buf = bytearray(data[:100])
        for lo, hi in _MASK_RANGES:
            buf[lo:hi] = bytes(hi - lo)
        h = xxhash.xxh3_64(bytes(buf), seed=1)
        h.update(data[100:])
        return int(h.intdigest())
    return int(xxhash.xxh3_64_intdigest(data, seed=pgno))


def pages_equal(pgno: int, a: bytes, b: bytes) -> bool:
    """Byte equality of two copies of a page, ignoring page 1's per-copy header fields."""
    if pgno != 1:
        return a == b
    return len(a) == len(b) and page_hash(1, a) == page_hash(1, b) and a[100:] == b[100:]


_zero_pages: dict[int, bytes] = {}


def zero_page(page_size: int) -> bytes:
    page = _zero_pages.get(page_size)
    if page is None:
        page = _zero_pages[page_size] = bytes(page_size)
    return page


class PageHashes:
    """Per-page hashes of one database and their XOR (the checksum)."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self.hashes = array("Q")
        self.checksum = 0

    @property
    def page_count(self) -> int:
        return len(self.hashes)

    @classmethod
    def from_pages(cls, page_size: int, pages: Iterable[tuple[int, bytes]]) -> PageHashes:
        """Build from ``(pgno, data)`` in ascending page order; gaps count as zero pages."""
        ph = cls(page_size)
        for pgno, data in pages:
            while len(ph.hashes) < pgno - 1:
                ph._append(page_hash(len(ph.hashes) + 1, zero_page(page_size)))
            ph._append(page_hash(pgno, bytes(data)))
        return ph

    @classmethod
    def scan(cls, conn: Any, page_size: int) -> PageHashes:
        """Hash every page as ``conn`` sees it (call inside a read transaction for a stable view)."""
        cur = conn.execute("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
        return cls.from_pages(page_size, ((int(p), bytes(d)) for p, d in cur))

    def _append(self, h: int) -> None:
        self.hashes.append(h)
        self.checksum ^= h

    def begin(self) -> HashTxn:
        return HashTxn(self)

    def copy(self) -> PageHashes:
        other = PageHashes(self.page_size)
        other.hashes = array("Q", self.hashes)
        other.checksum = self.checksum
        return other


class HashTxn:
    """Tentative changes to a :class:`PageHashes`, applied only by :meth:`commit`.

    Lets a caller compute the checksum a transaction (or a batch of them) would produce and
    refuse it before anything is written.
    """

    def __init__(self, base: PageHashes) -> None:
        self.base = base
        self.size = base.page_count
        self.checksum = base.checksum
        self.min_size = base.page_count  # lowest size reached; base pages above it are gone
        self.overlay: dict[int, int] = {}

    def _get(self, pgno: int) -> int:
        h = self.overlay.get(pgno)
        if h is not None:
            return h
        return self.base.hashes[pgno - 1]  # only reached for pgno <= min_size

    def resize(self, db_size: int, written: Iterable[int] = ()) -> None:
        """Set the database size after a commit; new pages not in ``written`` are zero pages."""
        if db_size < self.size:
            for pgno in range(db_size + 1, self.size + 1):
                self.checksum ^= self._get(pgno)
                self.overlay.pop(pgno, None)
            self.min_size = min(self.min_size, db_size)
        elif db_size > self.size:
            skip = set(written)
            zero = zero_page(self.base.page_size)
            for pgno in range(self.size + 1, db_size + 1):
                h = page_hash(pgno, b"") if pgno in skip else page_hash(pgno, zero)
                # A placeholder for written pages is replaced by set_page right after.
                self.overlay[pgno] = h
                self.checksum ^= h
        self.size = db_size

    def set_page(self, pgno: int, h: int) -> None:
        old = self._get(pgno)
        self.checksum ^= old ^ h
        self.overlay[pgno] = h

    def commit(self) -> None:
        base = self.base
        if self.min_size < base.page_count:
            del base.hashes[self.min_size :]
        while base.page_count < self.size:
            base.hashes.append(0)
        for pgno, h in self.overlay.items():
            base.hashes[pgno - 1] = h
        base.checksum = self.checksum


def format_checksum(value: int) -> str:
    return f"{value:016x}"
