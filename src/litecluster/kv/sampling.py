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

EXACT_UP_TO = 1024
"""Containers up to this size are read whole and sampled exactly."""


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
