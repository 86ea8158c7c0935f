"""``litecluster.dbapi``: the DB-API 2.0 (PEP 249) module at the path applications import, in the
way ``sqlite3`` is one module; it is built on the client and lives in
:mod:`litecluster.client.dbapi`."""

from litecluster.client.dbapi import (
    Connection,
    Cursor,
    DatabaseError,
    Error,
    IntegrityError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    apilevel,
    connect,
    paramstyle,
    threadsafety,
)

__all__ = [
    "Connection",
    "Cursor",
    "DatabaseError",
    "Error",
    "IntegrityError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]
