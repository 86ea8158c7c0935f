"""What the container families (lists, sets, sorted sets) share about their elements: ranges
by index and the optional COUNT argument of the pop commands, each read as redis-server
reads it."""

from __future__ import annotations

from litecluster.kv.errors import OUT_OF_RANGE_POSITIVE, fail
from litecluster.kv.parse import to_int


def index_span(start: int, end: int, n: int) -> tuple[int, int] | None:
    """The 0-based inclusive span ``start..end`` selects among ``n`` elements (a negative
    index counts from the end, as LRANGE, ZRANGE and their kin read it); None when empty."""
    if start < 0:
        start += n
    if end < 0:
        end += n
    start = max(start, 0)
    if start > end or start >= n:
        return None
    return start, min(end, n - 1)


def pop_count(a: list[bytes]) -> int | None:
    """The COUNT of ``POP key [count]`` (at ``a[2]``), None when absent; not an integer or
    negative is the out-of-range error. The caller checks the argument count first."""
    if len(a) < 3:
        return None
    count = to_int(a[2], OUT_OF_RANGE_POSITIVE)
    if count < 0:
        raise fail(OUT_OF_RANGE_POSITIVE)
    return count
