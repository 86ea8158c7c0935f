"""Random elements of a container (SPOP, SRANDMEMBER, HRANDFIELD) and of the key space.

Rows are ordered by a hash of their content, so a random 63-bit value picks a random row
with one b-tree search (the first row at or after it, wrapping around). That is not exactly
uniform (a row after a wide gap is likelier), like Redis's own bucket sampling; small
containers, and requests for most of a container, are sampled exactly from all their rows.
"""

from __future__ import annotations

import random
from typing import Any

from litecluster.engine.sqlite import Connection
from litecluster.kv.db import Ctx, KeyRow
from litecluster.kv.errors import fail
from litecluster.kv.parse import INT64_MAX, to_int

EXACT_UP_TO = 1024
"""Containers up to this size are read whole and sampled exactly."""

MAX_RANDOM_COUNT = 10_000_000
"""Largest |count| of HRANDFIELD/SRANDMEMBER (Redis has none; this bounds the reply)."""


def _one(conn: Connection, sql: str, id_: int) -> Any:
    for lo in (random.getrandbits(63), 0):
        rows = conn.execute(sql, (id_, lo)).fetchall()
        if rows:
            return rows[0]
    raise LookupError("sampling an empty container")


def sample(
    conn: Connection, table: str, cols: str, id_: int, size: int, count: int, *, distinct: bool
) -> list[Any]:
    """``count`` rows (the columns ``cols``) of container ``id_`` holding ``size`` rows:
    distinct ones (at most ``size``) or, with ``distinct=False``, drawn with repetition."""
    if count <= 0 or size <= 0:
        return []
    everything = f"SELECT {cols} FROM {table} WHERE id=? ORDER BY h"
    if distinct and count >= size:
        return list(conn.execute(everything, (id_,)).fetchall())
    if size <= EXACT_UP_TO or (distinct and count * 3 > size):
        rows = conn.execute(everything, (id_,)).fetchall()
        return random.sample(rows, count) if distinct else random.choices(rows, k=count)
    one = f"SELECT {cols} FROM {table} WHERE id=? AND h >= ? ORDER BY h LIMIT 1"
    if not distinct:
        return [_one(conn, one, id_) for _ in range(count)]
    picked: dict[Any, Any] = {}
    while len(picked) < count:
        row = _one(conn, one, id_)
        picked[tuple(row)] = row
    return list(picked.values())


def random_count(arg: bytes) -> int:
    """The count of ``HRANDFIELD``/``SRANDMEMBER key count``: an integer whose negation is
    one too (Redis refuses INT64_MIN with this text)."""
    count = to_int(arg)
    if count < -INT64_MAX:
        raise fail(f"ERR value is out of range, value must between {-INT64_MAX} and {INT64_MAX}")
    return count


def random_one(ctx: Ctx, row: KeyRow | None, table: str, col: str) -> bytes | None:
    """Column ``col`` of one random element of container ``row`` (None: no such key), the
    reply of HRANDFIELD and SRANDMEMBER without a count."""
    if row is None:
        return None
    return bytes(sample(ctx.conn, table, col, row.id or 0, row.len, 1, distinct=True)[0][0])


def random_rows(ctx: Ctx, row: KeyRow | None, table: str, cols: str, count: int) -> list[Any]:
    """The rows (columns ``cols``) HRANDFIELD and SRANDMEMBER with a count pick: ``count``
    distinct ones at most, or with a negative count ``-count`` drawn with repetition."""
    if row is None or count == 0:
        return []
    if count < -MAX_RANDOM_COUNT:
        raise fail(f"ERR count is out of range for litecluster (at most {MAX_RANDOM_COUNT})")
    return sample(ctx.conn, table, cols, row.id or 0, row.len, abs(count), distinct=count > 0)
