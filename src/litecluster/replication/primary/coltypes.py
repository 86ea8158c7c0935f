"""The declared types of a query's result columns, and rqlite's dates, for the ``types`` of
an answer.

rqlite reports each column's declared type (``sqlite3_column_decltype``: ``INTEGER``,
``DATETIME``, ``VARCHAR(20)`` ...) and sends the values of DATE, DATETIME and TIMESTAMP
columns as RFC 3339 text; clients such as pyrqlite convert by those types. Python's sqlite
driver does not expose the declared types, but SQLite computes them for a view's columns the
same way: a ``TEMP VIEW`` over the query on a side connection (read-only on the database, its
own temp schema), read back with ``PRAGMA table_info``, gives them without running the query.
The answer is cached per SQL text and schema version, so a repeated query costs a dictionary
lookup. A statement that is not a plain query (PRAGMA, RETURNING) has none: the caller falls
back to the values' storage classes, as before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
from collections import OrderedDict
from typing import Any

from litecluster.engine.sqlite import Connection, connect, pragma_int

_QUERY_WORDS = ("SELECT", "WITH", "VALUES")
# Parameters become NULL in the view (a view cannot have any): strings, quoted names and
# comments are matched first so that a '?' inside them is left alone.
_TOKENS = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\[[^\]]*\]|`(?:[^`]|``)*`|--[^\n]*|/\*.*?(?:\*/|\Z)"
    r"|(\?\d*|[:@$][A-Za-z0-9_]+)",
    re.S,
)
_DATES = frozenset({"date", "datetime", "timestamp"})
_CACHE_SIZE = 512
_local = threading.local()


class _Typer:
    """One side connection per thread and database file, with its cache."""

    def __init__(self, path: str) -> None:
        self.conn: Connection = connect(path, readonly=True)
        self.cache: OrderedDict[tuple[int, str], list[str] | None] = OrderedDict()

    def types(self, sql: str) -> list[str] | None:
        key = (pragma_int(self.conn, "schema_version"), sql)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        got = self._compute(sql)
        self.cache[key] = got
        if len(self.cache) > _CACHE_SIZE:
            self.cache.popitem(last=False)
        return got

    def _compute(self, sql: str) -> list[str] | None:
        body = _TOKENS.sub(lambda m: "NULL" if m.group(1) else m.group(0), sql).strip()
        body = body.rstrip(";").strip()
        try:
            self.conn.execute(f"CREATE TEMP VIEW _litecluster_types AS {body}")
        except Exception:  # not a plain query, or one SQLite refuses: no declared types
            return None
        try:
            rows = self.conn.execute("PRAGMA temp.table_info(_litecluster_types)").fetchall()
            return [str(r[2] or "").lower() for r in rows]
        except Exception:  # the view's columns do not resolve (the query fails on its own)
            return None
        finally:
            with contextlib.suppress(Exception):
                self.conn.execute("DROP VIEW temp._litecluster_types")


def declared_types(path: str, sql: str, first_word: str) -> list[str] | None:
    """The declared type of each result column of query ``sql`` on the database at ``path``
    (lower case, ``""`` for an expression), or None when there are none to find."""
    if first_word not in _QUERY_WORDS:
        return None
    typers: dict[str, _Typer] = getattr(_local, "typers", None) or {}
    _local.typers = typers
    typer = typers.get(path)
    if typer is None:
        typer = typers[path] = _Typer(path)
    return typer.types(sql)


def apply_declared(declared: list[str], types: list[str], values: list[list[Any]]) -> None:
    """Report ``declared`` types (rqlite's ``types``) where the query has them, keeping the
    values' storage classes for expressions, and send date columns' values as RFC 3339.
    SQLite gives a column declared without a type BLOB affinity, which a view reports as
    ``blob``: that is taken only for a column that holds BLOBs."""
    for j, decl in enumerate(declared):
        if not decl or (decl == "blob" and types[j] not in ("", "blob")):
            continue
        types[j] = decl
        if decl.split("(")[0].strip() in _DATES:
            for row in values:
                row[j] = rfc3339(row[j])


def rfc3339(value: Any) -> Any:
    """A DATE/DATETIME/TIMESTAMP column's value as rqlite sends it: text SQLite's date
    functions understand, or a Unix time, as RFC 3339 in UTC; anything else as it is."""
    when: dt.datetime | None = None
    if isinstance(value, str):
        when = _parse(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            when = dt.datetime.fromtimestamp(value, dt.UTC)
        except (OverflowError, OSError, ValueError):
            return value
    if when is None:
        return value
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    text = when.isoformat()
    if "." in text:  # Go's RFC 3339 with nanoseconds drops trailing zeros of the fraction
        head, _, rest = text.partition(".")
        digits, zone = rest[:6].rstrip("0"), rest[6:]
        text = f"{head}.{digits}{zone}" if digits else head + zone
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _parse(text: str) -> dt.datetime | None:
    candidate = text.strip().replace(" ", "T", 1)
    if candidate.endswith("Z"):
        candidate = candidate[:-1] + "+00:00"
    try:
        return dt.datetime.fromisoformat(candidate)
    except ValueError:
        return None
