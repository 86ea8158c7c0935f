"""Capture's hold on the primary's WAL: the file read directly, and the pin.

The pin is a read transaction on the primary that capture holds at all times: while any reader
holds a WAL read mark, SQLite cannot restart the WAL, and a checkpoint cannot copy frames past
the oldest mark, so the WAL only grows while pinned (see :mod:`capture`). Two connections take
turns: the pin moves forward by opening the new read transaction before releasing the old one.

Takes no locks of its own: :class:`~litecluster.engine.capture.capture.Capture` calls it under its lock (or
before its thread starts), which keeps capture's lock order in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from litecluster.engine.sqlite import Connection
from litecluster.engine.wal import (
    WAL_HEADER_SIZE,
    WalHeader,
    WalTransaction,
    iter_transactions,
    parse_header,
)


class PinnedWal:
    """The WAL file at ``path`` and two connections (from ``open_conn``) that take turns
    pinning it."""

    def __init__(self, path: Path, open_conn: Callable[[], Connection]) -> None:
        self.path = path
        self.pins = (open_conn(), open_conn())
        self.pinned: Connection | None = None
        self._f: BinaryIO | None = None

    def file(self) -> BinaryIO | None:
        """The WAL file, opened on first use (None while it does not exist)."""
        if self._f is None:
            try:
                # Unbuffered: a buffered reader could serve bytes of frames since overwritten.
                self._f = open(self.path, "rb", buffering=0)  # noqa: SIM115
            except FileNotFoundError:
                return None
        return self._f

    def header(self) -> WalHeader | None:
        f = self.file()
        if f is None:
            return None
        return parse_header(os.pread(f.fileno(), WAL_HEADER_SIZE, 0))

    def transactions(self) -> tuple[WalHeader | None, list[WalTransaction]]:
        """The WAL's header and every committed transaction in it (stable under the write lock)."""
        header = self.header()
        f = self.file()
        if header is None or f is None:
            return header, []
        return header, list(iter_transactions(f, header, 0, (header.checksum1, header.checksum2)))

    def spare(self) -> Connection:
        """The pin connection that does not hold the pin (free for a checkpoint)."""
        return self.pins[1] if self.pinned is self.pins[0] else self.pins[0]

    def pin(self) -> None:
        """Move the pin to the current end of the WAL (new pin first, then release the old)."""
        new = self.pins[0] if self.pinned is not self.pins[0] else self.pins[1]
        new.execute("BEGIN")
        new.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        if self.pinned is not None:
            self.pinned.execute("ROLLBACK")
        self.pinned = new

    def unpin(self) -> None:
        if self.pinned is not None:
            self.pinned.execute("ROLLBACK")
            self.pinned = None

    def close_pins(self) -> None:
        """Release the pin and close its connections (the file stays open: see close_file)."""
        self.unpin()
        for conn in self.pins:
            conn.close()

    def close_file(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
