"""rqlite's ``freshness`` for ``level=none`` reads on a replica, with Go's duration syntax.

``freshness=D`` refuses the read (503) when the replica has not heard from its primary within
``D``; ``freshness_strict`` also refuses it when the replica has not yet applied everything the
primary said it held at that last contact. ``freshness=0`` (or absent) means no bound, as in
rqlite. A value that is not a duration is a 400 on every node, so a typo never turns the check
off silently.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from litecluster.errors import RequestError, StaleReadError
from litecluster.server.ports import Upstream

# Go's time.ParseDuration: one or more decimal numbers each with a unit, e.g. 1h2m3.5s.
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
         "h": 3600.0}  # fmt: skip
_MAX_LEN = 64


def go_duration(raw: str) -> float:
    """Seconds in ``raw``, a Go duration (``500ms``, ``1m30s``, ``0``); RequestError if not."""
    if raw == "0":
        return 0.0
    if not raw or len(raw) > _MAX_LEN:
        raise _bad(raw)
    pos, total = 0, 0.0
    while pos < len(raw):
        part = _PART.match(raw, pos)
        if part is None:
            raise _bad(raw)
        total += float(part.group(1)) * _UNIT[part.group(2)]
        pos = part.end()
    return total


def _bad(raw: str) -> RequestError:
    return RequestError("freshness must be a duration such as 500ms, 1s or 1m30s",
                        value=raw[:_MAX_LEN], hint="use Go's duration syntax, as rqlite does")  # fmt: skip


def freshness_limit(query: Mapping[str, str]) -> float | None:
    """The bound a request asks for, None when it asks for none."""
    raw = query.get("freshness")
    if raw is None:
        return None
    limit = go_duration(raw)
    return limit if limit > 0 else None


def check_freshness(
    upstream: Upstream | None, limit: float, *, strict: bool, db: str, applied: int, raw: str
) -> None:
    """Raise StaleReadError when this replica's data of ``db`` may be older than ``limit``
    seconds; ``applied`` is the txid this node applied there (for ``strict``)."""
    if upstream is None:  # between roles: following no one
        raise StaleReadError("this node follows no primary right now", freshness=raw)
    age = time.time() - upstream.last_message_at
    if age > limit:
        raise StaleReadError("this replica has not heard from the primary recently enough",
                             seconds=round(age, 3), freshness=raw)  # fmt: skip
    head = upstream.heads.get(db, 0)
    if strict and applied < head:
        raise StaleReadError(
            "this replica has not applied what its primary held at their last contact",
            db=db, applied=applied, primary_head=head, freshness=raw,
        )  # fmt: skip
