"""Running one SQL statement and shaping its result the way rqlite's API reports it.

Shared by the primary's writer (inside its group transaction) and by reads on any node. A
statement error becomes the result's ``error`` (as rqlite reports SQL errors: HTTP 200, the
error in the result), never an exception out of here, except :class:`RequestError` for requests
that are not well formed.
"""

from __future__ import annotations

import base64
import math
import re
import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from litecluster.engine.sqlite import Connection
from litecluster.errors import LiteclusterError
from litecluster.errors import RequestError as RequestError  # re-exported: defined in the tree
from litecluster.replication.primary.coltypes import apply_declared, declared_types
from litecluster.replication.primary.sandbox import VACUUM_ATTACH, Sandbox
from litecluster.replication.primary.sqlsplit import needs_split, positional_refusal, split_sql

Params = tuple[Any, ...] | dict[str, Any]

# Statements that would end or escape the writer's group transaction (or a read's snapshot).
# SQLite has no API that says a prepared statement is transaction control before running it,
# so the first keyword is checked (after comments and empty statements), the sandbox's
# authorizer refuses transaction control in a request's statements, and in_transaction is
# checked again after each statement. The keyword check is not redundant: a statement the
# node itself prepared (``ROLLBACK``, ``SAVEPOINT stmt``) is reused from the statement cache
# when a request sends the same text, and a cached statement is not authorized again.
_CONTROL = frozenset(
    {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "ATTACH", "DETACH", "VACUUM"}
)
_WORD = re.compile(r"[A-Za-z_]+")


@dataclass(frozen=True)
class ResultLimits:
    """The most one statement's result may hold: rows, and bytes as estimated for its JSON.
    A result past either is not sent (the statement fails with a message on how to page), so
    one query cannot hold the node's memory or the loop that serializes the answer."""

    max_rows: int = 100_000
    max_bytes: int = 32 * 1024 * 1024


UNLIMITED = ResultLimits(max_rows=1 << 62, max_bytes=1 << 62)
_FETCH = 512


class _TooLarge(LiteclusterError):
    """Internal: ends the fetch of a result past its limits (it becomes the result's error)."""


@dataclass(frozen=True)
class Statement:
    sql: str
    params: Params = ()
    continues: bool = False
    """This statement came from the same string as the one before it (see
    :func:`expand_statements`): a failure of one statement of a string ends that string."""


@dataclass
class Result:
    last_insert_id: int | None = None
    rows_affected: int | None = None
    columns: list[str] | None = None
    types: list[str] | None = None
    values: list[list[Any]] = field(default_factory=list)
    error: str | None = None
    blobs: bool = False
    """``values`` hold bytes or non-finite floats, which JSON cannot carry as they are."""
    seconds: float = 0.0
    code: str | None = None
    """SQLite's error name (``SQLITE_INTERRUPT`` ...) behind ``error``; not sent to clients."""

    def as_json(
        self, *, associative: bool = False, timings: bool = False, blob_array: bool = False
    ) -> dict[str, Any]:
        """rqlite's shape; BLOBs as base64 text, or with ``blob_array`` as arrays of byte
        values; non-finite floats (which JSON has no word for) as null."""
        out: dict[str, Any] = {}
        if self.error is not None:
            out["error"] = self.error
        elif self.columns is not None:
            types = self.types or []
            values = self.values
            if self.blobs:
                encode = _blob_list if blob_array else _blob_base64
                values = [[encode(v) for v in row] for row in values]
            if associative:
                out["types"] = dict(zip(self.columns, types, strict=False))
                out["rows"] = [dict(zip(self.columns, row, strict=False)) for row in values]
            else:
                out["columns"] = self.columns
                out["types"] = types
                if values:
                    out["values"] = values
        else:
            if self.last_insert_id is not None:
                out["last_insert_id"] = self.last_insert_id
            out["rows_affected"] = self.rows_affected or 0
        if timings:
            out["time"] = self.seconds
        return out


def parse_statements(body: Any, *, max_statements: int) -> list[Statement]:
    """rqlite's request body: a JSON array of ``"SQL"`` or ``["SQL", params...]`` or
    ``["SQL", {"name": value}]``."""
    if not isinstance(body, list):
        raise RequestError("the request body must be a JSON array of statements")
    if not body:
        raise RequestError("the request has no statements")
    if len(body) > max_statements:
        raise RequestError(
            "too many statements in one request", count=len(body), limit=max_statements
        )
    out: list[Statement] = []
    for i, item in enumerate(body):
        if isinstance(item, str):
            out.append(Statement(item))
            continue
        if not isinstance(item, list) or not item or not isinstance(item[0], str):
            raise RequestError("a statement must be a string or [sql, params...]", index=i)
        rest = item[1:]
        if len(rest) == 1 and isinstance(rest[0], dict):
            named = rest[0]
            if not all(isinstance(k, str) for k in named):
                raise RequestError("named parameters need string names", index=i)
            out.append(Statement(item[0], {k: _param(v, i, k) for k, v in named.items()}))
        else:
            out.append(Statement(item[0], tuple(_param(v, i, j) for j, v in enumerate(rest))))
    return out


_HEX_BLOB = re.compile(r"[xX]'((?:[0-9a-fA-F]{2})*)'")


def _param(v: Any, index: int, name: str | int) -> Any:
    """A parameter as SQLite binds it: JSON scalars as they are; BLOBs as rqlite takes them,
    an array of byte values or a string ``X'hex'``. Non-finite numbers (``1e999`` parses
    as infinity) are refused: SQLite would store them and JSON cannot answer them."""
    if isinstance(v, str):
        blob = _HEX_BLOB.fullmatch(v)
        return bytes.fromhex(blob.group(1)) if blob else v
    if isinstance(v, float) and not math.isfinite(v):
        raise RequestError("parameters must be finite numbers", index=index, name=name, value=v)
    if v is None or isinstance(v, (int, float)):
        return v
    if isinstance(v, list) and all(type(b) is int and 0 <= b <= 255 for b in v):
        return bytes(v)
    raise RequestError("parameter values must be scalars, or a BLOB as an array of byte values",
                       index=index, name=name)  # fmt: skip


def statement_json(stmt: Statement) -> Any:
    """``stmt`` as a request body element again (a replica forwards what it parsed)."""
    if isinstance(stmt.params, dict):
        return [stmt.sql, {k: _unparam(v) for k, v in stmt.params.items()}]
    return [stmt.sql, *map(_unparam, stmt.params)]


def _unparam(v: Any) -> Any:
    return list(v) if isinstance(v, bytes) else v


def expand_statements(statements: list[Statement], *, max_statements: int) -> list[Statement]:
    """``statements`` with every string of several statements replaced by its statements,
    in order (rqlite runs such a string statement by statement). Named parameters go to every
    statement of the string; positional ones cannot be shared out and are refused. Linear in
    the size of the SQL: run it off the event loop when :func:`needs_expanding` says so."""
    out: list[Statement] = []
    for i, stmt in enumerate(statements):
        pieces = split_sql(stmt.sql, max_statements) if needs_split(stmt.sql) else []
        if len(pieces) <= 1:
            out.append(stmt)
        elif isinstance(stmt.params, tuple) and stmt.params:
            raise positional_refusal(i)
        else:
            out.extend(Statement(p, stmt.params, j > 0) for j, p in enumerate(pieces))
        if len(out) > max_statements:
            raise RequestError(
                "too many statements in one request (counting each statement of a string)",
                count=len(out), limit=max_statements,
            )  # fmt: skip
    return out


def needs_expanding(statements: list[Statement]) -> bool:
    return any(needs_split(s.sql) for s in statements)


def first_keyword(sql: str) -> str:
    """The statement's first word, upper-cased, after whitespace, comments and empty
    statements (``;``), the way SQLite's tokenizer skips them. One pass: a regular expression
    with repeated comment groups backtracks exponentially on a run of unclosed comments."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace() or c == ";":
            i += 1
        elif sql.startswith("--", i):
            nl = sql.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
        else:
            word = _WORD.match(sql, i)
            return word.group().upper() if word else ""
    return ""


def is_transaction_control(sql: str) -> bool:
    return first_keyword(sql) in _CONTROL


def refusal(sql: str) -> Result | None:
    """The result of a statement refused for its first keyword (see ``_CONTROL``), else None."""
    word = first_keyword(sql)
    if word not in _CONTROL:
        return None
    if word in ("ATTACH", "DETACH", "VACUUM"):
        return Result(error=f"not authorized: {VACUUM_ATTACH}", code="SQLITE_AUTH")
    return Result(error="transaction control statements are not allowed; use the request's "
                        "transaction flag (a query's statements all read one snapshot)",
                  code="SQLITE_AUTH")  # fmt: skip


def _type_name(value: Any) -> str:
    if isinstance(value, int):  # bool is an int too
        return "integer"
    if isinstance(value, float):
        return "real"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bytes):
        return "blob"
    return ""


def _blob_base64(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()  # as rqlite sends BLOBs
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _blob_list(value: Any) -> Any:
    if isinstance(value, bytes):
        return list(value)
    return _blob_base64(value)


def run_statement(
    conn: Connection,
    stmt: Statement,
    sandbox: Sandbox | None = None,
    limits: ResultLimits = UNLIMITED,
    types_from: str | None = None,
) -> Result:
    """Execute one statement on ``conn``; every error (SQLite's, bindings, several statements
    in one string, a result past ``limits``) is returned in the result, none raised. With
    ``conn``'s ``sandbox``, the statement is a request's: refused by its first keyword
    (:func:`refusal`) or by the sandbox, which then says why. With ``types_from`` (the path
    of ``conn``'s database), a query's ``types`` are its columns' declared types, as rqlite
    reports them (:mod:`coltypes`)."""
    started = time.perf_counter()
    if sandbox is not None:
        refused = refusal(stmt.sql)
        if refused is not None:
            return refused
        sandbox.denied = None
        sandbox.in_request = True
    result = Result()
    try:
        _execute(conn, stmt, result, limits)
        if types_from is not None and result.types:
            declared = declared_types(types_from, stmt.sql, first_keyword(stmt.sql))
            if declared is not None and len(declared) == len(result.types):
                apply_declared(declared, result.types, result.values)
    except _TooLarge as exc:
        result.columns = result.types = None
        result.values = []
        result.error, result.code = str(exc), "LITECLUSTER_TOO_LARGE"
    except Exception as exc:  # whatever failed, the statement failed: the caller goes on
        result.columns = result.types = None
        result.values = []
        message = _message(exc)
        result.error = message if sandbox is None else sandbox.explain(message)
        result.code = getattr(exc, "sqlite_errorname", None)
    finally:
        if sandbox is not None:
            sandbox.in_request = False
    result.seconds = time.perf_counter() - started
    return result


def _execute(conn: Connection, stmt: Statement, result: Result, limits: ResultLimits) -> None:
    cur = conn.execute(stmt.sql, stmt.params)
    if cur.description is not None:
        result.columns = [d[0] for d in cur.description]
        types = result.types = [""] * len(result.columns)
        values: list[list[Any]] = []
        # In batches, so that a result past the limits fails having held one batch past them.
        # The statement is reset when it ends early: a savepoint cannot roll back under it.
        with closing(cur):
            result.blobs = _fetch(cur, types, values, limits)
        result.values = values
    else:
        result.rows_affected = max(cur.rowcount, 0)
        result.last_insert_id = cur.lastrowid


def _fetch(cur: Any, types: list[str], values: list[list[Any]], limits: ResultLimits) -> bool:
    """Fill ``values`` and ``types``; True if a value is bytes or a non-finite float (see
    :attr:`Result.blobs`)."""
    size, special = 0, False
    while batch := cur.fetchmany(_FETCH):
        for row in batch:
            size += 2 + len(row)
            for j, v in enumerate(row):
                if v is None:
                    size += 4
                    continue
                if not types[j]:
                    types[j] = _type_name(v)
                if isinstance(v, str):
                    size += len(v) + 2
                elif isinstance(v, bytes):
                    size += len(v) * 4 // 3 + 4
                    special = True
                else:
                    size += 8
                    special = special or (isinstance(v, float) and not math.isfinite(v))
            values.append(list(row))
        if len(values) > limits.max_rows:
            raise _TooLarge(_too_large(f"more than {limits.max_rows} rows", "max_result_rows"))
        if size > limits.max_bytes:
            raise _TooLarge(_too_large(f"more than {limits.max_bytes} bytes", "max_result_bytes"))
    return special


def _too_large(what: str, setting: str) -> str:
    return (f"result too large: {what} (the node's {setting}); page through it with "
            "LIMIT and OFFSET, or better WHERE key > last_key ORDER BY key LIMIT n")  # fmt: skip


def _message(exc: Exception) -> str:
    if isinstance(exc, (ValueError, TypeError, OverflowError)):  # bindings Python refused
        return f"bad parameters: {exc}"
    if type(exc).__module__.startswith("sqlean"):  # SQLite's and the driver's own errors
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
