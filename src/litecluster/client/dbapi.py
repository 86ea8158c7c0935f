"""A DB-API 2.0 module over :mod:`litecluster.client.sync`, so code written for ``sqlite3`` can switch
with one line: ``import litecluster.client.dbapi as sqlite3``.

Each write statement is its own committed request (as ``sqlite3`` with
``isolation_level=None``); ``executemany`` is one atomic request. ``commit()`` has nothing to do
and ``rollback()`` cannot undo what was committed. Reads go to the local replica in embedded
mode, else to the node.

The PEP 249 exceptions are in litecluster's tree (``Error`` is a ``LiteclusterError``) and carry
the failed request's ``retryable``, ``indeterminate`` and ``committed``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from litecluster.client.errors import ClientError
from litecluster.client.sync import Client, Params
from litecluster.client.sync import connect as _connect
from litecluster.errors import LiteclusterError

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"

_READ = re.compile(r"^\s*(SELECT|WITH|PRAGMA|EXPLAIN|VALUES)\b", re.IGNORECASE)


class Error(LiteclusterError):
    """PEP 249's root: every error of this module."""


class DatabaseError(Error):
    """An error of the database or of the request that reached it."""


class OperationalError(DatabaseError):
    """The request could not be run (no node reachable, refused, timed out) or failed in a way
    the application did not cause."""


class ProgrammingError(DatabaseError):
    """The SQL is wrong (syntax error, no such table or column)."""


class IntegrityError(DatabaseError):
    """A constraint failed (UNIQUE, NOT NULL, FOREIGN KEY, CHECK)."""


class NotSupportedError(DatabaseError):
    """The call is not supported over a cluster (``rollback``)."""


def _wrap(exc: ClientError) -> DatabaseError:
    text = str(exc.context.get("sql_error") or exc.message)
    cls: type[DatabaseError] = OperationalError
    if "constraint" in text.lower():
        cls = IntegrityError
    elif "syntax error" in text or "no such" in text:
        cls = ProgrammingError
    err = cls(text)  # no hint: str() is the database's message, as with sqlite3
    err.retryable, err.indeterminate = exc.retryable, exc.indeterminate
    err.committed = exc.committed
    return err


class Cursor:
    arraysize = 1

    def __init__(self, conn: Connection) -> None:
        self.connection = conn
        self.description: tuple[tuple[Any, ...], ...] | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Params | None = None) -> Cursor:
        client = self.connection._client
        try:
            if _READ.match(sql):
                res = client.query(sql, params)
                self.description = tuple(
                    (c, None, None, None, None, None, None) for c in res.columns
                )
                self._rows = list(res.rows)
                self.rowcount = -1
            else:
                out = client.execute(sql, params)
                self.description, self._rows = None, []
                self.rowcount, self.lastrowid = out.rows_affected, out.last_insert_id
        except ClientError as exc:
            raise _wrap(exc) from None
        return self

    def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> Cursor:
        try:
            out = self.connection._client.executemany(sql, list(seq_of_params))
        except ClientError as exc:
            raise _wrap(exc) from None
        self.description, self._rows = None, []
        self.rowcount, self.lastrowid = out.rows_affected, out.last_insert_id
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        n = size or self.arraysize
        out, self._rows = self._rows[:n], self._rows[n:]
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        out, self._rows = self._rows, []
        return out

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def close(self) -> None:
        self._rows = []


class Connection:
    def __init__(self, client: Client) -> None:
        self._client = client

    def cursor(self) -> Cursor:
        return Cursor(self)

    def execute(self, sql: str, params: Params | None = None) -> Cursor:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> Cursor:
        return self.cursor().executemany(sql, seq_of_params)

    def commit(self) -> None:
        """Every statement is committed when it returns."""

    def rollback(self) -> None:
        raise NotSupportedError("statements are committed as they run; use executemany or "
                                "Client.transaction for atomic groups")  # fmt: skip

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str = "http://127.0.0.1:4002", **kwargs: Any) -> Connection:
    """Same arguments as :func:`litecluster.connect`."""
    return Connection(_connect(url, **kwargs))
