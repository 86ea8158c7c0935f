"""Opening SQLite connections for the engine.

The engine needs the ``sqlite_dbpage`` virtual table to read and write raw pages through the
pager. Debian's stdlib ``sqlite3`` is built without it, so the engine uses ``sqlean`` (the
stdlib API over a newer SQLite with that table compiled in). Applications that only *read* a
replica may use any SQLite library, in another process: two different SQLite libraries in one
process do not see each other's POSIX locks, and closing one's file descriptor drops the
other's locks (https://www.sqlite.org/howtocorrupt.html, "multiple copies of SQLite").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlean

from litecluster.errors import SQLiteUnsupportedError

Connection = Any  # sqlean ships no type information; its objects follow the sqlite3 API.

SQLITE_VERSION: str = sqlean.sqlite_version
SQLITE_VERSION_INFO: tuple[int, int, int] = tuple(  # type: ignore[assignment]
    int(x) for x in SQLITE_VERSION.split(".")[:3]
)
DatabaseError = sqlean.DatabaseError
OperationalError = sqlean.OperationalError

# Page 1 is written last and truncation uses a NULL page, which needs SQLite >= 3.48.
MIN_SQLITE = (3, 48, 0)


def connect(
    path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000, readonly: bool = False
) -> Connection:
    """Open a connection in autocommit mode (explicit BEGIN/COMMIT only).

    Every cursor the engine uses is consumed with ``fetchall()``: a half-read cursor keeps its
    statement, and with it a read transaction, open.
    """
    if SQLITE_VERSION_INFO < MIN_SQLITE:
        raise SQLiteUnsupportedError(
            f"SQLite {SQLITE_VERSION} is too old for page-level replication",
            hint="install sqlean-py >= 3.48 (pip install -U sqlean-py)",
        )
    target = f"file:{Path(path)}?mode=ro" if readonly else str(path)
    conn = sqlean.connect(
        target,
        isolation_level=None,
        check_same_thread=False,
        uri=readonly,
        timeout=busy_timeout_ms / 1000,
    )
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


def pragma_int(conn: Connection, name: str) -> int:
    rows = conn.execute(f"PRAGMA {name}").fetchall()
    return int(rows[0][0])


def has_dbpage(conn: Connection) -> bool:
    try:
        conn.execute("SELECT count(*) FROM sqlite_dbpage WHERE pgno=0").fetchall()
    except DatabaseError:
        return False
    return True
