"""Injected crash points for crash tests.

``LITECLUSTER_CRASHPOINT=name[,name...]`` makes the process SIGKILL itself when execution reaches
that named point, which is how the tests prove that a kill -9 at the worst moment loses nothing.
``LITECLUSTER_CRASHPOINT_SKIP=N`` lets the first N hits pass, to crash later in a workload.
Unset (the normal case), a crash point costs one set lookup.
"""

from __future__ import annotations

import os
import signal

_armed: frozenset[str] = frozenset(
    p for p in os.environ.get("LITECLUSTER_CRASHPOINT", "").split(",") if p
)
_skip = int(os.environ.get("LITECLUSTER_CRASHPOINT_SKIP", "0") or 0)


def armed(name: str) -> bool:
    """True when ``name`` should crash now (counts the hit)."""
    global _skip
    if name not in _armed:
        return False
    if _skip > 0:
        _skip -= 1
        return False
    return True


def crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crashpoint(name: str) -> None:
    if armed(name):
        crash()
